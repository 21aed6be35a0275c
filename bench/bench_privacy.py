"""Membership inference at scale: our streamed path against one vectorised numpy pass.

Synthetic runs (default 2 000 runs x 50 000 training examples, ratio 0.5, 16 targets) whose
training-split margin rises by a per-example gap where the run trained on the example.

1. time: the attack scores of every target (LiRA online and offline, the loss threshold)
   by `heldout.scores.privacy.audit.compute_attack_scores`, fed the runs one at a time,
   against one vectorised numpy pass over the same in-memory arrays [runs, n] (float64
   whole-array sums, every target's leave-one-out fits as [targets, n] at once). The sides
   alternate --repeats times, each keeps its best; printed: the ratio (goal <= 1.2x) and the
   max |difference| of the scores.
2. memory: in a child process, the whole `compute_privacy` (scores, evaluation with its
   bootstrap, per-example risk) fed runs drawn one at a time: its peak resident memory
   (VmHWM, the Python process included; goal <= 2 GB at 2 000 x 50 000).

Run: .venv/bin/python bench/bench_privacy.py [--quick] [--num_runs=2000 --num_train=50000]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from scipy.special import log_ndtr

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench._shared import cpu_features, load_average  # noqa: E402
from heldout.scores.privacy.attacks import (  # noqa: E402
    STD_FLOOR,
    gaussian_log_pdf,
    loss_threshold,
)
from heldout.scores.privacy.audit import compute_attack_scores, compute_privacy  # noqa: E402
from heldout.scores.privacy.reading import RunStatistic  # noqa: E402

GB = 1e9


def draw_run(run_id: int, num_train: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """One synthetic run: (mask bool [n], margin float32 [n]), the same for a given id."""
    shared = np.random.default_rng(seed)
    base = shared.normal(1.0, 1.5, num_train)
    gap = shared.exponential(1.0, num_train)
    rng = np.random.default_rng([seed, run_id])
    mask = rng.random(num_train) < 0.5
    margin = base + gap * mask + rng.standard_normal(num_train)
    return mask, margin.astype(np.float32)


def streamed_runs(num_runs: int, num_train: int):
    for run_id in range(num_runs):
        mask, margin = draw_run(run_id, num_train)
        yield RunStatistic(run_id, mask, margin, None)


def numpy_pass(masks, margins, targets, min_shadows=4):
    """The same scores from whole arrays: float64 sums over all runs, minus each target."""
    x = margins.astype(np.float64)
    x -= x[0].copy()  # the same shift as the streamed sums
    shift = margins[0].astype(np.float64)
    squares = x * x
    count_in = masks.sum(axis=0)
    sum_in = np.where(masks, x, 0.0).sum(axis=0)
    squares_in = np.where(masks, squares, 0.0).sum(axis=0)
    sum_all, squares_all = x.sum(axis=0), squares.sum(axis=0)
    del squares
    t_mask, t_x = masks[targets], x[targets]
    own_in = np.where(t_mask, t_x, 0.0)
    own_in_sq = own_in * own_in
    n_in = count_in - t_mask
    n_out = (len(masks) - 1) - n_in
    mean_in = (sum_in - own_in) / n_in
    mean_out = (sum_all - sum_in - (t_x - own_in)) / n_out
    var_in = (squares_in - own_in_sq) / n_in - mean_in**2
    var_out = (squares_all - squares_in - (t_x * t_x - own_in_sq)) / n_out - mean_out**2
    std_in = np.maximum(np.sqrt(np.maximum(var_in, 0)), STD_FLOOR)
    std_out = np.maximum(np.sqrt(np.maximum(var_out, 0)), STD_FLOOR)
    online = gaussian_log_pdf(t_x, mean_in, std_in) - gaussian_log_pdf(t_x, mean_out, std_out)
    online[(n_in < min_shadows) | (n_out < min_shadows)] = np.nan
    offline = -log_ndtr(-(t_x - mean_out) / std_out)
    offline[n_out < min_shadows] = np.nan
    threshold = loss_threshold(t_x + shift)
    return {"lira_online": online, "lira_offline": offline, "loss_threshold": threshold}


def peak_rss_bytes() -> int:
    """VmHWM of this process (not ru_maxrss, which Linux carries across exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def child_memory(num_runs: int, num_train: int, targets: int, samples: int) -> None:
    start = time.perf_counter()
    result = compute_privacy(
        streamed_runs(num_runs, num_train), range(targets), bootstrap_samples=samples
    )
    seconds = time.perf_counter() - start
    auc = result.evaluations["lira_online"].values["auc"]
    print(json.dumps({"peak": peak_rss_bytes(), "seconds": seconds, "auc": auc}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num_runs", type=int, default=2000)
    parser.add_argument("--num_train", type=int, default=50000)
    parser.add_argument("--targets", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--bootstrap_samples", type=int, default=200)
    parser.add_argument("--quick", action="store_true", help="200 runs x 5 000 examples")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.num_runs, args.num_train, args.repeats = 200, 5000, 2
    if args.child:
        child_memory(args.num_runs, args.num_train, args.targets, args.bootstrap_samples)
        return
    print(cpu_features())
    print(load_average())
    runs, n, targets = args.num_runs, args.num_train, list(range(args.targets))
    print(f"{runs} runs x {n} training examples, ratio 0.5, {len(targets)} targets")
    start = time.perf_counter()
    drawn = [draw_run(i, n) for i in range(runs)]
    masks = np.stack([d[0] for d in drawn])
    margins = np.stack([d[1] for d in drawn])
    del drawn
    print(
        f"drew the runs in memory ({(masks.nbytes + margins.nbytes) / GB:.2f} GB) in "
        f"{time.perf_counter() - start:.1f} s"
    )
    best = {"streamed": np.inf, "numpy": np.inf}
    for _ in range(args.repeats):
        start = time.perf_counter()
        ours = compute_attack_scores(
            (RunStatistic(i, masks[i], margins[i], None) for i in range(runs)), targets
        )
        best["streamed"] = min(best["streamed"], time.perf_counter() - start)
        start = time.perf_counter()
        theirs = numpy_pass(masks, margins, targets)
        best["numpy"] = min(best["numpy"], time.perf_counter() - start)
    diff = max(
        float(np.nanmax(np.abs(ours.scores[k] - theirs[k]) / (1 + np.abs(theirs[k]))))
        for k in theirs
    )
    print(
        f"attack scores, best of {args.repeats}: streamed {best['streamed']:.2f} s, "
        f"vectorised numpy {best['numpy']:.2f} s, ratio {best['streamed'] / best['numpy']:.2f}x "
        f"(goal <= 1.2x); max relative |difference| {diff:.1e}"
    )
    del masks, margins, ours, theirs
    command = [
        sys.executable,
        __file__,
        "--child",
        f"--num_runs={runs}",
        f"--num_train={n}",
        f"--targets={len(targets)}",
        f"--bootstrap_samples={args.bootstrap_samples}",
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    report = json.loads(done.stdout.strip().splitlines()[-1])
    print(
        f"compute_privacy streamed from drawn runs ({runs} x {n}, {len(targets)} targets, "
        f"{args.bootstrap_samples} bootstrap resamples): peak memory "
        f"{report['peak'] / GB:.2f} GB (goal <= 2 GB), {report['seconds']:.1f} s "
        f"including drawing the runs; online LiRA AUC {report['auc']:.3f}"
    )
    print(load_average())


if __name__ == "__main__":
    main()
