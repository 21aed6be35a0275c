"""What every command shares: error reporting, exit codes and the absl entry point.

A command module defines `main(argv) -> int` and ends with

    def run() -> None:
        app.run_command(main, name="train_heldout")

`run_command` parses the flags (absl) and calls `main` through `guarded`, which turns the
errors a user can cause into one line on stderr and an exit status, and lets every other
exception through with its traceback: those are bugs, and hiding them as user errors
(as catching `ValueError` would) makes them impossible to report.
"""

from __future__ import annotations

import gc
import os
import sys
from collections.abc import Callable, Sequence

from heldout.errors import HeldoutError, UsageError

EXIT_OK = 0
EXIT_FAILED = 1  # the work ran and found a problem (mismatches, failed runs, MD5 mismatch)
EXIT_USAGE = 2  # the work could not start or stopped on an error the message explains
EXIT_INTERRUPTED = 130

Main = Callable[[Sequence[str]], int | None]


def print_error(name: str, error: BaseException | str) -> None:
    """One line on stderr: `<command>: error: <message>`."""
    print(f"{name}: error: {error}", file=sys.stderr)


def guarded(
    main: Main, name: str, error_status: int = EXIT_USAGE
) -> Callable[[Sequence[str]], int]:
    """Wraps `main` so that user-facing errors print one line and return an exit status.

    Args:
      main: the command's `main(argv)`; returns an exit status (None means 0).
      name: the command's name, printed before each error.
      error_status: the status for a `HeldoutError` or `OSError` (a `UsageError` is always
        2): commands whose documented status for a failed operation is 1 pass 1.

    Returns:
      `main` with errors turned into statuses.
    """

    def wrapped(argv: Sequence[str]) -> int:
        if len(argv) > 1:
            print_error(name, f"unexpected arguments {list(argv[1:])}")
            return EXIT_USAGE
        try:
            status = main(argv)
        except UsageError as error:
            print_error(name, error)
            return EXIT_USAGE
        except (HeldoutError, OSError) as error:
            print_error(name, error)
            return error_status
        except KeyboardInterrupt:
            print(f"{name}: interrupted", file=sys.stderr)
            return EXIT_INTERRUPTED
        return EXIT_OK if status is None else int(status)

    return wrapped


def flags_parser(name: str) -> Callable[[Sequence[str]], list[str]]:
    """absl's flag parsing, with a bad or missing flag as one line and exit status 2.

    absl's own parser exits with 1 on a bad flag value, before `guarded` could say it is
    a usage error.
    """
    from absl import flags

    def parse(argv: Sequence[str]) -> list[str]:
        try:
            return flags.FLAGS(list(argv))
        except flags.Error as error:
            print_error(name, f"{error} (pass --help for the flags)")
            sys.exit(EXIT_USAGE)

    return parse


def run_command(main: Main, name: str, error_status: int = EXIT_USAGE) -> None:
    """Parses the flags and runs `main` through `guarded`; exits with its status."""
    from absl import app, flags

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow is imported
    # `--help` lists the key flags of the script absl runs (tools/x.py); the flags live in
    # the command's module here, so make them the script's key flags too.
    for flag in flags.FLAGS.get_key_flags_for_module(main.__module__):
        flags.FLAGS.register_key_flag_for_module(sys.argv[0], flag)
    app.run(_frozen_at_exit(guarded(main, name, error_status)), flags_parser=flags_parser(name))


def _frozen_at_exit(main: Callable[[Sequence[str]], int]) -> Callable[[Sequence[str]], int]:
    """`main`, then every object alive moved out of the cyclic collector's reach.

    Why: the interpreter's collections at exit walk every object still alive, and a
    process that loaded numba or TensorFlow holds hundreds of thousands: 0.2-0.3 s of a
    2 s `compute_scores` went to them (measured), collecting nothing a command needs: its
    files are closed and renamed before `main` returns, and the memory goes back to the
    system with the process. (Objects frozen this way are still freed by reference
    counting; only cycles among them are left to the exit.)
    """

    def wrapped(argv: Sequence[str]) -> int:
        try:
            return main(argv)
        finally:
            gc.freeze()

    return wrapped
