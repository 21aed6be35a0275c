"""Membership inference on a real experiment: online LiRA, offline LiRA and the loss threshold
against target runs, the other runs of the ratio as shadows (`heldout.scores.privacy`).

Prints, per configuration (the margin with per-example or global variance, 0/1
correctness; each target's shadows every other run, or for `*_non_targets` every run that
is no target), AUC and TPR at 0.1 % and 1 % FPR with bootstrap intervals over the targets,
whether the paper's order (online > offline > threshold at low FPR) holds, and Spearman's
rho of the per-example risk with memorization and the C-score of the same runs. Writes the
ROC figure and the scores file of each configuration into --output_dir (never into the
experiment).

Run: .venv/bin/python bench/privacy_attack.py --experiment_dir=/work/exp \
         --output_dir=/tmp/privacy [--targets=16] [--configurations=margin,margin_fixed]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench._shared import cpu_features, load_average  # noqa: E402
from heldout._core.atomic import write_npz_atomic  # noqa: E402
from heldout._core.provenance import provenance_for  # noqa: E402
from heldout.plots.privacy import plot_privacy_roc  # noqa: E402
from heldout.release.layout import open_experiment  # noqa: E402
from heldout.scores.privacy.audit import ATTACKS, compute_privacy  # noqa: E402
from heldout.scores.privacy.reading import iter_run_statistics, select_targets  # noqa: E402
from heldout.scores.privacy.report import privacy_arrays, privacy_table  # noqa: E402

CONFIGURATIONS = {  # name -> (statistic, fix_variance, shadows)
    "margin": ("margin", False, "others"),
    "margin_fixed": ("margin", True, "others"),
    "correctness": ("correctness", False, "others"),
    "margin_non_targets": ("margin", False, "non_targets"),
    "correctness_non_targets": ("correctness", False, "non_targets"),
}


def _cell(evaluation, metric: str, percent: bool) -> str:
    scale, unit = (100.0, " %") if percent else (1.0, "")
    value = scale * evaluation.values[metric]
    low, high = scale * evaluation.ci_low[metric], scale * evaluation.ci_high[metric]
    digits = 2 if percent else 3
    return f"{value:.{digits}f}{unit} [{low:.{digits}f}, {high:.{digits}f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiment_dir", required=True)
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--subset_ratio", type=float, default=0.5)
    parser.add_argument("--targets", default="16")
    parser.add_argument("--configurations", default=",".join(CONFIGURATIONS))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(cpu_features())
    print(load_average())
    experiment = open_experiment(args.experiment_dir)
    runs = experiment.runs_at(args.subset_ratio)
    targets = select_targets([run.run_id for run in runs], args.targets, args.seed)
    output_dir = Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for name in args.configurations.split(","):
        statistic, fixed, shadows = CONFIGURATIONS[name]
        start = time.perf_counter()
        stream = iter_run_statistics(experiment, runs, statistic)
        result = compute_privacy(
            stream,
            targets,
            statistic=statistic,
            fix_variance=fixed,
            seed=args.seed,
            shadows=shadows,
        )
        seconds = time.perf_counter() - start
        print(f"\n== {name}: {seconds:.0f} s ==")
        print(privacy_table(result))
        provenance = provenance_for(
            experiment={"path": str(experiment.path), "name": experiment.name},
            subset_ratio=args.subset_ratio,
            statistic=statistic,
            fix_variance=fixed,
            shadows=shadows,
            targets=list(targets),
            seed=args.seed,
        )
        write_npz_atomic(output_dir / f"privacy_{name}.npz", privacy_arrays(result, provenance))
        print(f"wrote {plot_privacy_roc(result, output_dir / f'roc_{name}.png')}")
        low_fpr = [result.evaluations[a].values["tpr_at_0.1%_fpr"] for a in ATTACKS]
        order = "holds" if low_fpr[0] > low_fpr[1] > low_fpr[2] else "does NOT hold"
        print(f"online > offline > threshold at 0.1 % FPR: {order} ({low_fpr})")
        rows.append((name, result))
    first = rows[0][1]
    e = first.evaluations[ATTACKS[0]]
    print(
        f"\n{len(targets)} targets of {len(runs)} runs (ratio {args.subset_ratio}); "
        f"{e.num_members} member / {e.num_nonmembers} non-member pairs; 95 % intervals: "
        "bootstrap over targets"
    )
    print("| statistic | attack | AUC | TPR @ 0.1 % FPR | TPR @ 1 % FPR |")
    print("| --- | --- | --- | --- | --- |")
    for name, result in rows:
        for attack in ATTACKS:
            ev = result.evaluations[attack]
            print(
                f"| {name} | {attack} | {_cell(ev, 'auc', False)} | "
                f"{_cell(ev, 'tpr_at_0.1%_fpr', True)} | {_cell(ev, 'tpr_at_1%_fpr', True)} |"
            )
    print("\n| statistic | rho(privacy_risk, memorization) | rho(privacy_risk, C-score) |")
    print("| --- | --- | --- |")
    for name, result in rows:
        cells = [
            f"{c.rho:+.3f} [{c.ci_low:+.3f}, {c.ci_high:+.3f}] (n={c.count})"
            for c in (result.correlations["memorization"], result.correlations["cscore"])
        ]
        print(f"| {name} | {cells[0]} | {cells[1]} |")
    print(load_average())


if __name__ == "__main__":
    main()
