"""The adversarial suite: hostile inputs against every `heldout` command, each attempt classified.

Builds links, aliases, bombs, non-finite values, sparse and colliding tar members and full
disks in a temporary folder, runs the commands on them in subprocesses with a timeout, and
prints one row per attempt, the totals per outcome and per class, and the CPU. Exits 1 if any
attempt is a traceback, a wrong result, data lost, a hang or a crash (docs/robustness.md).

  python bench/adversary.py [--quick] [--only=CLASS[,CLASS]] [--verbose] [--keep]
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import hashlib
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

    from bench._adversary_base import Attempt

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]  # heldout, bench._shared, download_servers

CLASSES = (
    "links",
    "overwrite",
    "aliases",
    "bombs",
    "values",
    "download",
    "disk",
    "training",
    "workers",
)
SLOW = ("training", "workers")  # not part of --quick
OUTCOMES = ("refused", "ok", "traceback", "wrong", "lost", "hang", "crash")
FAILURES = ("traceback", "wrong", "lost", "hang", "crash")


@dataclasses.dataclass
class Result:
    attempt: Attempt
    outcome: str
    note: str
    seconds: float
    stderr: str


def _digest(path: Path) -> str | None:
    """The sha256 of a file's bytes, `absent`, or `<kind>` for what is not a regular file."""
    if not os.path.lexists(path):
        return "absent"
    if path.is_symlink() and not path.exists():
        return "dangling"
    if not path.is_file():
        return "not a file"
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError as error:
        return f"unreadable ({error.errno})"


def _child_setup(fsize: int | None) -> Callable[[], None]:
    def setup() -> None:
        if fsize is not None:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write fails with EFBIG instead
            resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))

    return setup


def _run_child(argv: list, env: dict, cwd: Path, attempt: Attempt, logs: Path):
    """Runs argv in its own session; (returncode or None on timeout, stderr, peak RSS MB)."""
    with open(logs / "stdout", "wb") as out, open(logs / "stderr", "wb") as err:
        process = subprocess.Popen(
            argv,
            stdout=out,
            stderr=err,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=cwd,
            start_new_session=True,
            preexec_fn=_child_setup(attempt.fsize),
        )
        deadline = time.monotonic() + attempt.timeout
        status = usage = None
        while status is None:
            pid, raw, rusage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                status, usage = raw, rusage
            elif time.monotonic() > deadline:
                os.killpg(process.pid, signal.SIGKILL)  # the session this attempt started
                _, raw, usage = os.wait4(process.pid, 0)
                process.returncode = 0  # reaped here; keeps Popen from waiting again
                stderr = (logs / "stderr").read_bytes().decode(errors="replace")
                return None, stderr, usage.ru_maxrss / 1024
            else:
                time.sleep(0.01)
        process.returncode = os.waitstatus_to_exitcode(status)
    stderr = (logs / "stderr").read_bytes().decode(errors="replace")
    return process.returncode, stderr, usage.ru_maxrss / 1024


