"""The task class the YAMLs name (``class: !function nextlaw_class.NextlawTask``).

lm-eval 0.4.9 to 0.4.11 resolve ``!function`` only to a Python file beside the YAML; later
releases look there first too. This file points them to the class in the package.
"""

from nextlaw_task.harness.task import NextlawTask

__all__ = ["NextlawTask"]
