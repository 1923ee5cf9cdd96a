"""One batch's hidden states, as the hooks hand them over, into its pools' accumulators.

:class:`BatchFeeder` is the hooks' sink for one batch (its :class:`~nextlaw_task.pipeline.plan.BatchPlan`).
Each state is copied, on the model's stream, into a window buffer on the plan's device: the rows of
every chunk of the plan (in the model's dtype, one gather a state; under ``parallelize=True`` a state
computed on another GPU is gathered there and copied over), so that what the statistics read is theirs,
whatever the model does with its own tensor next. When the window holds :func:`window_size` states, or the pass's
last state came, the work on it goes to the statistics' stream (``pipeline.streams``) as one job:

- per chunk, the window's states are normalized together (``normalize.normalize_window``: one set of
  kernels for them all, not one a state);
- each state's rows go to the accumulators of the pools that measure it (``ResidualStatistics.partial_fit``).

Two window buffers alternate: the model's stream fills one while the statistics' stream reads the
other, and waits only when the statistics are a whole window behind. On a CPU the window is one state
and the stream is inline: each state is normalized and added as it comes (the cache keeps the model's
activations). On a GPU the window holds up to :data:`WINDOW_BYTES` of rows, and the statistics run on a
side stream beside the forward pass. :meth:`BatchFeeder.close` waits for them before anything reads
the sums.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from nextlaw_task.engine.stats import ResidualStatistics
from nextlaw_task.pipeline.normalize import FinalNorm, normalize_window
from nextlaw_task.pipeline.plan import BatchPlan
from nextlaw_task.pipeline.streams import StatsStream

#: working memory of a window on a GPU: its states' rows in both buffers (the model's dtype) and their
#: float64 normalized copy; a window holds at least one state, whatever its size
WINDOW_BYTES = 256 * 2**20


def window_size(device: torch.device, rows: int, hidden_size: int, itemsize: int) -> int:
    """States normalized together: one on a CPU; on a GPU as many as :data:`WINDOW_BYTES` holds."""
    if device.type != "cuda":
        return 1
    return max(1, WINDOW_BYTES // max(1, rows * hidden_size * (2 * itemsize + 8)))


class BatchFeeder:
    """The sink of one batch's hooks: ``feeder(state, hidden)`` for each state, then :meth:`close`."""

    def __init__(self, plan: BatchPlan, stats: Sequence[ResidualStatistics | None], n_layers: int,
                 final_norm: FinalNorm | None, before_norm: bool, wanted: Sequence[int], stream: StatsStream) -> None:
        self.plan, self.stats, self.stream = plan, stats, stream
        self.n_layers, self.final_norm, self.before_norm = n_layers, final_norm, before_norm
        self.last = max(wanted)
        self.rows = torch.cat([chunk.rows for chunk in plan.chunks])  # on the plan's device, as the buffers
        self.moved: dict[torch.device, Tensor] = {}
        edges = [0]
        for chunk in plan.chunks:
            edges.append(edges[-1] + chunk.rows.numel())
        self.spans = list(zip(edges[:-1], edges[1:]))
        self.buffers: list[Tensor | None] = [None, None]
        self.read: list[object] = [None, None]  # per buffer, the mark of the last job that reads it
        self.current = 0
        self.window: list[int] = []
        self.size = 1
        #: dtypes of the states seen (for the message when a model overflowed)
        self.dtypes: set[torch.dtype] = set()

    def __call__(self, state: int, hidden: Tensor) -> None:
        flat = hidden.reshape(-1, hidden.shape[-1])
        self.dtypes.add(flat.dtype)
        if self.window and flat.dtype != self.buffers[self.current].dtype:
            self._submit()
        if not self.window:
            self._open(flat)
        # gathered where the state lies (under parallelize=True another GPU than the buffer's), then copied
        self.buffers[self.current][len(self.window)].copy_(flat.index_select(0, self._rows_on(flat.device)))
        self.window.append(state)
        if len(self.window) == self.size or state == self.last:
            self._submit()

    def close(self) -> None:
        """Submit what is left and make the model's stream wait for every job: the sums are then complete."""
        if self.window:
            self._submit()
        self.stream.join()

    def _open(self, flat: Tensor) -> None:
        """Start a window in the current buffer, once the job that read it last is done."""
        index = self.current
        if self.read[index] is not None:
            self.stream.wait(self.read[index])
        device = self.rows.device
        self.size = window_size(device, self.rows.numel(), flat.shape[1], flat.element_size())
        buffer = self.buffers[index]
        if buffer is None or buffer.dtype != flat.dtype or buffer.shape[0] < self.size:
            self.buffers[index] = torch.empty(self.size, self.rows.numel(), flat.shape[1], dtype=flat.dtype, device=device)

    def _rows_on(self, device: torch.device) -> Tensor:
        """The plan's rows on ``device`` (copied there once a batch)."""
        if device not in self.moved:
            self.moved[device] = self.rows.to(device)
        return self.moved[device]

    def _submit(self) -> None:
        index, states = self.current, tuple(self.window)
        window = self.buffers[index][: len(states)]
        self.read[index] = self.stream.submit(lambda: self._measure(window, states), [window])
        self.current, self.window = 1 - index, []

    def _measure(self, window: Tensor, states: tuple[int, ...]) -> None:
        """The statistics' job: every chunk's rows of the window's states normalized and added to their pools."""
        plan, stats = self.plan, self.stats
        for chunk, (low, high) in zip(plan.chunks, self.spans):
            shares = [[s for s in chunk.shares if state in stats[plan.feeds[s.feed].pool].states] for state in states]
            kept = [j for j, mine in enumerate(shares) if mine]
            if not kept:
                continue
            rows = window[:, low:high] if len(kept) == len(states) else window[kept, low:high]
            normalized = normalize_window(rows, [states[j] for j in kept], self.n_layers, chunk.normalize,
                                          self.final_norm, self.before_norm)
            for j, features in zip(kept, normalized):
                for share in shares[j]:
                    f = plan.feeds[share.feed]
                    part = slice(share.start, share.stop)
                    picked = features if share.pick is None else features.index_select(0, share.pick)
                    documents = f.docs[part] if share.cells is None else share.cells  # split once for all states
                    stats[f.pool].partial_fit(states[j], picked, f.targets[part], documents,
                                              None if f.extra is None else f.extra[part], sign=f.sign)
