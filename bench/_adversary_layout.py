"""Adversarial cases on where files are: links to a victim at every lock, `.part` and output;
outputs that are inputs; one ratio or run under two names, runs in the wrong ratio, runs that
vanish. One function per class, `cases_<class>(base, quick)`.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from bench._adversary_base import (
    EITHER,
    SPEC,
    Attempt,
    Base,
    fetch_attempt,
    scores_attempt,
)


def cases_links(base: Base, quick: bool) -> list[Attempt]:
    """Locks, `.part` files and outputs that are links to a victim (or to nothing)."""
    attempts = []
    for case, name in (("lock link", ".good.tar.gz.lock"), ("part link", "good.tar.gz.part")):
        out = base.folder(f"links/{case.replace(' ', '_')}")
        os.symlink(base.victim, out / name)
        attempts.append(
            fetch_attempt(base, out, klass="links", case=f"{case} to a victim", keep=[base.victim])
        )
        out = base.folder(f"links/{case.replace(' ', '_')}_dangling")
        absent = base.root / "links" / f"absent_{name}"
        os.symlink(absent, out / name)
        attempts.append(
            fetch_attempt(base, out, klass="links", case=f"dangling {case}", keep=[absent])
        )
    out = base.folder("links/archive")
    os.symlink(base.victim, out / "good.tar.gz")
    attempts.append(
        fetch_attempt(
            base, out, klass="links", case="archive link", expect=EITHER, keep=[base.victim]
        )
    )
    out = base.folder("links/member")
    (out / "t").mkdir()
    os.symlink(base.victim, out / "t" / "a")
    attempts.append(
        fetch_attempt(
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
        scores_attempt(
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
        scores_attempt(
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
    for tool, name, args, quick_too in (
        ("table", "t.csv", [f"--scores_file={base.scores}"], True),
        ("plan_runs", "plan.json", [f"--experiment_dir={base.experiment}", "--repeats=2"], False),
    ):
        out = base.path(f"links/{tool}/{name}")
        os.symlink(base.victim, out)
        attempts.append(
            Attempt(
                klass="links",
                case=f"{tool} output link",
                tool=tool,
                args=[*args, f"--output={out}"],
                expect=EITHER,
                keep=[base.victim],
                quick=quick_too,
            )
        )
    return attempts


def cases_overwrite(base: Base, quick: bool) -> list[Attempt]:
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
            scores_attempt(
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
    file_exists = r"File exists"  # a file in the way is not "exists"
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
            forbid=file_exists,
        ),
        fetch_attempt(
            base,
            blocker,
            klass="overwrite",
            case="output folder is a file",
            keep=[blocker],
            forbid=file_exists,
        ),
    ]
    for tool, args in (
        ("plot_scores", [f"--scores_file={base.scores}", *base.data_flags]),
        ("analyze_scores", [f"--scores_file={base.cscores}"]),
    ):
        attempts.append(
            Attempt(
                klass="overwrite",
                case="output folder is a file",
                tool=tool,
                args=[*args, f"--output_dir={blocker}"],
                keep=[blocker],
                forbid=file_exists,
                quick=False,
            )
        )
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


def cases_aliases(base: Base, quick: bool) -> list[Attempt]:
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
                scores_attempt(
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
        scores_attempt(
            base,
            tie,
            base.root / "aliases/tie.npz",
            "--skip_bad_runs",
            klass="aliases",
            case="2-2 tie on N, --skip_bad_runs",
        )
    )
    return attempts