def classify(
    attempt: Attempt, code: int | None, stderr: str, changed: list[str], stdout: str = ""
) -> tuple:
    """(outcome, note) of a finished attempt; see docs/robustness.md for the outcomes.

    An error line that ends `(see above)` (a download's refused tar members) is read with
    the `REFUSED:` / `NOT WRITTEN:` lines of stdout, which name the members and causes.
    """
    if code is None:
        return "hang", f"no exit within {attempt.timeout:.0f} s"
    if code < 0:
        return "crash", f"signal {-code} ({signal.Signals(-code).name})"
    if changed:
        return "lost", "changed: " + ", ".join(changed)
    if "Traceback" in stderr:
        return "traceback", _last_line(stderr)
    if code == 0:
        if "ok" not in attempt.expect:
            return "wrong", "exit 0 where a refusal was expected"
        reason = attempt.check() if attempt.check else None
        return ("wrong", reason) if reason else ("ok", "")
    if "refused" not in attempt.expect:
        return "wrong", f"exit {code} where success was expected: {_last_line(stderr)}"
    lines = [line.strip() for line in re.split(r"[\r\n]+", stderr) if line.strip()]
    line = lines[-1] if lines else ""
    if not re.match(r"[\w.\- ]+: error: ", line):
        return "wrong", f"the last line on stderr is not an error: {line or '(nothing)'}"
    noise = [x for x in lines[:-1] if re.search(r"error|fail|exception|warn", x, re.IGNORECASE)]
    if noise:
        return "wrong", f"{len(noise) + 1} error lines on stderr, not one: {noise[0]}"
    if line.endswith("(see above)"):
        listed = re.findall(r"^(?:REFUSED|NOT WRITTEN): +(.*)$", stdout, re.MULTILINE)
        line = " ".join([line, *listed])
    if not re.search(r"/|--\w|\.npz|\.json", line):
        return "wrong", f"names nothing: {line}"
    if attempt.names and attempt.names not in line:
        return "wrong", f"does not name {attempt.names}: {line}"
    words = re.sub(r"\S*/\S*", "", line)  # the message, not the paths it names
    if attempt.needle and not re.search(attempt.needle, words, re.IGNORECASE):
        return "wrong", f"refused for another reason: {line}"
    if attempt.forbid and re.search(attempt.forbid, words, re.IGNORECASE):
        return "wrong", f"misleading: {line}"
    return "refused", line


def _last_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1].strip() if lines else "(nothing on stderr)"


def run_attempt(attempt: Attempt, root: Path, env: dict, index: int, target: Path) -> Result:
    """Runs one attempt in a fresh Python (`target`'s tools/) and classifies it."""
    before = {path: _digest(path) for path in attempt.keep}
    logs = root / "logs" / str(index)
    logs.mkdir(parents=True)
    argv = [sys.executable, str(target / "tools" / f"{attempt.tool}.py"), *attempt.args]
    start = time.monotonic()
    code, stderr, peak_mb = _run_child(argv, env, root, attempt, logs)
    stdout = (logs / "stdout").read_bytes().decode(errors="replace")
    seconds = time.monotonic() - start
    changed = [p.name for p, digest in before.items() if _digest(p) != digest]
    outcome, note = classify(attempt, code, stderr, changed, stdout)
    if outcome in ("ok", "refused"):
        reason = attempt.after() if attempt.after else None
        if attempt.max_rss_mb is not None and peak_mb > attempt.max_rss_mb:
            reason = f"peak memory {peak_mb:.0f} MB (bound {attempt.max_rss_mb:.0f} MB)"
        if reason:
            outcome, note = "wrong", reason
    return Result(attempt, outcome, note, seconds, stderr)


def shown_command(attempt: Attempt, root: Path) -> str:
    """`tool args` with the temporary folder as `$T`."""
    words = [
        a.decode(errors="backslashreplace") if isinstance(a, bytes) else a for a in attempt.args
    ]
    return " ".join([attempt.tool, *words]).replace(str(root), "$T")


def cpu_line() -> str:
    """`CPU: <model>; <n> cores; load average ...`, as the other benches print it."""
    from bench._shared import load_average

    try:
        with open("/proc/cpuinfo") as info:
            models = [
                line.split(":", 1)[1].strip() for line in info if line.startswith("model name")
            ]
    except OSError:
        models = []
    model = models[0] if models else "unknown"
    return f"CPU: {model}; {len(os.sched_getaffinity(0))} cores; {load_average()}"


