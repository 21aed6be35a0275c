"""What every command shares: `--help`, flag parsing, one-line errors and exit codes.

`run_command` parses the flags (absl) and calls the command's `main` through `guarded`,
which turns the errors a user can cause into one line on stderr and an exit status, and
lets every other exception through with its traceback: those are bugs.
"""

from __future__ import annotations

import contextlib
import gc
import importlib.abc
import importlib.util
import os
import signal
import sys
from collections.abc import Callable, Sequence

from heldout.errors import HeldoutError, ScoresError, UsageError

EXIT_OK = 0
EXIT_FAILED = 1  # the work ran and found a problem (mismatches, failed runs, MD5 mismatch)
EXIT_USAGE = 2  # the work could not start or stopped on an error the message explains
EXIT_INTERRUPTED = 130
HELP_FLAGS = ("--help", "-h", "-?", "--helpshort")
# Errors about what was asked for: exit status 2 whatever the command's other errors give.
USAGE_ERRORS = (UsageError, ScoresError)

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
      error_status: the status for a `HeldoutError` or `OSError` (`USAGE_ERRORS` are
        always 2): commands whose documented status for a failed operation is 1 pass 1.

    Returns:
      `main` with errors turned into statuses.
    """

    def wrapped(argv: Sequence[str]) -> int:
        if len(argv) > 1:
            print_error(name, f"unexpected arguments {list(argv[1:])}")
            return EXIT_USAGE
        try:
            status = main(argv)
        except USAGE_ERRORS as error:
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
    a usage error. Renamed flags warn and set their new names here.
    """
    from absl import flags

    from heldout.cli.flag_types import finish_parsing

    def parse(argv: Sequence[str]) -> list[str]:
        try:
            rest = flags.FLAGS(list(argv))
            finish_parsing(flags.FLAGS)
            return rest
        except flags.Error as error:
            print_error(name, f"{error} (pass --help for the flags)")
            sys.exit(EXIT_USAGE)

    return parse


def command_help(module_name: str, usage: str) -> str:
    """What `--help` prints: the command's description, its examples and every flag it
    takes, the shared groups included (absl's own lists only the main module's).

    Args:
      module_name: the command's module; its docstring, `EXAMPLES` and key flags.
      usage: how the command was called (`heldout scores`, `tools/compute_scores.py`).

    Returns:
      The text, without a final newline.
    """
    from absl import flags

    module = sys.modules[module_name]
    parts = [f"usage: {usage} [flags]", "", (module.__doc__ or "").strip()]
    examples = getattr(module, "EXAMPLES", "").strip("\n")
    if examples:
        parts += ["", "examples:", examples]
    listed = flags.FLAGS.module_help(module_name).split("\n", 2)[-1]
    parts += ["", "flags:", listed, "", "(--helpfull also lists absl's own flags)"]
    return "\n".join(parts)


def quiet_libraries() -> None:
    """Library INFO and WARNING lines (absl, TensorFlow, Dask) off, so that an error is
    the one line a user reads; before those libraries are imported."""
    import logging

    from absl import logging as absl_logging

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "error")
    absl_logging.set_verbosity(absl_logging.ERROR)
    for name in ("tensorflow", "distributed", "h5py", "matplotlib"):
        logging.getLogger(name).setLevel(logging.ERROR)
    if not any(isinstance(finder, _QuietImport) for finder in sys.meta_path):
        sys.meta_path.insert(0, _QuietImport())


@contextlib.contextmanager
def _native_stderr_silenced():
    """File descriptor 2 to /dev/null: what native code writes there is dropped."""
    sys.stderr.flush()
    saved, null = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)


class _QuietImport(importlib.abc.MetaPathFinder):
    """Imports TensorFlow with its native start-up lines dropped (oneDNN and absl notices,
    which TF_CPP_MIN_LOG_LEVEL does not reach); an import error still raises."""

    def find_spec(self, name, path, target=None):
        if name != "tensorflow":
            return None
        sys.meta_path.remove(self)  # the real finders, once
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.loader is not None:
            spec.loader = _QuietLoader(spec.loader)
        return spec


class _QuietLoader(importlib.abc.Loader):
    def __init__(self, loader):
        self._loader = loader

    def __getattr__(self, name):  # everything else of the real loader (resources, ...)
        return getattr(self._loader, name)

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        module.__loader__ = self._loader
        with _native_stderr_silenced():
            self._loader.exec_module(module)


def run_command(main: Main, name: str, error_status: int = EXIT_USAGE) -> None:
    """Parses the flags and runs `main` through `guarded`; exits with its status.

    Args:
      main: the command's `main(argv)`.
      name: the command's name, printed before each error.
      error_status: the status of a `HeldoutError` or `OSError` (see `guarded`).

    Raises:
      SystemExit: always: 0 after `--help` (or `-h`), else `main`'s status.
    """
    from absl import app

    quiet_libraries()
    _names_printable()
    _file_size_limit_as_error()
    args = sys.argv[1 : sys.argv.index("--") if "--" in sys.argv else len(sys.argv)]
    if any(arg in HELP_FLAGS for arg in args):
        print(command_help(main.__module__, sys.argv[0]))
        sys.exit(EXIT_OK)
    app.run(_frozen_at_exit(guarded(main, name, error_status)), flags_parser=flags_parser(name))


def _names_printable() -> None:
    """File names that are not UTF-8 (bytes kept as surrogates) printed as the bytes they
    are, as `ls` prints them, not a UnicodeEncodeError after the work is done (stderr
    already escapes them)."""
    with contextlib.suppress(AttributeError, ValueError):
        sys.stdout.reconfigure(errors="surrogateescape")


def _file_size_limit_as_error() -> None:
    """A write past the file-size limit (`ulimit -f`) fails with EFBIG, which the writer
    reports in one line naming the file and cleans up after, instead of SIGXFSZ killing
    the process and leaving its temporary behind."""
    with contextlib.suppress(AttributeError, ValueError, OSError):
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)


def _frozen_at_exit(main: Callable[[Sequence[str]], int]) -> Callable[[Sequence[str]], int]:
    """`main`, then every object alive moved out of the cyclic collector's reach.

    Why: the interpreter's collections at exit walk every object still alive (hundreds
    of thousands once numba or TensorFlow is loaded), collecting nothing a command needs:
    its files are closed before `main` returns. (Frozen objects are still freed by
    reference counting; only cycles among them are left to the exit.)
    """

    def wrapped(argv: Sequence[str]) -> int:
        try:
            return main(argv)
        finally:
            gc.freeze()

    return wrapped
