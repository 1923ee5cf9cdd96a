"""The base of nextlaw's own errors: a bad option, corpus, model or measurement that the user can fix.

Every such error says, in one line, what is wrong and how to fix it. Under ``lm_eval`` the
start-up hook prints it as ``error: <message>`` and exits non-zero without a traceback (the
traceback only with ``--verbosity DEBUG``); errors of any other type keep Python's traceback.
Stdlib only.
"""

from __future__ import annotations


class NextlawError(Exception):
    """A problem the user can fix; the message names the file, line or option and the fix."""


def one_line(error: BaseException) -> str:
    """The error's message with its whitespace collapsed: how it is printed as ``error: ...``."""
    return " ".join(str(error).split())


class MeasurementError(NextlawError, ValueError):
    """The model's hidden states or the documents cannot be measured (an overflow, foreign token ids)."""
