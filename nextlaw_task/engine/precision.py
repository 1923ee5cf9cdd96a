"""The ``fast`` precision: Gram updates from float32 products, with a check of what they cost in PR.

In ``float64`` precision (the default) every product of the statistics is a float64 product. In
``fast`` precision the shifted rows (formed in float64, so large offsets cancel exactly) are rounded
to float32 and multiplied in chunks of at most :data:`FAST_CHUNK_ROWS` rows; each chunk's products
are added to the float64 sums. On a CPU the products are float32 GEMMs; on a GPU they use its
tensor cores through three TF32 products of a high and a low part (:func:`split_tf32`), about as
accurate as float32 (the float32 units of a GPU are no faster than its float64 ones). Where rows
come a few at a time (a jackknife cell's share of a batch, when rows are not gathered), a chunk is
summed in float32 over the updates until it holds :data:`FAST_CHUNK_ROWS` rows or the sums are
read: each update then rewrites a float32 matrix inside its GEMM, not the float64 one in a pass of
its own, and the float64 sums take one addition a chunk.

The error is measured, not assumed: every :data:`SHADOW_EVERY`-th chunk is also multiplied in
float64, and the state keeps the difference (float64 minus fast products) of those chunks, a
sample of the error with all its structure (offsets, near-collinear columns, outlier dimensions).
At the end :func:`checked_deviation` takes each scalar measure's PR from the fast sums and
computes it again with the sample's error scaled to all rows added back; twice their difference, floored by the
typical change an error of that size makes (a single sample can leave it near zero by chance), is
the deviation reported. Scaling by rows overstates errors that grow like the square root of the rows
(rounding of random sign) and matches those that grow like the rows (the rounding of the inputs),
so the check leans to caution; it checks, it does not bound. Where the sampled error may be over
:data:`RELATIVE_ERROR_LIMIT` of the Gram matrix in some direction (near-duplicate columns), no first
order describes the change and the deviation is inf. A state whose deviation exceeds
:data:`FAST_TOLERANCE` is measured again in float64 (the runner makes that pass).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

from nextlaw_task.engine.measures import state_outcomes
from nextlaw_task.engine.solve import GramSolver
from nextlaw_task.engine.sums import F64, Sums, add_gram, gram_blocks, symmetric

#: rows whose float32 products are summed before they are added in float64 (bounds the float32 sums)
FAST_CHUNK_ROWS = 1024
#: one chunk in this many is also multiplied in float64: the sample of the error the check reads
SHADOW_EVERY = 16
#: largest checked PR deviation (absolute) a fast state may have; beyond it the state is measured in float64
FAST_TOLERANCE = 1e-6
#: the deviation reported is this many times the PR change the scaled error sample makes
SAFETY = 2.0
#: largest error, relative to the Gram matrix in its weakest direction, for which the PR change is first order:
#: beyond it a direction of small variance is lost in rounding, with the share of the target it would explain
RELATIVE_ERROR_LIMIT = 0.1
#: float32 bits that TF32 keeps: sign, exponent and the 10 leading bits of the significand
TF32_MASK = -(1 << 13)


def split_tf32(x: Tensor) -> tuple[Tensor, Tensor]:
    """``x`` (float32) as hi + lo exactly, hi with TF32's 11 significant bits (its products are exact)."""
    hi = (x.view(torch.int32) & TF32_MASK).view(torch.float32)
    return hi, x - hi


def _products(a: Tensor, b: Tensor) -> Tensor:
    """a'b of float32 ``a`` and ``b``: a float32 GEMM, or on a GPU three TF32 GEMMs of split parts."""
    if a.device.type != "cuda":
        return a.T @ b
    (a_hi, a_lo), (b_hi, b_lo) = split_tf32(a), split_tf32(b)
    allowed = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = True
    try:
        return a_hi.T @ b_hi + (a_hi.T @ b_lo + a_lo.T @ b_hi)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = allowed


