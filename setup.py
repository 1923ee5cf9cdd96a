"""Build hook: ship ``nextlaw.pth`` at the top of site-packages (everything else is in setup.cfg).

lm-eval 0.4.13 has no plugin entry points; the .pth line imports ``nextlaw_task.harness.startup`` at
interpreter start-up, which makes ``--model nextlaw`` and the nextlaw tasks known to the harness.
"""

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

PTH = "nextlaw.pth"


class BuildWithStartupHook(build_py):
    """build_py that also writes the start-up .pth file into the build tree."""

    def run(self) -> None:
        super().run()
        target = Path(self.build_lib) / PTH
        target.write_text("import nextlaw_task.harness.startup\n", encoding="utf-8")

    def get_outputs(self, include_bytecode: bool = True) -> list[str]:
        return [*super().get_outputs(include_bytecode), str(Path(self.build_lib) / PTH)]


setup(cmdclass={"build_py": BuildWithStartupHook})
