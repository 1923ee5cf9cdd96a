"""Float64 linear algebra on sufficient statistics: least squares from a centered Gram matrix.

Normal equations square the condition number of the data, so every solve here works on the
Gram matrix scaled to unit diagonal (a free, exact change of units) and uses Cholesky in float64.
When Cholesky fails or a pivot is at the rounding level of a float64 Gram matrix, it falls back
to an eigendecomposition and a pseudo-inverse that drops eigenvalues at or below that level
(minimum-norm least squares in the scaled units). Columns whose centered variance is lost in
rounding (constant features) are dropped and get a zero coefficient.
"""

from __future__ import annotations

import torch
from torch import Tensor

EPS = torch.finfo(torch.float64).eps
#: A column whose centered sum of squares is below this fraction of its raw (uncentered, about
#: the shift) sum of squares carries no resolvable variance: it is treated as constant.
CONSTANT_COLUMN_RTOL = 1e-12
#: Fraction of new samples' scatter in directions a fit leaves undetermined above which predictions
#: for those samples depend on the solver (rounding noise in a null direction stays far below it).
UNDETERMINED_RTOL = 1e-8


def rank_tolerance(size: int) -> float:
    """Relative eigenvalue level of a ``size`` x ``size`` float64 Gram matrix that is rounding noise."""
    return max(size, 1) * EPS


def _symmetric(matrix: Tensor) -> Tensor:
    return (matrix + matrix.T) * 0.5


class GramSolver:
    """Least-squares coefficients from a centered Gram matrix, factored once for many right-hand sides.

    ``gram`` is X'X of centered features (d x d, float64) and ``raw_diag`` the diagonal of the
    uncentered sums of squares (used to recognise constant columns). ``solve(X'Y)`` returns B
    minimising ||Y - X B||: the unique solution when the scaled Gram is well conditioned, else the
    minimum-norm one in unit-variance units. Fitted values X B, hence residual sums, agree with any
    least-squares solver wherever the problem is resolvable in float64.
    """

    def __init__(self, gram: Tensor, raw_diag: Tensor | None = None) -> None:
        diag = gram.diagonal()
        floor = torch.zeros_like(diag) if raw_diag is None else CONSTANT_COLUMN_RTOL * raw_diag
        self.keep = torch.nonzero(diag > floor).flatten()
        self.size = gram.shape[0]
        self.n_constant = self.size - int(self.keep.numel())
        self.scale = diag[self.keep].rsqrt()
        kept = gram if self.n_constant == 0 else gram[self.keep][:, self.keep]
        # Cholesky and eigh read one triangle of the symmetric matrix: no symmetrizing copy is needed
        scaled = torch.mul(kept, self.scale[:, None]).mul_(self.scale)
        self._factor: Tensor | None = None
        self._basis: Tensor | None = None
        self._inverse_eigenvalues: Tensor | None = None
        self._null: Tensor | None = None
        if self.keep.numel() == 0:
            self.method, self.rank = "none", 0
        elif not self._try_cholesky(scaled):
            self._eigh(scaled)

    @property
    def factor(self) -> Tensor | None:
        """The Cholesky factor L of the scaled Gram matrix of the kept columns (None when eigh was used)."""
        return self._factor

    def _try_cholesky(self, scaled: Tensor) -> bool:
        factor, info = torch.linalg.cholesky_ex(scaled)
        if int(info) != 0:
            return False
        pivots = factor.diagonal().square()
        if float(pivots.min()) <= rank_tolerance(scaled.shape[0]):
            return False
        self._factor, self.method, self.rank = factor, "cholesky", scaled.shape[0]
        return True

    def _eigh(self, scaled: Tensor) -> None:
        values, vectors = torch.linalg.eigh(scaled)
        kept = values > values.max().clamp_min(0) * rank_tolerance(scaled.shape[0])
        self._basis = vectors[:, kept]
        self._inverse_eigenvalues = values[kept].reciprocal()
        self._null = vectors[:, ~kept]
        self.method, self.rank = "eigh", int(kept.sum())

    def undetermined(self, scatter: Tensor, raw_diag: Tensor) -> float:
        """Share of new samples' ``scatter`` (about the fitted mean, d x d) that the fit does not determine.

        Predictions for samples in the fit's null space, or varying along a column that was constant
        in the fit, depend on the solver's choice of solution: such a column counts as 1.0, a null
        direction by its share of the scatter in the fit's unit-variance units. ``raw_diag`` is the
        new samples' diagonal sum of squares about the shift (to tell a varying column from rounding).
        """
        dropped = torch.ones(self.size, dtype=torch.bool, device=scatter.device)
        dropped[self.keep] = False
        if bool((scatter.diagonal()[dropped] > CONSTANT_COLUMN_RTOL * raw_diag[dropped]).any()):
            return 1.0
        if self._null is None or self._null.shape[1] == 0:
            return 0.0
        scaled = scatter[self.keep][:, self.keep] * self.scale[:, None] * self.scale[None, :]
        total = float(scaled.diagonal().sum())
        null = float((self._null * (scaled @ self._null)).sum())
        return max(null, 0.0) / total if total > 0 else 0.0

    def solve(self, rhs: Tensor) -> Tensor:
        """Coefficients B (d x m, or d for a vector rhs) for the cross-products ``rhs`` = X'Y."""
        vector = rhs.ndim == 1
        rhs2 = rhs[:, None] if vector else rhs
        coef = torch.zeros_like(rhs2)
        if self.method != "none":
            scaled_rhs = rhs2[self.keep] * self.scale[:, None]
            if self._factor is not None:
                scaled_coef = torch.cholesky_solve(scaled_rhs, self._factor)
            else:
                projected = (self._basis.T @ scaled_rhs) * self._inverse_eigenvalues[:, None]
                scaled_coef = self._basis @ projected
            coef[self.keep] = scaled_coef * self.scale[:, None]
        return coef[:, 0] if vector else coef