class FastGram:
    """The fast Gram update of one state's ``cells`` and its check's sample: ``shadow`` (upper block
    triangle) and the rows it holds, beside all rows updated.

    ``accumulate``: each cell sums its chunk's products in a float32 matrix of its own (``partial``,
    upper block triangle) until the chunk holds :data:`FAST_CHUNK_ROWS` rows or :meth:`flush` runs;
    otherwise (rows gathered into long blocks) each chunk is added to the float64 sums at once.
    """

    def __init__(self, size: int, device: torch.device, cells: int = 1, accumulate: bool = False) -> None:
        self.shadow = torch.zeros(size, size, dtype=F64, device=device)
        blocks = gram_blocks(size, device)
        self.blocks = [(size * i // blocks, size * (i + 1) // blocks) for i in range(blocks)]
        self.partial = torch.zeros(cells, size, size, dtype=torch.float32, device=device) if accumulate else None
        #: per cell, the rows in its open chunk and whether that chunk is sampled
        self.filled = [0] * cells
        self.sampled = [False] * cells
        self.chunks = 0
        self.rows = 0
        self.shadow_rows = 0

    def update(self, zz: Tensor, cell: int, z: Tensor, sign: int = 1) -> None:
        """Add ``sign`` z'z to the upper block triangle of the float64 ``zz[cell]`` from fast products."""
        for rows in torch.split(z, FAST_CHUNK_ROWS):
            if self.filled[cell] + rows.shape[0] > FAST_CHUNK_ROWS:
                self._close(zz, cell)
            if not self.filled[cell]:  # a new chunk
                self.sampled[cell] = self.chunks % SHADOW_EVERY == 0
                self.chunks += 1
            low = rows.float()
            for start, stop in self.blocks:
                a, b = low[:, start:stop], low[:, start:]
                if self.partial is None:  # the chunk is added to the float64 sums at once
                    self._add(zz[cell, start:stop, start:], self.shadow[start:stop, start:], _products(a, b), sign, cell)
                elif a.device.type == "cuda":
                    self.partial[cell, start:stop, start:].add_(_products(a, b), alpha=sign)
                else:
                    self.partial[cell, start:stop, start:].addmm_(a.T, b, alpha=sign)
            if self.sampled[cell]:
                add_gram(self.shadow, rows, len(self.blocks), sign)
                self.shadow_rows += rows.shape[0]
            self.rows += rows.shape[0]
            if self.partial is not None:
                self.filled[cell] += rows.shape[0]

    def flush(self, zz: Tensor) -> None:
        """Add every cell's open float32 chunk to the float64 ``zz`` (before the sums are read)."""
        for cell, filled in enumerate(self.filled):
            if filled:
                self._close(zz, cell)

    def _close(self, zz: Tensor, cell: int) -> None:
        """Add the open chunk of ``cell`` to ``zz[cell]`` and empty it."""
        for start, stop in self.blocks:
            block = self.partial[cell, start:stop, start:]
            self._add(zz[cell, start:stop, start:], self.shadow[start:stop, start:], block, 1, cell)
            block.zero_()
        self.filled[cell] = 0

    def _add(self, target: Tensor, shadow: Tensor, products: Tensor, sign: int, cell: int) -> None:
        """Add float32 ``products`` to the float64 ``target``; a sampled chunk's also leave ``shadow``."""
        target.add_(products, alpha=sign)
        if self.sampled[cell]:
            shadow.sub_(products, alpha=sign)

    def error_estimate(self) -> Tensor:
        """The sampled error (float64 minus fast products) scaled to every row: what to add to the sums."""
        return symmetric(self.shadow) * (self.rows / max(self.shadow_rows, 1))


def _centered_solver(total: Sums) -> tuple[Tensor, GramSolver]:
    """The centered Gram matrix of every column of ``total`` and the least-squares solver of its features."""
    d = total.hidden_size
    centered = torch.addr(total.zz, total.z, total.z, alpha=-1.0 / total.n)
    return centered, GramSolver(centered[:d, :d], total.zz.diagonal()[:d])


def relative_error(solver: GramSolver, error: Tensor) -> float:
    """How large the features' block of ``error`` is beside their centered Gram matrix in its weakest
    directions: the Frobenius norm of L^-1 E L^-T (L the solver's scaled Cholesky factor), a bound on its
    largest |eigenvalue| that costs two triangular solves, not an eigendecomposition; inf when singular."""
    if solver.factor is None or solver.n_constant:
        return math.inf
    d = solver.size
    scaled = error[:d, :d] * solver.scale[:, None] * solver.scale[None, :]
    half = torch.linalg.solve_triangular(solver.factor, scaled, upper=False)
    whole = torch.linalg.solve_triangular(solver.factor, half.T, upper=False)
    return float(torch.linalg.matrix_norm(whole))


def _typical_change(centered: Tensor, solver: GramSolver, error: Tensor, j: int) -> float:
    """The PR change an error of ``error``'s size makes in a fit of column ``j`` when its entries fall with
    random signs (the root mean square entry, in unit-variance units, times |b|^2 there over the TSS):
    a floor under the sampled change, which a single sample can leave near zero by chance."""
    d = solver.size
    keep = torch.cat([torch.arange(d, device=error.device), torch.tensor([j], device=error.device)])
    spread = centered.diagonal()[keep].clamp_min(torch.finfo(F64).tiny).sqrt()
    unit = error[keep][:, keep] / spread[:, None] / spread[None, :]
    rms = float(torch.linalg.matrix_norm(unit)) / keep.numel()
    beta = solver.solve(centered[:d, j])
    weights = torch.cat([-beta, beta.new_ones(1)]) * spread
    return rms * float(weights.square().sum()) / float(centered[j, j])


def checked_deviation(total: Sums, fast: FastGram, values: Mapping[str, float], columns: Sequence[str],
                      state: int) -> float:
    """The deviation of the scalar measures' PRs (``columns``: in column order; ``values``: the PRs the fast
    sums ``total`` of ``state`` gave) that they are checked to: twice the larger of the change the scaled
    error sample makes when added back and its typical change; inf where that error may be over
    :data:`RELATIVE_ERROR_LIMIT` of the Gram matrix in some direction (no first-order check holds there)."""
    scalar = {measure: j for j, measure in enumerate(columns)}
    error = fast.error_estimate()
    centered, solver = _centered_solver(total)
    if not relative_error(solver, error) <= RELATIVE_ERROR_LIMIT:
        return math.inf
    corrected = Sums(total.n, total.z, total.zz + error, total.hidden_size)
    fixed = state_outcomes(state, [corrected], tuple(scalar), scalar)
    found = 0.0
    for measure, j in scalar.items():
        a, b = values[measure], fixed[measure].value
        if math.isnan(a) and math.isnan(b):  # no value either way (such a state is flagged, not ranked)
            continue
        if not (math.isfinite(a) and math.isfinite(b)):
            return math.inf
        typical = _typical_change(centered, solver, error, total.hidden_size + j)
        found = max(found, SAFETY * max(abs(a - b), typical))
    return found
