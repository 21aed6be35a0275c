"""What the adversarial suite's cases share: an attempt, the clean inputs they spoil, and
the makers of hostile bytes (tarballs, npy headers, deflate bombs) and of checks.

Imported as `bench._adversary_base` once bench/adversary.py has put the repository and
tests/ on sys.path.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
from numpy.lib import format as npy_format

REPO = Path(__file__).resolve().parents[1]
REFUSED, OK = frozenset({"refused"}), frozenset({"ok"})
EITHER = REFUSED | OK  # e.g. a run reached twice: read once (same result) or refused


@dataclasses.dataclass
class Attempt:
    """One command on one hostile input, and what must hold afterwards.

    Attributes:
      klass, case: the class (`links`, `bombs`, ...) and a short name of the input.
      tool: the script under tools/ that runs the command (`compute_scores`).
      args: its flags (str, or bytes for names that are not UTF-8).
      expect: the acceptable outcomes among `refused` and `ok`.
      needle: a regular expression the refusal's words (its paths left out) must match: the
        cause it names.
      names: a file name the refusal line must contain.
      forbid: a regular expression it must not match (a misleading message).
      keep: files whose bytes (or absence) must not change: victims behind links, inputs.
      check: after exit 0: the reason the result is wrong, or None.
      after: after any exit: the reason something is wrong (leftovers, a huge file), or None.
      fsize: RLIMIT_FSIZE of the child (a full disk), bytes.
      max_rss_mb: the child's peak memory above which it is `wrong` (a memory bomb inflated).
      timeout: seconds before it is a `hang`.
      quick: part of `--quick`.
    """

    klass: str
    case: str
    tool: str
    args: list
    expect: frozenset = REFUSED
    needle: str | None = None
    names: str | None = None
    forbid: str | None = None
    keep: list = dataclasses.field(default_factory=list)
    check: Callable[[], str | None] | None = None
    after: Callable[[], str | None] | None = None
    fsize: int | None = None
    max_rss_mb: float | None = None
    timeout: float = 60.0
    quick: bool = True


SPEC = dict(num_train=60, num_test=20, subset_ratios=(0.3, 0.7), runs_per_ratio=4)
SCORES = "--scores=cscore,memorization,influence"


class Base:
    """The clean inputs the cases copy and spoil: an experiment, its scores, a tarball."""

    def __init__(self, root: Path, server, env: dict):
        from heldout.testing.synthetic import SyntheticSpec, write_synthetic_experiment

        self.root, self.server, self.env = root, server, env
        self.experiment = root / "clean" / "exp"
        write_synthetic_experiment(self.experiment, SyntheticSpec(**SPEC))
        self.scores = root / "clean" / "scores.npz"  # dense influence and memorization
        self.topk = root / "clean" / "topk.npz"
        self.run_tool(
            "compute_scores",
            f"--experiment_dir={self.experiment}",
            SCORES,
            f"--output={self.scores}",
        )
        self.run_tool(
            "compute_scores",
            f"--experiment_dir={self.experiment}",
            SCORES,
            "--influence_topk=2",
            f"--output={self.topk}",
        )
        self.victim = root / "victim.txt"
        self.victim.write_bytes(b"precious bytes of another user\n")
        self.cscores = self.npz(
            "clean/cscores.npz", scores=np.linspace(0, 1, 60), labels=np.zeros(60, np.int64)
        )
        self.pairs = self.npz(
            "clean/pairs.npz",
            tr_idx=np.array([0, 2]),
            tt_idx=np.array([1, 0]),
            infl=[0.2, 0.3],
            mem=[0.5, 0.6],
        )
        self.labels = self.npz(
            "clean/labels.npz", tr_labels=np.zeros(60, np.int64), tt_labels=np.zeros(20, np.int64)
        )
        sys.path.insert(0, str(REPO / "tests"))
        from training_slice import tiny_npz

        data = tiny_npz(self.path("clean/images.npz"), num_train=60, num_test=20)
        self.data_flags = ["--dataset=npz", f"--data_dir={data}"]  # images of the experiment
        self.tarball = targz({"t/a": b"member a\n", "t/b": b"member b\n"})
        self.url, self.md5 = self.serve("good.tar.gz", self.tarball)

    def run_tool(self, tool: str, *args: str) -> None:
        done = subprocess.run(
            [
                sys.executable,
                str(Path(self.env["PYTHONPATH"].split(os.pathsep)[0]) / "tools" / f"{tool}.py"),
                *args,
            ],
            capture_output=True,
            text=True,
            env=self.env,
            timeout=300,
        )
        if done.returncode != 0:
            raise RuntimeError(f"the clean input failed: {tool} {args}: {done.stderr}")

    def serve(self, name: str, data: bytes) -> tuple[str, str]:
        return self.server.put("/" + name, data), hashlib.md5(data).hexdigest()

    def path(self, relative: str) -> Path:
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def folder(self, relative: str) -> Path:
        path = self.root / relative
        path.mkdir(parents=True, exist_ok=True)
        return path

    def npz(self, relative: str, **arrays) -> Path:
        path = self.path(relative)
        np.savez(path, **arrays)
        return path

    def copy(self, name: str) -> Path:
        """A copy of the clean experiment at `<root>/<name>`, to spoil."""
        target = self.root / name
        shutil.copytree(self.experiment, target)
        return target

    def same_scores(self, output: Path) -> Callable[[], str | None]:
        """A check: `output` holds the clean experiment's C-scores and memorization."""

        def check() -> str | None:
            clean, got = np.load(self.scores), np.load(output)
            for key in ("cscore", "memorization"):
                if not np.array_equal(clean[key], got[key], equal_nan=True):
                    return f"exit 0 but `{key}` differs from the clean experiment's"
            return None

        return check