def _eigh_pinv_trace(a: Tensor, b: Tensor) -> Tensor:
    values, vectors = torch.linalg.eigh(_symmetric(b))
    kept = values > values.max().clamp_min(0) * rank_tolerance(b.shape[0])
    basis = vectors[:, kept]
    return ((basis * (a @ basis)).sum(0) / values[kept]).sum()


def trace_pinv(a: Tensor, b: Tensor) -> float:
    """Tr(a b^+) for a symmetric positive semi-definite ``b`` (float64).

    Uses Cholesky of the diagonally scaled ``b`` when it is safely non-singular (then b^+ = b^-1
    and the scaling cancels exactly); otherwise the pseudo-inverse from ``eigh`` in the original
    units, dropping eigenvalues at or below max eigenvalue x size x eps (numpy.linalg.pinv's
    convention with rcond = size x eps). The pseudo-inverse is not invariant to a change of units,
    so it is never taken on a scaled matrix.
    """
    diag = b.diagonal()
    if bool((diag > 0).all()):
        scale = diag.rsqrt()
        factor, info = torch.linalg.cholesky_ex(_symmetric(b * scale[:, None] * scale[None, :]))
        if int(info) == 0 and float(factor.diagonal().square().min()) > rank_tolerance(b.shape[0]):
            scaled_a = a * scale[:, None] * scale[None, :]
            return float(torch.cholesky_solve(scaled_a, factor).diagonal().sum())
    return float(_eigh_pinv_trace(a, b))


def trace_pinv_factored(a: Tensor, rows: Tensor) -> float:
    """Tr(a b^+) with b = rows' rows given by its factor ``rows`` (k x d), cheap when k < d.

    b^+ = rows' K^+ K^+ rows with K = rows rows' (k x k), so only k x k factorizations are needed:
    Cholesky of the diagonally scaled K when ``rows`` has full row rank (pass rows with known
    null combinations removed), else eigh of K with the cutoff of :func:`trace_pinv` (the nonzero
    eigenvalues of K and b coincide).
    """
    gram = _symmetric(rows @ rows.T)
    diag = gram.diagonal()
    if bool((diag > 0).all()):
        scale = diag.rsqrt()
        factor, info = torch.linalg.cholesky_ex(_symmetric(gram * scale[:, None] * scale[None, :]))
        if int(info) == 0 and float(factor.diagonal().square().min()) > rank_tolerance(rows.shape[1]):
            solved = torch.cholesky_solve(rows * scale[:, None], factor) * scale[:, None]
            return float((solved * (solved @ a)).sum())
    values, vectors = torch.linalg.eigh(gram)
    kept = values > values.max().clamp_min(0) * rank_tolerance(rows.shape[1])
    projected = vectors[:, kept].T @ rows
    return float(((projected * (projected @ a)).sum(1) / values[kept].square()).sum())
