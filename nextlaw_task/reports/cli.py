"""The ``nextlaw`` command: report, leaderboard and sweep over lm-eval results.

Every expected failure (bad path, not a results file, unknown sort key, failed lm-eval run)
prints one ``nextlaw: error: ...`` line to stderr and exits with status 2, never a traceback.
Arguments after a lone ``--`` are handed to each lm-eval run of ``nextlaw sweep`` as they are.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from nextlaw_task.errors import one_line
from nextlaw_task.reports import leaderboard, sweep
from nextlaw_task.reports.results import load_rows

EXIT_ERROR = 2
EXIT_INTERRUPTED = 130


class _UsageError(Exception):
    """A command line argparse rejected."""


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are raised instead of printed with the full usage."""

    def error(self, message: str) -> NoReturn:
        raise _UsageError(f"{message} (see '{self.prog} --help')")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``nextlaw`` and its three subcommands."""
    parser = _Parser(prog="nextlaw", description="Report, rank and sweep nextlaw lm-eval results.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    report = commands.add_parser("report", help="markdown table of one results file, and its plot")
    report.add_argument("results", type=Path, help="lm-eval results JSON (or a folder of them)")
    report.add_argument("-o", "--output", type=Path, help="write the law plot here (.png or .svg)")

    board = commands.add_parser(
        "leaderboard",
        help="models ranked within each task; one row per (model, task, corpus, counts, options)",
    )
    board.add_argument("paths", type=Path, nargs="+", help="results files or folders (searched recursively)")
    board.add_argument(
        "--benchmarks",
        type=Path,
        action="append",
        default=[],
        metavar="FILE",
        help="a results file whose benchmark scores join the rows of its model (repeatable); "
        "otherwise a row shows only the scores of its own run",
    )
    board.add_argument("--format", choices=leaderboard.FORMATS, default="md")
    board.add_argument(
        "--sort",
        default=leaderboard.DEFAULT_SORT,
        help="column key to rank by within each task (default %(default)s, ascending: most negative r first)",
    )
    board.add_argument("--descending", action="store_true", help="sort largest first")
    board.add_argument("-o", "--output", type=Path, help="write here instead of standard output")

    run = commands.add_parser(
        "sweep",
        help="run lm-eval on each checkpoint and chart the law against training step",
        epilog="Arguments after '--' go to every lm_eval run, e.g. -- --batch_size 4 --device cpu",
    )
    source = run.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoints", type=Path, nargs="+", metavar="DIR", help="checkpoint folders")
    source.add_argument("--model", help="model name or path whose revisions to sweep")
    run.add_argument("--revisions", nargs="+", metavar="REV", help="revisions of --model")
    run.add_argument("--task", default=sweep.DEFAULT_TASK, help="lm-eval task (default %(default)s)")
    run.add_argument("--limit", type=int, help="documents per run (lm-eval --limit)")
    run.add_argument("--output", type=Path, default=Path("nextlaw_sweep"), help="output folder")
    run.add_argument("--plot", default="sweep.png", help="plot file name in the output folder (.png/.svg)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    passthrough: list[str] = []
    if "--" in args_list:
        cut = args_list.index("--")
        args_list, passthrough = args_list[:cut], args_list[cut + 1 :]
    try:
        args = build_parser().parse_args(args_list)
        if passthrough and args.command != "sweep":
            raise _UsageError("arguments after '--' are only for 'nextlaw sweep'")
        handlers = {"report": _report, "leaderboard": _leaderboard, "sweep": _sweep}
        handlers[args.command](args, passthrough)
    except (_UsageError, ValueError, OSError) as err:
        print(f"nextlaw: error: {_one_line(err)}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("nextlaw: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    return 0


def _one_line(err: Exception) -> str:
    """An error as one line: ``path: reason`` for OS errors, any message's whitespace collapsed."""
    if isinstance(err, OSError) and err.filename:
        return f"{err.filename}: {err.strerror or err}"
    return one_line(err)


def _report(args: argparse.Namespace, _: list[str]) -> None:
    from nextlaw_task.reports.plot import image_format, law_figure, save_figure
    from nextlaw_task.reports.report import markdown_report

    if args.output is not None:
        image_format(args.output)
    rows = load_rows([args.results])
    print(markdown_report(rows), end="")
    if args.output is not None:
        save_figure(law_figure(rows), args.output)
        print(f"\nplot written to {args.output}")


def _leaderboard(args: argparse.Namespace, _: list[str]) -> None:
    rows = load_rows(args.paths, benchmarks=args.benchmarks)
    text = leaderboard.render(rows, args.format, args.sort, args.descending)
    if args.output is None:
        sys.stdout.write(text)
    else:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text, encoding="utf-8")


def _sweep(args: argparse.Namespace, passthrough: list[str]) -> None:
    if args.model is not None and not args.revisions:
        raise _UsageError("--model needs --revisions")
    if args.checkpoints is not None and args.revisions:
        raise _UsageError("--revisions goes with --model, not --checkpoints")
    if args.checkpoints is not None:
        targets = sweep.checkpoint_targets(args.checkpoints)
    else:
        targets = sweep.revision_targets(args.model, args.revisions)
    extra = (["--limit", str(args.limit)] if args.limit is not None else []) + passthrough
    result = sweep.run_sweep(
        targets,
        task=args.task,
        output=args.output,
        lm_eval_args=extra,
        plot_name=args.plot,
        log=lambda line: print(line, file=sys.stderr, flush=True),
    )
    print(result.markdown_path.read_text(encoding="utf-8"), end="")
    for path in (result.json_path, result.csv_path, result.plot_path):
        print(f"wrote {path}")


if __name__ == "__main__":
    sys.exit(main())