def targz(members: dict[str, bytes], pax: dict[str, dict] | None = None) -> bytes:
    """A .tar.gz of regular files; `pax` adds PAX headers per member name."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", format=tarfile.PAX_FORMAT) as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 1_600_000_000
            info.pax_headers = (pax or {}).get(name, {})
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def npy_bytes(dtype: str, shape: tuple, data: bytes = b"") -> bytes:
    """An .npy member whose header declares `shape` of `dtype`, followed by `data` only."""
    out = io.BytesIO()
    npy_format.write_array_header_1_0(out, {"descr": dtype, "fortran_order": False, "shape": shape})
    return out.getvalue() + data


def npy(array: np.ndarray) -> bytes:
    out = io.BytesIO()
    np.save(out, array)
    return out.getvalue()


def replace_member(npz: Path, member: str, data: bytes) -> None:
    """Rewrites `npz` with `member` replaced by `data`."""
    with zipfile.ZipFile(npz) as old:
        others = {name: old.read(name) for name in old.namelist() if name != member}
    with zipfile.ZipFile(npz, "w") as new:
        for name, payload in others.items():
            new.writestr(name, payload)
        new.writestr(member, data)


def bomb_member(npz: Path, member: str, inflated: int) -> None:
    """Rewrites `npz` with `member` a deflated header declaring `inflated` bytes of int64
    and those zero bytes: a small file that inflates to a huge array."""
    with zipfile.ZipFile(npz) as old:
        others = {name: old.read(name) for name in old.namelist() if name != member}
    with zipfile.ZipFile(npz, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as new:
        for name, payload in others.items():
            new.writestr(name, payload)
        with new.open(member, "w", force_zip64=True) as out:
            out.write(npy_bytes("<i8", (inflated // 8,)))
            chunk = bytes(1 << 20)
            for _ in range(inflated >> 20):
                out.write(chunk)


def scores_attempt(base: Base, experiment: Path, output: Path, *extra: str, **kw) -> Attempt:
    args = ["--noprogress", f"--experiment_dir={experiment}", f"--output={output}", *extra]
    return Attempt(tool="compute_scores", args=args, **kw)


def fetch_attempt(base: Base, out: Path, *extra: str, url=None, md5=None, **kw) -> Attempt:
    args = [
        f"--url={url or base.url}",
        f"--md5={md5 or base.md5}",
        f"--output_dir={out}",
        "--retries=1",
        *extra,
    ]
    return Attempt(tool="download", args=args, timeout=kw.pop("timeout", 30), **kw)


# ---------------------------------------------------------------------------------- classes


def small_on_disk(folder: Path, limit: int = 16 << 20) -> Callable[[], str | None]:
    def after() -> str | None:
        used = sum(p.lstat().st_blocks * 512 for p in folder.rglob("*"))
        return f"{used >> 20} MiB on disk in {folder.name}/" if used > limit else None

    return after


def holds_bytes(path: Path, data: bytes) -> Callable[[], str | None]:
    def check() -> str | None:
        if not path.is_file() or path.read_bytes() != data:
            return f"exit 0 but {path.name} does not hold its member's bytes"
        return None

    return check


def no_leftovers(folder: Path, allowed: set[str]) -> Callable[[], str | None]:
    def after() -> str | None:
        extra = sorted(
            str(p.relative_to(folder))
            for p in folder.rglob("*")
            if p.is_file() and p.name not in allowed
        )
        return f"left behind {extra}" if extra else None

    return after
