"""Corpus-level metric values as lm-eval aggregates them, with their standard errors.

Every document of a nextlaw task reports the same corpus-level value; the aggregation returns it.
The value is a :class:`CorpusValue`, a float that also carries its jackknife standard error, so
that the start-up hook can hand lm-eval a standard-error function for ``corpus_value``
(:func:`corpus_stderr`) and the error lands in lm-eval's own Stderr column and in the results file
as ``<metric>_stderr,none``. No lm-eval import here: the hook loads this module while lm-eval's
evaluator is still being imported.
"""

from __future__ import annotations

import math
from collections.abc import Sequence


class CorpusValue(float):
    """A float that carries the standard error of the corpus-level metric it is (None when it has none)."""

    stderr: float | None

    def __new__(cls, value: float, stderr: float | None = None) -> CorpusValue:
        obj = super().__new__(cls, value)
        obj.stderr = None if stderr is None else float(stderr)
        return obj

    def __reduce__(self) -> tuple:
        return (CorpusValue, (float(self), self.stderr))


def _same(a: float, b: float) -> bool:
    return a == b or (math.isnan(a) and math.isnan(b))


def corpus_value(items: Sequence[float]) -> float:
    """Aggregate a corpus-level metric: every document carries the same value; return it."""
    first = float(items[0])
    if any(not _same(float(v), first) for v in items):
        raise ValueError("nextlaw: documents of one task carry different corpus metrics")
    return first


def corpus_stderr(items: Sequence[float]) -> float | str:
    """The standard error the documents carry, or lm-eval's ``N/A`` for a metric without one."""
    errors = {getattr(v, "stderr", None) for v in items}
    if len(errors) != 1 and not all(e is not None and math.isnan(e) for e in errors):
        raise ValueError("nextlaw: documents of one task carry different standard errors")
    error = next(iter(errors))
    return "N/A" if error is None else float(error)
