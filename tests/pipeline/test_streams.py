"""The side stream keeps the streams' contract: the calls it makes on CUDA, in order, with torch.cuda mocked
(the feeder's results on a stream that runs jobs late are tested in ``test_feeder``)."""

from __future__ import annotations

from contextlib import contextmanager

import torch

from nextlaw_task.pipeline import streams
from nextlaw_task.pipeline.streams import SideStream


def test_a_side_stream_orders_its_jobs_after_the_model_s_work_and_the_model_s_reads_after_them(monkeypatch):
    log: list[str] = []

    class FakeStream:
        def __init__(self, name: str) -> None:
            self.name = name

        def wait_stream(self, other: FakeStream) -> None:
            log.append(f"{self.name} waits for {other.name}")

        def wait_event(self, event: FakeEvent) -> None:
            log.append(f"{self.name} waits for {event.name}")

    class FakeEvent:
        def __init__(self) -> None:
            self.name = "?"

        def record(self, stream: FakeStream) -> None:
            self.name = f"the end of job {sum(line.startswith('job') for line in log)}"
            log.append(f"{stream.name} records {self.name}")

    class FakeTensor:
        def __init__(self, name: str) -> None:
            self.name = name

        def record_stream(self, stream: FakeStream) -> None:
            log.append(f"{self.name} recorded to {stream.name}")

    model = FakeStream("model")
    current = [model]

    @contextmanager
    def on(stream: FakeStream):
        current.append(stream)
        yield
        current.pop()

    monkeypatch.setattr(torch.cuda, "Stream", lambda device: FakeStream("side"))
    monkeypatch.setattr(torch.cuda, "Event", FakeEvent)
    monkeypatch.setattr(torch.cuda, "current_stream", lambda device: current[-1])
    monkeypatch.setattr(torch.cuda, "stream", on)
    side = streams.stats_stream(torch.device("cuda"))
    assert isinstance(side, SideStream)
    first = side.submit(lambda: log.append(f"job on {current[-1].name}"), [FakeTensor("window 0")])
    side.submit(lambda: log.append(f"job on {current[-1].name}"), [FakeTensor("window 1")])
    side.wait(first)
    side.join()
    assert log == [
        "side waits for model", "window 0 recorded to side", "job on side", "side records the end of job 1",
        "side waits for model", "window 1 recorded to side", "job on side", "side records the end of job 2",
        "model waits for the end of job 1",
        "model waits for side",
    ]
    assert current == [model]
