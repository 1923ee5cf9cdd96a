"""Where the statistics' work runs: at once on a CPU, on a side stream beside the forward pass on a GPU.

The feeder (``pipeline.feeder``) hands the work on each window of hidden states to a stream as one
job, with the tensors the job reads. The contract, which every stream keeps:

- ``submit(work, tensors)`` runs ``work`` after everything the caller's stream has queued so far (the
  hidden states it reads are computed) and returns a mark of its end;
- ``wait(mark)`` makes the caller's stream wait for that end (before it overwrites what the job read);
- ``join()`` makes the caller's stream wait for every job submitted (before the statistics are read).

:class:`Inline` runs the job at once (a CPU, or ``overlap=False``): the marks are None and waiting is
free. :class:`SideStream` queues it on a CUDA stream of its own, so the statistics of state l run while
the model computes layer l + 1; the caller's tensors it reads are recorded to that stream, so the
caching allocator does not hand their memory out again before the job has read them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

import torch
from torch import Tensor


class StatsStream(Protocol):
    """What the feeder needs of a stream (see the module docstring)."""

    def submit(self, work: Callable[[], None], tensors: Sequence[Tensor]) -> object: ...

    def wait(self, mark: object) -> None: ...

    def join(self) -> None: ...


class Inline:
    """The work runs at once, on the caller's thread and device stream."""

    def submit(self, work: Callable[[], None], tensors: Sequence[Tensor]) -> object:
        work()
        return None

    def wait(self, mark: object) -> None:
        """Nothing to wait for: the work ran when it was submitted."""

    def join(self) -> None:
        """Nothing to wait for: every job ran when it was submitted."""


class SideStream:
    """The work is queued on a CUDA stream of its own, ordered after the caller's stream at each submit."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.stream = torch.cuda.Stream(device)

    def submit(self, work: Callable[[], None], tensors: Sequence[Tensor]) -> object:
        caller = torch.cuda.current_stream(self.device)
        self.stream.wait_stream(caller)
        for tensor in tensors:
            tensor.record_stream(self.stream)
        with torch.cuda.stream(self.stream):
            work()
        done = torch.cuda.Event()
        done.record(self.stream)
        return done

    def wait(self, mark: object) -> None:
        torch.cuda.current_stream(self.device).wait_event(mark)

    def join(self) -> None:
        torch.cuda.current_stream(self.device).wait_stream(self.stream)


def stats_stream(device: torch.device, overlap: bool = True) -> StatsStream:
    """The stream for statistics beside a model on ``device``: a side stream on a GPU when ``overlap``."""
    return SideStream(device) if overlap and device.type == "cuda" else Inline()
