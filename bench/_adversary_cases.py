"""The hostile inputs of bench/adversary.py and the attempts on them, one builder per class.

Everything is written under the suite's temporary folder; victims are files that a link
points at, whose bytes must not change. Imported as `bench._adversary_cases` once the script
has put the repository and tests/ on sys.path.
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
SPEC = dict(num_train=60, num_test=20, subset_ratios=(0.3, 0.7), runs_per_ratio=4)
SCORES = "--scores=cscore,memorization,influence"


def build(root: Path, server, env: dict, *, quick: bool, only: set[str]) -> list[Attempt]:
    """Every attempt of the chosen classes (all when `only` is empty), inputs written."""
    base = Base(root, server, env)
    attempts = []
    for klass in CLASSES:
        if only and klass not in only:
            continue
        if quick and klass in SLOW:
            continue
        for attempt in globals()[f"_{klass}"](base, quick):
            if attempt.quick or not quick:
                attempts.append(attempt)
    return attempts


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

    def same_scores(self, output: Path) -> callable:
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


def replace_member(npz: Path, member: str, data: bytes) -> None:
    """Rewrites `npz` with `member` replaced by `data`."""
    with zipfile.ZipFile(npz) as old:
        others = {name: old.read(name) for name in old.namelist() if name != member}
    with zipfile.ZipFile(npz, "w") as new:
        for name, payload in others.items():
            new.writestr(name, payload)
        new.writestr(member, data)


def _bomb_member(npz: Path, member: str, inflated: int) -> None:
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


def _scores(base: Base, experiment: Path, output: Path, *extra: str, **kw) -> Attempt:
    args = ["--noprogress", f"--experiment_dir={experiment}", f"--output={output}", *extra]
    return Attempt(tool="compute_scores", args=args, **kw)


def _fetch(base: Base, out: Path, *extra: str, url=None, md5=None, **kw) -> Attempt:
    args = [
        f"--url={url or base.url}",
        f"--md5={md5 or base.md5}",
        f"--output_dir={out}",
        "--retries=1",
        *extra,
    ]
    return Attempt(tool="download", args=args, timeout=kw.pop("timeout", 30), **kw)


# ---------------------------------------------------------------------------------- classes


def _links(base: Base, quick: bool) -> list[Attempt]:
    """Locks, `.part` files and outputs that are links to a victim (or to nothing)."""
    attempts = []
    for case, name in (("lock link", ".good.tar.gz.lock"), ("part link", "good.tar.gz.part")):
        out = base.folder(f"links/{case.replace(' ', '_')}")
        os.symlink(base.victim, out / name)
        attempts.append(
            _fetch(base, out, klass="links", case=f"{case} to a victim", keep=[base.victim])
        )
        out = base.folder(f"links/{case.replace(' ', '_')}_dangling")
        absent = base.root / "links" / f"absent_{name}"
        os.symlink(absent, out / name)
        attempts.append(_fetch(base, out, klass="links", case=f"dangling {case}", keep=[absent]))
    out = base.folder("links/archive")
    os.symlink(base.victim, out / "good.tar.gz")
    attempts.append(
        _fetch(base, out, klass="links", case="archive link", expect=EITHER, keep=[base.victim])
    )
    out = base.folder("links/member")
    (out / "t").mkdir()
    os.symlink(base.victim, out / "t" / "a")
    attempts.append(
        _fetch(
            base,
            out,
            "--extract",
            "--overwrite",
            klass="links",
            case="member link",
            expect=EITHER,
            keep=[base.victim],
        )
    )
    link = base.path("links/scores/s.npz")
    os.symlink(base.victim, link)
    attempts.append(
        _scores(
            base,
            base.experiment,
            link,
            klass="links",
            case="output link",
            expect=EITHER,
            keep=[base.victim],
        )
    )
    dangling, absent = base.path("links/scores/d.npz"), base.root / "links" / "absent_output"
    os.symlink(absent, dangling)
    attempts.append(
        _scores(
            base,
            base.experiment,
            dangling,
            klass="links",
            case="dangling output link",
            expect=EITHER,
            keep=[absent],
        )
    )
    out = base.path("links/cscores/c.npz")
    os.symlink(base.victim, out)
    attempts.append(
        Attempt(
            klass="links",
            case="export output link",
            tool="published_scores",
            args=[
                "--export=cscores",
                f"--labels={base.labels}",
                f"--scores_file={base.scores}",
                f"--output={out}",
            ],
            expect=EITHER,
            keep=[base.victim],
        )
    )
    return attempts


def _overwrite(base: Base, quick: bool) -> list[Attempt]:
    """Outputs that are inputs (the same path, a hard link, inside a run folder)."""
    same = r"input|same|itself|overwrit|replace|inside|run folder"
    attempts = []
    for name, case in (
        ("aux", "output is a run's aux"),
        ("hard", "output hard-links an input"),
        ("inside", "output inside a run folder"),
    ):
        experiment = base.copy(f"ow/{name}")  # each its own: a lost input spoils no other case
        output = {
            "aux": experiment / "0.7" / "1" / "aux_arrays.npz",
            "hard": base.root / "ow" / "hard.npz",
            "inside": experiment / "0.7" / "1" / "scores.npz",
        }[name]
        if name == "hard":
            os.link(experiment / "0.7" / "2" / "aux_arrays.npz", output)
        inputs = sorted(experiment.rglob("aux_arrays.npz"))
        attempts.append(
            _scores(
                base, experiment, output, klass="overwrite", case=case, keep=inputs, needle=same
            )
        )
    scores = base.path("ow/scores.npz")
    shutil.copy(base.scores, scores)
    attempts.append(
        Attempt(
            klass="overwrite",
            case="export over its scores file",
            tool="published_scores",
            args=[
                "--export=cscores",
                f"--labels={base.labels}",
                f"--scores_file={scores}",
                f"--output={scores}",
            ],
            keep=[scores],
            needle=same,
        )
    )
    cscores = base.path("ow/cscores.npz")
    shutil.copy(base.cscores, cscores)
    attempts.append(
        Attempt(
            klass="overwrite",
            case="map-order over its input",
            tool="map_order",
            args=[
                f"--scores_file={cscores}",
                f"--output={cscores}",
                "--dataset=cifar10",
                f"--data_dir={base.root}/none",
            ],
            keep=[cscores],
            needle=same,
        )
    )
    blocker = base.path("ow/a_file")
    blocker.write_bytes(b"not a folder\n")
    not_errno = r"\[Errno"
    attempts += [
        Attempt(
            klass="overwrite",
            case="output folder is a file",
            tool="compare_scores",
            args=[
                f"--scores_file={base.scores}",
                f"--reference={base.cscores}",
                f"--output_dir={blocker}",
            ],
            keep=[blocker],
            forbid=not_errno,
        ),
        _fetch(
            base,
            blocker,
            klass="overwrite",
            case="output folder is a file",
            keep=[blocker],
            forbid=not_errno,
        ),
    ]
    odd = os.fsencode(base.root / "ow") + b"/\xff\xfe-scores.npz"
    attempts.append(
        Attempt(
            klass="overwrite",
            case="non-UTF-8 output name",
            tool="compute_scores",
            args=["--noprogress", f"--experiment_dir={base.experiment}", b"--output=" + odd],
            expect=EITHER,
        )
    )
    attempts.append(
        Attempt(
            klass="overwrite",
            case="non-UTF-8 export name",
            tool="published_scores",
            args=[
                "--export=cscores",
                f"--labels={base.labels}",
                f"--scores_file={base.scores}",
                b"--output=" + odd[:-10] + b"c.npz",
            ],
            expect=EITHER,
        )
    )
    return attempts


def _aliases(base: Base, quick: bool) -> list[Attempt]:
    """One ratio or run reached under two names, runs in the wrong ratio, runs that vanish."""
    attempts = []

    def spoiled(
        name: str, spoil, case: str, expect=frozenset({"refused"}), tools=("scores",), **kw
    ):
        experiment = base.copy(f"aliases/{name}")
        spoil(experiment)
        output = base.root / "aliases" / f"{name}.npz"
        if "scores" in tools:
            check = base.same_scores(output) if expect != frozenset({"refused"}) else None
            attempts.append(
                _scores(
                    base,
                    experiment,
                    output,
                    klass="aliases",
                    case=case,
                    expect=expect,
                    check=check,
                    **kw,
                )
            )
        if "plan" in tools:
            args = [f"--experiment_dir={experiment}", "--repeats=2"]
            attempts.append(
                Attempt(
                    klass="aliases",
                    case=case,
                    tool="plan_runs",
                    args=args,
                    expect=expect,
                    quick=False,
                    **kw,
                )
            )

    def run_folder(e: Path, ratio="0.7", run="1") -> Path:
        return e / ratio / run

    spoiled(
        "ratio_070",
        lambda e: shutil.copytree(e / "0.7", e / "0.70"),
        "ratio 0.7 and 0.70",
        tools=("scores", "plan"),
    )
    spoiled(
        "run_01",
        lambda e: shutil.copytree(run_folder(e), e / "0.7" / "01"),
        "run 1 and 01",
        tools=("scores", "plan"),
    )
    spoiled(
        "run_link", lambda e: os.symlink("1", e / "0.7" / "9"), "a run linked twice", expect=EITHER
    )
    spoiled(
        "ratio_link",
        lambda e: os.symlink("0.7", e / "0.75"),
        "a ratio linked as 0.75",
        expect=EITHER,
    )
    spoiled(
        "wrong_ratio",
        lambda e: shutil.copytree(e / "0.3" / "0", e / "0.7" / "9"),
        "a 0.3 run in 0.7",
    )

    def aux_folder(e: Path) -> None:
        (run_folder(e) / "aux_arrays.npz").unlink()
        (run_folder(e) / "aux_arrays.npz").mkdir()

    def aux_unreadable(e: Path) -> None:
        aux = run_folder(e) / "aux_arrays.npz"
        aux.unlink()
        os.symlink("aux_arrays.npz", aux)  # unreadable even for root: a link to itself

    spoiled("aux_folder", aux_folder, "aux_arrays.npz is a folder", names="aux_arrays.npz")
    spoiled("aux_loop", aux_unreadable, "aux_arrays.npz unreadable", names="aux_arrays.npz")
    if os.geteuid() != 0:
        spoiled(
            "aux_mode",
            lambda e: os.chmod(run_folder(e) / "aux_arrays.npz", 0),
            "aux mode 000",
            names="aux_arrays.npz",
        )
    spoiled("aux_folder_skip", aux_folder, "aux folder, --skip_bad_runs", expect=EITHER)
    attempts[-1].args.append("--skip_bad_runs")
    attempts[-1].check = None  # one run fewer: the scores may differ

    from heldout.release.aux_arrays import save_aux_arrays
    from heldout.testing.synthetic import SyntheticExperiment, SyntheticSpec

    tie = base.folder("aliases/tie")
    for num_train, runs in ((60, ("0", "1")), (80, ("2", "3"))):
        spec = SyntheticSpec(**{**SPEC, "num_train": num_train, "subset_ratios": (0.7,)})
        drawn = SyntheticExperiment(spec)
        for run in runs:
            folder = tie / "0.7" / run
            folder.mkdir(parents=True)
            save_aux_arrays(folder / "aux_arrays.npz", drawn.draw_run(0.7, int(run)))
    attempts.append(
        _scores(
            base,
            tie,
            base.root / "aliases/tie.npz",
            "--skip_bad_runs",
            klass="aliases",
            case="2-2 tie on N, --skip_bad_runs",
        )
    )
    return attempts


def _bombs(base: Base, quick: bool) -> list[Attempt]:
    """Headers that declare huge arrays, deflate bombs, junk zips, huge or deep JSON."""
    attempts = []

    def spoiled(name: str, spoil, case: str, **kw):
        experiment = base.copy(f"bombs/{name}")
        spoil(experiment / "0.7" / "1" / "aux_arrays.npz")
        attempts.append(
            _scores(
                base,
                experiment,
                base.root / "bombs" / f"{name}.npz",
                klass="bombs",
                case=case,
                **kw,
            )
        )
        return experiment

    spoiled(
        "header",
        lambda a: replace_member(a, "index_train.npy", npy_bytes("<i8", (10**12,))),
        "npz header of 10^12",
    )
    spoiled(
        "deflate",
        lambda a: _bomb_member(a, "index_train.npy", (1600 if not quick else 400) << 20),
        "deflate bomb in aux",
        max_rss_mb=250,
    )
    pk = b"PK\x03\x04" + np.random.default_rng(0).bytes(4000)
    spoiled("pk", lambda a: a.write_bytes(pk), "random bytes after PK", forbid="pickl")
    big = np.array([0, 2**64 - 1], np.uint64)
    spoiled(
        "uint64",
        lambda a: replace_member(
            a, "index_test.npy", _npy(np.concatenate([np.arange(18, dtype=np.uint64), big]))
        ),
        "index 2**64-1",
        forbid=r"-1\.\.",
    )
    for name, text, case in (
        (
            "digits",
            '{"name": "e", "num_train": 1' + "0" * 5000 + "}",
            "experiment.json 5000 digits",
        ),
        (
            "nesting",
            '{"name": "e", "extra": ' + "[" * 100000 + "]" * 100000 + "}",
            "experiment.json 10^5 deep",
        ),
    ):
        experiment = base.copy(f"bombs/{name}")
        (experiment / "experiment.json").write_text(text)
        output = base.root / "bombs" / f"{name}.npz"
        attempts.append(
            _scores(base, experiment, output, klass="bombs", case=case, names="experiment.json")
        )
    header = base.npz(
        "bombs/published_header.npz", labels=np.zeros(60, np.int64), scores=np.zeros(60)
    )
    replace_member(header, "scores.npy", npy_bytes("<f8", (10**12,)))
    junk = base.path("bombs/pk-cscores.npz")
    junk.write_bytes(pk)
    pairs = base.npz(
        "bombs/pairs_uint64.npz",
        tr_idx=big,
        tt_idx=np.array([0, 1]),
        infl=[0.2, 0.3],
        mem=[0.5, 0.6],
    )
    for path, case, forbid in (
        (header, "published header of 10^12", None),
        (junk, "published: random bytes after PK", "pickl"),
        (pairs, "pairs index 2**64-1", r"-1\.\."),
    ):
        attempts.append(
            Attempt(
                klass="bombs",
                case=case,
                tool="published_scores",
                args=[f"--inspect={path}"],
                forbid=forbid,
            )
        )
    attempts.append(
        Attempt(
            klass="bombs",
            case="reference header of 10^12",
            tool="compare_scores",
            args=[f"--scores_file={base.scores}", f"--reference={header}"],
        )
    )
    return attempts


def _npy(array: np.ndarray) -> bytes:
    out = io.BytesIO()
    np.save(out, array)
    return out.getvalue()


def _values(base: Base, quick: bool) -> list[Attempt]:
    """Non-finite and out-of-range values in files and flags; pairs a top-k file misses."""
    labels = np.zeros(60, np.int64)
    deep = "[" * 100000 + "]" * 100000
    files = {
        "C-scores with inf": dict(scores=np.r_[np.inf, np.linspace(0, 1, 59)], labels=labels),
        "C-scores of 1.5": dict(scores=np.r_[1.5, np.linspace(0, 1, 59)], labels=labels),
        "C-scores with NaN": dict(scores=np.r_[np.nan, np.linspace(0, 1, 59)], labels=labels),
        "deep provenance": dict(
            scores=np.linspace(0, 1, 60), labels=labels, provenance=np.asarray(deep)
        ),
        "pairs with NaN influence": dict(
            tr_idx=[0, 2], tt_idx=[1, 0], infl=[np.nan, 0.3], mem=[0.5, 0.6]
        ),
    }
    attempts = []
    for number, (case, arrays) in enumerate(files.items()):
        path = base.npz(f"values/{number}.npz", **arrays)
        attempts.append(
            Attempt(klass="values", case=case, tool="published_scores", args=[f"--inspect={path}"])
        )
        flag = "--pairs" if "pairs" in case else "--reference"
        if "provenance" not in case:
            args = [f"--scores_file={base.scores}", f"{flag}={path}"]
            quick_too = case in ("C-scores with inf", "pairs with NaN influence")
            attempts.append(
                Attempt(
                    klass="values", case=case, tool="compare_scores", args=args, quick=quick_too
                )
            )
    no_mem = base.npz("values/pairs_without_mem.npz", tr_idx=[0, 2], tt_idx=[1, 0], infl=[0.2, 0.3])
    attempts.append(
        Attempt(
            klass="values",
            case="pairs without mem",
            tool="published_scores",
            args=[f"--inspect={no_mem}"],
            forbid=r"no .?scores",
        )
    )
    for case, scores in (("all-NaN scores", np.full(60, np.nan)), ("empty scores", np.zeros(0))):
        path = base.npz(
            f"values/{case.split()[0]}.npz", scores=scores, labels=labels[: scores.size]
        )
        attempts.append(
            Attempt(
                klass="values",
                case=case,
                tool="published_scores",
                args=[f"--inspect={path}"],
                expect=EITHER,
            )
        )
        args = [f"--scores_file={base.scores}", f"--reference={path}"]
        attempts.append(
            Attempt(
                klass="values",
                case=case,
                tool="compare_scores",
                args=args,
                quick=case.startswith("all"),
            )
        )
    for flag in ("--min_memorization=nan", "--min_influence=nan"):
        name = flag[2:].split("=")[0]
        args = [f"--scores_file={base.scores}", f"--pairs={base.pairs}", flag]
        attempts.append(
            Attempt(klass="values", case=flag, tool="compare_scores", args=args, needle=name)
        )
        args = [
            "--export=pairs",
            f"--scores_file={base.scores}",
            flag,
            f"--output={base.root}/values/p.npz",
        ]
        attempts.append(
            Attempt(klass="values", case=flag, tool="published_scores", args=args, needle=name)
        )
    output = base.root / "values" / "s.npz"
    attempts.append(
        _scores(
            base,
            base.experiment,
            output,
            "--scores=influence_pairs",
            "--min_memorization=nan",
            klass="values",
            case="--min_memorization=nan",
            needle="min_memorization",
        )
    )
    topk = np.load(base.topk)
    few = base.npz(
        "values/topk_5_tests.npz",
        **{k: (topk[k][:5] if "topk" in k else topk[k]) for k in topk.files},
    )
    uncovered = base.npz(
        "values/pairs_tests_10_11.npz",
        tr_idx=[0, 1],
        tt_idx=[10, 11],
        infl=[0.5, 0.6],
        mem=[0.5, 0.6],
    )
    attempts.append(
        Attempt(
            klass="values",
            case="pairs a top-k file misses",
            tool="compare_scores",
            args=[f"--scores_file={few}", f"--pairs={uncovered}"],
        )
    )
    return attempts


def _download(base: Base, quick: bool) -> list[Attempt]:
    attempts = []
    realsize = 300 << 20
    sparse = targz(
        {"t/sparse": bytes(512)},
        pax={"t/sparse": {"GNU.sparse.map": "0,512", "GNU.sparse.size": str(realsize)}},
    )
    url, md5 = base.serve("sparse.tar.gz", sparse)
    out = base.folder("download/sparse")
    attempts.append(
        _fetch(
            base,
            out,
            "--extract",
            url=url,
            md5=md5,
            klass="download",
            case="sparse member of 300 MiB",
            needle="sparse",
            after=_small(out),
        )
    )
    first, second = b"the temporary-looking member\n", b"the real member a\n"
    colliding = targz({"t/.a.heldout-tmp": first, "t/a": second})
    url, md5 = base.serve("colliding.tar.gz", colliding)
    for repeat in range(2 if quick else 6):
        out = base.folder(f"download/colliding_{repeat}")
        attempts.append(
            _fetch(
                base,
                out,
                "--extract",
                url=url,
                md5=md5,
                klass="download",
                case="member named like a temporary",
                expect=EITHER,
                check=_holds(out / "t" / "a", second),
                quick=repeat < 2,
            )
        )
    fifo = base.path("download/fifo")
    os.mkfifo(fifo)
    for case, target in (
        ("--verify=/dev/zero", "/dev/zero"),
        ("--verify=a FIFO", fifo),
        ("--verify=a folder", base.root),
    ):
        attempts.append(
            Attempt(
                klass="download",
                case=case,
                tool="download",
                args=[f"--verify={target}", "--md5=" + "0" * 32],
                timeout=8,
            )
        )
    return attempts


def _small(folder: Path, limit: int = 16 << 20) -> callable:
    def after() -> str | None:
        used = sum(p.lstat().st_blocks * 512 for p in folder.rglob("*"))
        return f"{used >> 20} MiB on disk in {folder.name}/" if used > limit else None

    return after


def _holds(path: Path, data: bytes) -> callable:
    def check() -> str | None:
        if not path.is_file() or path.read_bytes() != data:
            return f"exit 0 but {path.name} does not hold its member's bytes"
        return None

    return check


def _leftovers(folder: Path, allowed: set[str]) -> callable:
    def after() -> str | None:
        extra = sorted(
            str(p.relative_to(folder))
            for p in folder.rglob("*")
            if p.is_file() and p.name not in allowed
        )
        return f"left behind {extra}" if extra else None

    return after


def _disk(base: Base, quick: bool) -> list[Attempt]:
    """A full disk: RLIMIT_FSIZE in the child, so every write past the limit fails."""
    out = base.folder("disk/scores")
    attempts = [
        _scores(
            base,
            base.experiment,
            out / "s.npz",
            SCORES,
            klass="disk",
            case="full disk writing scores",
            fsize=4096,
            names="s.npz",
            after=_leftovers(out, set()),
        )
    ]
    zeros = targz({"t/zeros.bin": bytes(64 << 20)})
    url, md5 = base.serve("zeros.tar.gz", zeros)
    out = base.folder("disk/extract")
    attempts.append(
        _fetch(
            base,
            out,
            "--extract",
            url=url,
            md5=md5,
            klass="disk",
            case="full disk extracting",
            fsize=8 << 20,
            names="zeros.bin",
            after=_leftovers(out, {".zeros.tar.gz.lock"}),
        )
    )
    return attempts


def _training(base: Base, quick: bool) -> list[Attempt]:
    """Non-finite rates, a lock link, a file as output folder, a full disk (TensorFlow: slow)."""
    sys.path.insert(0, str(REPO / "tests"))
    from training_slice import tiny_npz

    data = tiny_npz(base.path("training/tiny.npz"))
    common = [
        "--dataset=npz",
        f"--data_dir={data}",
        "--arch=mlp",
        "--subset_ratios=0.5",
        "--runs_per_ratio=1",
        "--epochs=1",
        "--batch_size=16",
        "--val_examples=8",
    ]

    def train(name: str, *extra: str, **kw) -> Attempt:
        out = base.root / "training" / name
        return Attempt(
            klass="training",
            tool="train_heldout",
            args=[f"--output_dir={out}", *common, *extra],
            timeout=180,
            **kw,
        )

    truncated = base.root / "training" / "truncated"
    base.run_tool("train_heldout", f"--output_dir={truncated}", *common)
    (checkpoint,) = truncated.glob("0.5/0/checkpoints/ckpt-*.data-*")
    os.truncate(checkpoint, 100)

    def retrained() -> str | None:
        kept = [
            p for p in truncated.glob("0.5/0/checkpoints/ckpt-*.data-*") if p.stat().st_size == 100
        ]
        return "exit 0 with the truncated checkpoint kept as a finished run" if kept else None

    lock = base.folder("training/lock")
    os.symlink(base.victim, lock / ".training.lock")
    blocker = base.path("training/a_file")
    blocker.write_bytes(b"not a folder\n")
    labels = np.load(data)["y_train"]  # the dataset's: only the NaN values are wrong
    reference = base.npz("training/all_nan.npz", scores=np.full(labels.size, np.nan), labels=labels)
    proxies = Attempt(
        klass="training",
        case="proxies, all-NaN --reference",
        tool="compute_proxies",
        args=[
            *common[:3],
            "--epochs=1",
            "--batch_size=16",
            f"--reference={reference}",
            f"--output={base.root}/training/p.npz",
        ],
        needle=r"reference|nan|finite|defined",
        timeout=180,
    )
    return [
        train("nan", "--learning_rate=nan", case="--learning_rate=nan", needle="learning_rate"),
        train("inf", "--learning_rate=inf", case="--learning_rate=inf", needle="learning_rate"),
        train("lock", case="lock link to a victim", keep=[base.victim]),
        train(
            "truncated",
            case="a finished run's checkpoint truncated",
            expect=EITHER,
            check=retrained,
        ),
        Attempt(
            klass="training",
            case="output folder is a file",
            tool="train_heldout",
            args=[f"--output_dir={blocker}", *common],
            keep=[blocker],
            forbid=r"\[Errno",
        ),
        train("full", case="full disk while training", fsize=64 << 10),
        proxies,
    ]


def _workers(base: Base, quick: bool) -> list[Attempt]:
    """Commands with background work (numba warm-up, a Dask cluster) that end in an error:
    the process must exit cleanly, repeatedly, with one line."""
    bad = base.copy("workers/exp")
    (bad / "0.7" / "1" / "aux_arrays.npz").write_bytes(b"PK\x03\x04" + bytes(4000))
    output = base.root / "workers" / "s.npz"
    popcount = [
        _scores(
            base,
            bad,
            output,
            SCORES,
            "--backend=popcount",
            klass="workers",
            case="popcount, bad run",
        )
        for _ in range(12)  # the crash at exit came in about 7 % of such runs
    ]
    dask = _scores(
        base,
        bad,
        output,
        "--scheduler=local",
        "--dask_workers=1",
        klass="workers",
        case="Dask local, bad run",
        timeout=120,
    )
    return [*popcount, dask]
