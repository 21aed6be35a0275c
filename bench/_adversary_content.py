"""Adversarial cases on what files and streams hold: bombs (huge headers, deflate, junk zips,
huge or deep JSON), non-finite values and flags, hostile tarballs, a full disk. One function
per class, `cases_<class>(base, quick)`.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from bench._adversary_base import (
    EITHER,
    SCORES,
    Attempt,
    Base,
    bomb_member,
    fetch_attempt,
    holds_bytes,
    no_leftovers,
    npy,
    npy_bytes,
    replace_member,
    scores_attempt,
    small_on_disk,
    targz,
)


def cases_bombs(base: Base, quick: bool) -> list[Attempt]:
    """Headers that declare huge arrays, deflate bombs, junk zips, huge or deep JSON."""
    attempts = []

    def spoiled(name: str, spoil, case: str, **kw):
        experiment = base.copy(f"bombs/{name}")
        spoil(experiment / "0.7" / "1" / "aux_arrays.npz")
        attempts.append(
            scores_attempt(
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
        lambda a: bomb_member(a, "index_train.npy", (1600 if not quick else 400) << 20),
        "deflate bomb in aux",
        max_rss_mb=250,
    )
    pk = b"PK\x03\x04" + np.random.default_rng(0).bytes(4000)
    spoiled("pk", lambda a: a.write_bytes(pk), "random bytes after PK", forbid="pickl")
    big = np.array([0, 2**64 - 1], np.uint64)
    spoiled(
        "uint64",
        lambda a: replace_member(
            a, "index_test.npy", npy(np.concatenate([np.arange(18, dtype=np.uint64), big]))
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
            scores_attempt(
                base, experiment, output, klass="bombs", case=case, names="experiment.json"
            )
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


def cases_values(base: Base, quick: bool) -> list[Attempt]:
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
        if case == "C-scores with inf":
            attempts.append(_analyze(base, case, path, frozenset({"refused"})))
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
        if case.startswith("all"):
            attempts.append(_analyze(base, case, path, EITHER))
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
        scores_attempt(
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


def _analyze(base: Base, case: str, path: Path, expect: frozenset) -> Attempt:
    output = base.root / "values" / f"analysis-{path.stem}"
    args = [f"--scores_file={path}", f"--output_dir={output}"]
    return Attempt(
        klass="values", case=case, tool="analyze_scores", args=args, expect=expect, quick=False
    )


def cases_download(base: Base, quick: bool) -> list[Attempt]:
    """Tarballs served on 127.0.0.1 with a sparse member or members named like our
    temporaries; `--verify` of what is not a regular file."""
    attempts = []
    realsize = 300 << 20
    sparse = targz(
        {"t/sparse": bytes(512)},
        pax={"t/sparse": {"GNU.sparse.map": "0,512", "GNU.sparse.size": str(realsize)}},
    )
    url, md5 = base.serve("sparse.tar.gz", sparse)
    out = base.folder("download/sparse")
    attempts.append(
        fetch_attempt(
            base,
            out,
            "--extract",
            url=url,
            md5=md5,
            klass="download",
            case="sparse member of 300 MiB",
            needle="sparse",
            after=small_on_disk(out),
        )
    )
    first, second = b"the temporary-looking member\n", b"the real member a\n"
    colliding = targz({"t/.a.heldout-tmp": first, "t/a": second})
    url, md5 = base.serve("colliding.tar.gz", colliding)
    for repeat in range(2 if quick else 6):
        out = base.folder(f"download/colliding_{repeat}")
        attempts.append(
            fetch_attempt(
                base,
                out,
                "--extract",
                url=url,
                md5=md5,
                klass="download",
                case="member named like a temporary",
                expect=EITHER,
                check=holds_bytes(out / "t" / "a", second),
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


def cases_disk(base: Base, quick: bool) -> list[Attempt]:
    """A full disk: RLIMIT_FSIZE in the child, so every write past the limit fails."""
    out = base.folder("disk/scores")
    attempts = [
        scores_attempt(
            base,
            base.experiment,
            out / "s.npz",
            SCORES,
            klass="disk",
            case="full disk writing scores",
            fsize=4096,
            names="s.npz",
            after=no_leftovers(out, set()),
        )
    ]
    zeros = targz({"t/zeros.bin": bytes(64 << 20)})
    url, md5 = base.serve("zeros.tar.gz", zeros)
    out = base.folder("disk/extract")
    attempts.append(
        fetch_attempt(
            base,
            out,
            "--extract",
            url=url,
            md5=md5,
            klass="disk",
            case="full disk extracting",
            fsize=8 << 20,
            names="zeros.bin",
            after=no_leftovers(out, {".zeros.tar.gz.lock"}),
        )
    )
    return attempts