class Table:
    """Prints one row per attempt as it finishes, then the totals per outcome and class."""

    def __init__(self, attempts: list[Attempt], root: Path, verbose: bool):
        self.root, self.verbose = root, verbose
        self.widths = [max(len(x) for x in (*(a.klass for a in attempts), "class")), 0]
        self.widths[1] = max(len(x) for x in (*(a.case for a in attempts), "case"))

    def header(self) -> None:
        klass, case = self.widths
        print(
            f"{'class':<{klass}}  {'case':<{case}}  {'outcome':<9}  {'s':>5}  command", flush=True
        )

    def row(self, result: Result) -> None:
        klass, case = self.widths
        a = result.attempt
        command = shown_command(a, self.root)
        timing = f"{result.outcome:<9}  {result.seconds:5.1f}"
        print(f"{a.klass:<{klass}}  {a.case:<{case}}  {timing}  {command}")
        if result.outcome in FAILURES or self.verbose:
            print(f"{'':<{klass + case + 4}}-> {result.note[:300]}")
        sys.stdout.flush()

    def totals(self, results: list[Result]) -> None:
        totals = collections.Counter(r.outcome for r in results)
        print("\ntotals: " + ", ".join(f"{o} {totals[o]}" for o in OUTCOMES))
        by_class: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
        for r in results:
            by_class[r.attempt.klass][r.outcome] += 1
        for klass, counts in by_class.items():
            shown = ", ".join(f"{o} {counts[o]}" for o in OUTCOMES if counts[o])
            print(f"  {klass:<{self.widths[0]}}  {shown}")


def build(root: Path, server, env: dict, *, quick: bool, only: set[str]) -> list[Attempt]:
    """Every attempt of the chosen classes (all when `only` is empty), their inputs written."""
    from bench import _adversary_content, _adversary_layout, _adversary_slow
    from bench._adversary_base import Base

    base = Base(root, server, env)
    attempts = []
    for klass in CLASSES:
        if (only and klass not in only) or (quick and klass in SLOW):
            continue
        module = next(
            m
            for m in (_adversary_layout, _adversary_content, _adversary_slow)
            if hasattr(m, f"cases_{klass}")
        )
        attempts += [
            a for a in getattr(module, f"cases_{klass}")(base, quick) if a.quick or not quick
        ]
    return attempts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="the fast subset (CI)")
    parser.add_argument("--only", default="", help="comma-separated classes to run")
    parser.add_argument("--verbose", action="store_true", help="print every attempt's last line")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    parser.add_argument(
        "--repo", default=str(REPO), help="the checkout whose commands run (default: this one)"
    )
    options = parser.parse_args()

    from download_servers import ObjectServer

    print(cpu_line())
    print(f"commands of {Path(options.repo).resolve()}")
    only = {c for c in options.only.split(",") if c}
    unknown = only - set(CLASSES)
    if unknown:
        parser.error(f"unknown classes {sorted(unknown)}; classes: {', '.join(CLASSES)}")
    target = Path(options.repo).resolve()
    if not (target / "tools").is_dir():
        parser.error(f"--repo={options.repo}: no tools/ folder there")
    root = Path(tempfile.mkdtemp(prefix="adversary-"))
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join([str(target), os.environ.get("PYTHONPATH", "")]).rstrip(
            os.pathsep
        ),
        TF_CPP_MIN_LOG_LEVEL="3",
        HELDOUT_HOME=str(root / "home"),
    )
    start = time.monotonic()
    try:
        with ObjectServer() as server:
            attempts = build(root, server, env, quick=options.quick, only=only)
            print(f"{len(attempts)} attempts, built in {time.monotonic() - start:.1f} s\n")
            table = Table(attempts, root, options.verbose)
            table.header()
            results = []
            for index, attempt in enumerate(attempts):
                results.append(run_attempt(attempt, root, env, index, target))
                table.row(results[-1])
    finally:
        if options.keep:
            print(f"kept {root}")
        else:
            _remove(root)
    table.totals(results)
    failures = sum(r.outcome in FAILURES for r in results)
    print(f"\n{len(results)} attempts in {time.monotonic() - start:.0f} s; {failures} failures")
    return 1 if failures else 0


def _remove(root: Path) -> None:
    for folder, dirs, _ in os.walk(root):  # unreadable folders made by a case
        for name in dirs:
            path = os.path.join(folder, name)
            if not os.path.islink(path):
                os.chmod(path, 0o755)
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
