"""nextlaw: the equi-learning law of next-token prediction as an lm-evaluation-harness task.

Data flow: ``corpus`` (documents) -> ``model`` + ``capture`` (hidden states, streamed by hooks)
-> ``normalize`` -> ``stats`` (streaming sufficient statistics) -> ``solve`` / ``measures``
(prediction residual per state) -> ``law`` (the fit over depth) -> ``task`` (lm-eval metrics).

Importing this package is cheap on purpose: the start-up hook imports it in every Python process.
"""

__version__ = "0.3.0"
