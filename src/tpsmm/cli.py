"""The ``tpsmm`` command: one sub-command per user job.

Each sub-command lives in ``tpsmm.commands.<name>`` and exposes
``add_parser(subparsers)``, which registers its options and sets ``func``
(a callable taking the parsed ``argparse.Namespace`` and returning an exit
status). Errors derived from :class:`tpsmm.errors.TPSMMError` become one
line on stderr and exit status 2; warnings one line each. SIGTERM (``kill``, a job
scheduler) is Ctrl-C: the command stops where it is, removes what it had not finished
writing, and exits with status 130 (``serve`` stops with 0; ``train`` saves first).
"""

from __future__ import annotations

import argparse
import importlib
import signal
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

from tpsmm.errors import TPSMMError

COMMANDS = ("demo", "animate", "crop", "serve", "train", "train_avd", "reconstruct", "synth",
            "export")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tpsmm", description="Thin-Plate Spline Motion Model for Image Animation"
    )
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
        importlib.import_module(f"tpsmm.commands.{name}").add_parser(subparsers)
    return parser


@contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """Raise KeyboardInterrupt on SIGTERM, whose default would end the process at once and
    leave the hidden temporary files of atomic writes behind. Training installs its own
    handler (stop after the current step, then save) while it runs."""
    try:
        previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    except ValueError:  # not the main thread: signals are not ours to change
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def one_line(message, category, filename, lineno, file=None, line=None) -> None:
        # Python's format adds the source line that raised it: a second line, for users
        # who did not write that code.
        print(f"tpsmm {args.command}: warning: {message}", file=sys.stderr)

    try:
        with warnings.catch_warnings(), _sigterm_interrupts():
            warnings.showwarning = one_line
            return int(args.func(args) or 0)
    except TPSMMError as error:
        print(f"tpsmm {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"tpsmm {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
