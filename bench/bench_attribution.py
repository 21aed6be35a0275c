"""LDS at scale: the dense prediction against this machine's float32 GEMM, and the top-k
path's peak memory at ImageNet size, each measured in one run with its baseline.

Part `dense`: CIFAR size (10 000 test x 50 000 train, 2 000 runs, times --scale in every
dimension). `heldout.scores.attribution.lds.predicted_outputs` (bool masks converted to
float32 per block of runs, then a GEMM) against one plain `np.matmul` of the same float32
shapes, alternated --rounds times, best of each. Printed: the GEMM-equivalent FLOP rate of
both and their ratio (goal >= 0.8), and the largest difference of the two results.

Part `topk`: ImageNet size (50 000 test, k = 100, 1 281 167 train, 1 000 evaluation and
1 000 estimation runs, times --topk_scale in test, train and runs) through
`scoring.score_attribution` with a reader that draws each run's mask and margins, in a
child process: its peak RSS (ru_maxrss, goal <= 4 GB) against the child's RSS before any
array is drawn, and the time of the whole scoring (attribution, random and holdout
baselines on the attribution's support, Spearman per test example in blocks).

    python bench/bench_attribution.py [--scale=0.5] [--topk_scale=1] [--parts=dense,topk]
    python bench/bench_attribution.py --quick   # seconds: tiny sizes, for tests/benchmarks
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from absl import app, flags

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import _shared  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_list("parts", ["dense", "topk"], "Parts to run: dense, topk.")
flags.DEFINE_float("scale", 0.5, "Dense part: fraction of CIFAR size in every dimension.")
flags.DEFINE_float("topk_scale", 1.0, "Top-k part: fraction of ImageNet size (test, train, runs).")
flags.DEFINE_integer("rounds", 2, "Dense part: alternated rounds; best of each side.")
flags.DEFINE_bool("quick", False, "Tiny sizes (a few seconds), for tests/benchmarks.")
flags.DEFINE_string("child", None, "Internal: run the top-k part in this process (JSON sizes).")

DENSE = {"runs": 2000, "num_train": 50_000, "num_test": 10_000}
TOPK = {"runs": 1000, "num_train": 1_281_167, "num_test": 50_000, "k": 100}
GEMM_GOAL, MEMORY_GOAL_GB = 0.8, 4.0
QUICK_SCALE, QUICK_TOPK_SCALE = 0.02, 0.002


def draw_masks(rng: np.random.Generator, runs: int, num_train: int) -> np.ndarray:
    """bool [runs, num_train], each run trained on about half, drawn one run at a time."""
    masks = np.empty((runs, num_train), dtype=bool)
    for r in range(runs):
        np.less(rng.random(num_train, dtype=np.float32), 0.5, out=masks[r])
    return masks


def dense_part(scale: float, rounds: int) -> float:
    """Prints the dense prediction's rate against np.matmul's; returns the ratio."""
    from heldout.scores.attribution.lds import predicted_outputs

    runs, num_train, num_test = (max(4, round(v * scale)) for v in DENSE.values())
    rng = np.random.default_rng(0)
    masks = draw_masks(rng, runs, num_train)
    tau = rng.standard_normal((num_test, num_train), dtype=np.float32)
    flop = 2.0 * runs * num_train * num_test
    print(
        f"dense: {runs} runs x {num_train} train x {num_test} test (scale {scale:g} of "
        f"2000 x 50000 x 10000), {flop / 1e9:.3g} GFLOP per product, {rounds} rounds"
    )
    masks_float = masks.astype(np.float32)  # the baseline's input, made outside its time
    np.matmul(masks_float[:4], tau.T)  # BLAS threads started before either is timed
    ours_s, base_s = [], []
    for _ in range(rounds):
        start = time.perf_counter()
        baseline = np.matmul(masks_float, tau.T)
        base_s.append(time.perf_counter() - start)
        start = time.perf_counter()
        ours = predicted_outputs(tau, masks)
        ours_s.append(time.perf_counter() - start)
    difference = float(np.max(np.abs(ours - baseline)))
    scale_of = float(np.max(np.abs(baseline)))
    base_rate, ours_rate = flop / min(base_s), flop / min(ours_s)
    ratio = ours_rate / base_rate
    print(f"  np.matmul float32 (baseline): {min(base_s):.2f} s, {base_rate / 1e9:.1f} GFLOP/s")
    print(
        f"  predicted_outputs (bool masks, blocks): {min(ours_s):.2f} s, "
        f"{ours_rate / 1e9:.1f} GFLOP/s-equivalent"
    )
    verdict = "met" if ratio >= GEMM_GOAL else "NOT met"
    print(f"  ratio ours / GEMM: {ratio:.2f} (goal >= {GEMM_GOAL}: {verdict})")
    print(f"  max |ours - baseline| {difference:.2e} (largest |value| {scale_of:.1f})")
    return ratio


def topk_sizes(scale: float) -> dict[str, int]:
    sizes = {key: max(8, round(value * scale)) for key, value in TOPK.items() if key != "k"}
    sizes["k"] = min(TOPK["k"], sizes["num_train"])
    return sizes


def topk_child(sizes: dict[str, int]) -> dict:
    """The top-k scoring in this process; what it measured, as a dict."""
    from heldout.scores.attribution import scoring
    from heldout.scores.attribution.lds import SparseAttribution
    from heldout.scores.attribution.split import split_runs

    rss_start = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    runs, num_train, num_test, k = (sizes[x] for x in ("runs", "num_train", "num_test", "k"))
    rng = np.random.default_rng(1)
    index = rng.integers(0, num_train, (num_test, k))
    value = rng.standard_normal((num_test, k), dtype=np.float32)
    attribution = SparseAttribution(index, value, num_train)
    drawing = [0.0]

    def reader(selected):  # the runs' masks and margins, drawn from the run ids' seeds
        start = time.perf_counter()
        seed = int(selected[0])
        masks = draw_masks(np.random.default_rng(seed), len(selected), num_train)
        noise = np.random.default_rng(seed + 1).standard_normal(
            (len(selected), num_test), dtype=np.float32
        )
        drawing[0] += time.perf_counter() - start
        return masks, noise

    split = split_runs(range(2 * runs), estimation=tuple(range(runs)), evaluation=None)
    start = time.perf_counter()
    scored = scoring.score_attribution(
        attribution, {i: i for i in range(2 * runs)}, split, reader, scoring.MARGIN
    )
    elapsed = time.perf_counter() - start - drawing[0]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {
        "rss_start": rss_start,
        "peak": peak,
        "seconds": elapsed,
        "drawing": drawing[0],
        "table": scoring.lds_table(scored),
        "dense_baselines": not any("on top-k" in name for name in scored.results),
    }


def topk_part(scale: float) -> float:
    """Runs the top-k part in a child process; prints it; returns the peak in GB."""
    sizes = topk_sizes(scale)
    print(
        f"top-k: {sizes['num_test']} test x k={sizes['k']} over {sizes['num_train']} train, "
        f"{sizes['runs']} evaluation + {sizes['runs']} estimation runs (scale {scale:g} of "
        "ImageNet 50000 x 100 x 1281167, 1000 runs), in a child process"
    )
    done = subprocess.run(
        [sys.executable, __file__, f"--child={json.dumps(sizes)}"],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"the top-k child failed:\n{done.stdout}\n{done.stderr}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    peak_gb = result["peak"] / 1e9
    print("  " + result["table"].replace("\n", "\n  "))
    print(
        f"  scoring time {result['seconds']:.1f} s (drawing the synthetic runs, "
        f"{result['drawing']:.1f} s, not counted)"
    )
    verdict = "met" if peak_gb <= MEMORY_GOAL_GB else "NOT met"
    print(
        f"  peak RSS {peak_gb:.2f} GB (goal <= {MEMORY_GOAL_GB} GB: {verdict}); "
        f"{result['rss_start'] / 1e9:.2f} GB before any array was drawn; the masks of "
        f"one split alone are {sizes['runs'] * sizes['num_train'] / 1e9:.2f} GB"
    )
    return peak_gb


def main(argv):
    del argv
    if FLAGS.child is not None:
        print(json.dumps(topk_child(json.loads(FLAGS.child))))
        return
    scale = QUICK_SCALE if FLAGS.quick else FLAGS.scale
    topk_scale = QUICK_TOPK_SCALE if FLAGS.quick else FLAGS.topk_scale
    print(f"CPU: {_shared.cpu_features()}; {_shared.load_average()}; numpy {np.__version__}")
    if "dense" in FLAGS.parts:
        dense_part(scale, FLAGS.rounds)
    if "topk" in FLAGS.parts:
        topk_part(topk_scale)
    print(_shared.load_average("load average at the end"))


if __name__ == "__main__":
    app.run(main)
