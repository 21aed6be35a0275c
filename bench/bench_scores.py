"""Benchmark the score engine against the straightforward dense baseline, in one run.

Part `dense`: one synthetic experiment (default 2 000 runs x 50 000 training x 10 000 test
examples at ratio 0.7, shuffled evaluation orders as in the release), scored by
- the engine (`heldout.scores` / `heldout.influence`: runs streamed one at a time), and
- the baseline the published MNIST example uses: every run stacked into dense arrays,
  C-score and memorization as masked means, influence as two float32 masked matrix
  products (trained and held-out), each divided by its counts. (Divided in float32: the
  published code's float64 division would push the baseline past 8 GiB at full size.)
Each side runs in its own child process, so the peak memory (VmHWM) of one does not
pollute the other; both draw the identical runs from the same seeds. Times exclude drawing
the synthetic runs (measured separately and subtracted); the sides alternate --repeats
times and each keeps its best time. Printed: max |difference|, the wall-time ratio (and
the CPU-time ratio, steadier on a shared machine) and the peak-memory ratio per score.

Part `imagenet`: top-k influence at ImageNet size (1 281 167 x 50 000), a few hundred runs
(--imagenet_runs), reporting time per run and peak memory. Runs are drawn in index order
(the generator's fast path) since only the engine runs here.

Part `files`: how fast `heldout.reading.read_runs` reads written `aux_arrays.npz` files.

  python bench/bench_scores.py                                   # everything, full size
  python bench/bench_scores.py --num_runs=400 --num_train=20000 --num_test=4000 \
      --imagenet_runs=16 --imagenet_num_test=5000                # a quick look
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from absl import app, flags

_PARTS = flags.DEFINE_list("parts", ["dense", "imagenet", "files"], "dense, imagenet, files.")
_NUM_RUNS = flags.DEFINE_integer("num_runs", 2000, "Runs of the dense comparison.")
_NUM_TRAIN = flags.DEFINE_integer("num_train", 50000, "Training examples (dense part).")
_NUM_TEST = flags.DEFINE_integer("num_test", 10000, "Test examples (dense part).")
_SUBSET_RATIO = flags.DEFINE_float("subset_ratio", 0.7, "Subset ratio of every run.")
_TOPK = flags.DEFINE_integer("topk", 10, "k of the top-k influence runs.")
_IMAGENET_RUNS = flags.DEFINE_integer("imagenet_runs", 300, "Runs of the ImageNet-size top-k.")
_IMAGENET_NUM_TRAIN = flags.DEFINE_integer("imagenet_num_train", 1281167, "ImageNet N.")
_IMAGENET_NUM_TEST = flags.DEFINE_integer("imagenet_num_test", 50000, "ImageNet N_test.")
_FILE_RUNS = flags.DEFINE_integer("file_runs", 200, "Runs written and read back (files part).")
_REPEATS = flags.DEFINE_integer(
    "repeats", 2, "Runs of each side of the dense part (alternating); the best time counts."
)
_WORKDIR = flags.DEFINE_string("workdir", None, "Scratch folder (default: a temporary one).")
_CHILD = flags.DEFINE_string("child", None, "Internal: the JSON job of a child process.")

GiB = 2**30


# --- children: each measures one side in a fresh process ---------------------------------


class _TimedRuns:
    """Iterates over synthetic runs, adding up the time spent drawing them."""

    def __init__(self, job: dict, shuffle: bool):
        from heldout.synthetic import SyntheticExperiment, SyntheticSpec

        spec = SyntheticSpec(
            num_train=job["num_train"],
            num_test=job["num_test"],
            subset_ratios=(job["subset_ratio"],),
            runs_per_ratio=job["num_runs"],
        )
        self._runs = SyntheticExperiment(spec).iter_runs(shuffle=shuffle)
        self.draw_seconds = 0.0
        self.draw_cpu_seconds = 0.0

    def __iter__(self):
        while True:
            start, start_cpu = time.perf_counter(), time.process_time()
            item = next(self._runs, None)
            self.draw_seconds += time.perf_counter() - start
            self.draw_cpu_seconds += time.process_time() - start_cpu
            if item is None:
                return
            yield item[2]


def _baseline(job: dict, runs: _TimedRuns) -> dict[str, np.ndarray]:
    """Stack every run, then masked means and two masked float32 products."""
    masks, train_correct, test_correct = [], [], []
    for aux in runs:
        masks.append(aux.train_mask())
        train_correct.append(aux.train_correctness())
        test_correct.append(aux.test_correctness())
    trained = np.vstack(masks)  # bool [R, N]
    heldout = np.logical_not(trained)
    del masks

    def masked_mean(values, mask):
        return (np.sum(values * mask, axis=0) / np.maximum(np.sum(mask, axis=0), 1e-10)).astype(
            np.float32
        )

    def masked_product(values, mask):
        # Division by float32 counts keeps the quotient float32: a float64 count (as in the
        # published example) would add a float64 copy of the matrix, 8+ GiB at full size.
        values = values.T.astype(np.float32)
        counts = np.maximum(np.sum(mask, axis=0, keepdims=True), 1).astype(np.float32)
        return np.matmul(values, mask) / counts

    if job["score"] == "counts":
        correct = np.vstack(train_correct)
        return {
            "cscore": masked_mean(correct, heldout),
            "memorization": masked_mean(correct, trained) - masked_mean(correct, heldout),
        }
    tests = np.vstack(test_correct)
    return {"influence": masked_product(tests, trained) - masked_product(tests, heldout)}


def _engine(job: dict, runs: _TimedRuns) -> dict[str, np.ndarray]:
    from heldout.influence import compute_influence
    from heldout.scores import ScoreAccumulator

    if job["score"] == "counts":
        accumulator = ScoreAccumulator()
        for aux in runs:
            accumulator.add(job["subset_ratio"], aux)
        return {
            "cscore": accumulator.cscores().cscore_by_ratio[0],
            "memorization": accumulator.memorization(job["subset_ratio"]).memorization,
        }
    if job["score"] == "influence":
        return {"influence": compute_influence(runs).matrix}
    influence = compute_influence(runs, topk=job["topk"])
    return {"topk_value": influence.topk_value, "topk_index": influence.topk_index}


def _peak_rss_bytes() -> int:
    """This process's peak resident memory.

    VmHWM, not getrusage's ru_maxrss: Linux carries ru_maxrss across exec, so a child
    started by a big parent would report the parent's peak.
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # not Linux


def _child(job: dict) -> dict:
    out = Path(job["out"])
    out.mkdir(parents=True, exist_ok=True)
    runs = _TimedRuns(job, shuffle=job["shuffle"])
    start, start_cpu = time.perf_counter(), time.process_time()
    arrays = (_baseline if job["side"] == "baseline" else _engine)(job, runs)
    seconds = time.perf_counter() - start
    cpu_seconds = time.process_time() - start_cpu
    for name, array in arrays.items():  # for the comparison, after the clock stopped
        np.save(out / f"{name}.npy", array)
    return {
        "seconds": seconds - runs.draw_seconds,
        # CPU time of all threads: steadier than wall time on a machine shared with others.
        "cpu_seconds": cpu_seconds - runs.draw_cpu_seconds,
        "draw_seconds": runs.draw_seconds,
        "peak_rss_bytes": _peak_rss_bytes(),
    }


def _run_child(job: dict) -> dict:
    done = subprocess.run(
        [sys.executable, __file__, f"--child={json.dumps(job)}"],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise RuntimeError(f"child {job['side']} {job['score']} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _best(tries: list[dict]) -> dict:
    """Fastest wall time and CPU time, highest peak memory, over repeated tries."""
    return {
        "seconds": min(t["seconds"] for t in tries),
        "cpu_seconds": min(t["cpu_seconds"] for t in tries),
        "draw_seconds": min(t["draw_seconds"] for t in tries),
        "peak_rss_bytes": max(t["peak_rss_bytes"] for t in tries),
    }


# --- parent --------------------------------------------------------------------------------


def _max_abs_difference(a_path: Path, b_path: Path, block_rows: int = 256) -> tuple[float, int]:
    """max |a - b| over entries finite in both, and how many entries are NaN in either."""
    a, b = np.load(a_path, mmap_mode="r"), np.load(b_path, mmap_mode="r")
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {a.shape} vs {b.shape}")
    a2, b2 = a.reshape(a.shape[0], -1), b.reshape(b.shape[0], -1)
    worst, nan = 0.0, 0
    for start in range(0, a2.shape[0], block_rows):
        x = np.asarray(a2[start : start + block_rows], dtype=np.float64)
        y = np.asarray(b2[start : start + block_rows], dtype=np.float64)
        both = np.isfinite(x) & np.isfinite(y)
        nan += int(np.count_nonzero(~both))
        if both.any():
            worst = max(worst, float(np.max(np.abs(x[both] - y[both]))))
    return worst, nan


def _dense_part(workdir: Path) -> list[str]:
    base = {
        "num_runs": _NUM_RUNS.value,
        "num_train": _NUM_TRAIN.value,
        "num_test": _NUM_TEST.value,
        "subset_ratio": _SUBSET_RATIO.value,
        "topk": _TOPK.value,
        "shuffle": True,
    }
    lines = [
        f"dense part: {base['num_runs']} runs x {base['num_train']} training x "
        f"{base['num_test']} test examples at ratio {base['subset_ratio']}",
        f"{'score':<22}{'engine s':>10}{'baseline s':>12}{'speed-up':>10}"
        f"{'cpu ratio':>10}{'engine GiB':>12}{'baseline GiB':>14}{'mem ratio':>11}"
        f"{'max|diff|':>11}",
    ]
    results = {}
    for score, files in [
        ("counts", ["cscore.npy", "memorization.npy"]),
        ("influence", ["influence.npy"]),
    ]:
        # Alternate the sides and keep each one's best time: other processes on the
        # machine slow down whichever side they happen to overlap.
        tries = {"engine": [], "baseline": []}
        for _ in range(_REPEATS.value):
            for side in tries:
                job = {**base, "side": side, "score": score, "out": str(workdir / side / score)}
                tries[side].append(_run_child(job))
        measured = {side: _best(runs) for side, runs in tries.items()}
        diffs = [
            _max_abs_difference(workdir / "engine" / score / f, workdir / "baseline" / score / f)
            for f in files
        ]
        engine, baseline = measured["engine"], measured["baseline"]
        worst = max(d for d, _ in diffs)
        label = "C-score + memorization" if score == "counts" else "influence (dense)"
        lines.append(
            f"{label:<22}{engine['seconds']:>10.1f}{baseline['seconds']:>12.1f}"
            f"{baseline['seconds'] / engine['seconds']:>9.2f}x"
            f"{baseline['cpu_seconds'] / engine['cpu_seconds']:>9.2f}x"
            f"{engine['peak_rss_bytes'] / GiB:>12.2f}{baseline['peak_rss_bytes'] / GiB:>14.2f}"
            f"{engine['peak_rss_bytes'] / baseline['peak_rss_bytes']:>11.3f}{worst:>11.1e}"
        )
        nan = sum(n for _, n in diffs)
        if nan:
            lines.append(f"  ({nan} entries undefined in one of them, left out of max|diff|)")
        results[score] = (measured, worst)
        lines.append(
            f"  (drawing the synthetic runs took {engine['draw_seconds']:.1f} s per side, "
            "not counted)"
        )

    measured, worst = results["influence"]
    speedup = measured["baseline"]["seconds"] / measured["engine"]["seconds"]
    memory = measured["engine"]["peak_rss_bytes"] / measured["baseline"]["peak_rss_bytes"]
    verdict = "met" if speedup >= 2 and memory <= 1 / 3 and worst <= 1e-5 else "NOT met"
    lines.append(
        f"goal (influence >= 2x faster, <= 1/3 peak memory, max|diff| <= 1e-5): {verdict} "
        f"({speedup:.2f}x, {memory:.3f}, {worst:.1e})"
    )

    # The top-k mode on the same runs must agree with the dense matrix's top-k.
    job = {**base, "side": "engine", "score": "topk", "out": str(workdir / "engine" / "topk")}
    topk = _run_child(job)
    dense = np.load(workdir / "engine" / "influence" / "influence.npy", mmap_mode="r")
    values = np.load(workdir / "engine" / "topk" / "topk_value.npy")
    index = np.load(workdir / "engine" / "topk" / "topk_index.npy")
    worst_topk = 0.0
    for start in range(0, dense.shape[0], 256):
        rows = np.asarray(dense[start : start + 256])
        expected = -np.sort(-np.nan_to_num(rows, nan=-np.inf), axis=1)[:, : values.shape[1]]
        got = values[start : start + 256]
        pointed = np.take_along_axis(rows, index[start : start + 256], axis=1)
        worst_topk = max(worst_topk, np.abs(expected - got).max(), np.abs(pointed - got).max())
    lines.append(
        f"top-{_TOPK.value} on the same runs: {topk['seconds']:.1f} s, "
        f"{topk['peak_rss_bytes'] / GiB:.2f} GiB peak; max |difference| from the dense "
        f"matrix's top-k {worst_topk:.1e}"
    )
    return lines


def _imagenet_part(workdir: Path) -> list[str]:
    runs = _IMAGENET_RUNS.value
    job = {
        "num_runs": runs,
        "num_train": _IMAGENET_NUM_TRAIN.value,
        "num_test": _IMAGENET_NUM_TEST.value,
        "subset_ratio": _SUBSET_RATIO.value,
        "topk": _TOPK.value,
        "shuffle": False,
        "side": "engine",
        "score": "topk",
        "out": str(workdir / "imagenet"),
    }
    measured = _run_child(job)
    peak = measured["peak_rss_bytes"] / GiB
    return [
        f"imagenet part: top-{job['topk']} influence, {runs} runs x {job['num_train']} training"
        f" x {job['num_test']} test examples",
        f"  {measured['seconds']:.1f} s = {measured['seconds'] / runs:.3f} s per run "
        f"(drawing the runs: {measured['draw_seconds']:.1f} s more); peak memory {peak:.2f} GiB "
        f"(goal < 8 GB: {'met' if peak * GiB < 8e9 else 'NOT met'})",
    ]


def _files_part(workdir: Path) -> list[str]:
    from heldout.reading import read_runs
    from heldout.release import open_experiment
    from heldout.synthetic import SyntheticExperiment, SyntheticSpec

    spec = SyntheticSpec(
        num_train=_NUM_TRAIN.value,
        num_test=_NUM_TEST.value,
        subset_ratios=(_SUBSET_RATIO.value,),
        runs_per_ratio=_FILE_RUNS.value,
    )
    start = time.perf_counter()
    SyntheticExperiment(spec).write(workdir / "files" / "synthetic")
    write_seconds = time.perf_counter() - start
    experiment = open_experiment(workdir / "files" / "synthetic")
    lines = [f"files part: {len(experiment.runs)} aux_arrays.npz files of N={spec.num_train}"]
    for workers in (1, 4):
        start = time.perf_counter()
        for _ in read_runs(experiment.runs, workers=workers):
            pass
        seconds = time.perf_counter() - start
        lines.append(
            f"  read + validate with {workers} thread(s): {len(experiment.runs) / seconds:.0f} "
            f"runs/s (writing them: {len(experiment.runs) / write_seconds:.0f} runs/s)"
        )
    return lines


def main(argv: list[str]) -> None:
    del argv
    if _CHILD.value:
        print(json.dumps(_child(json.loads(_CHILD.value))))
        return
    with tempfile.TemporaryDirectory(dir=_WORKDIR.value, prefix="bench-scores-") as tmp:
        workdir = Path(tmp)
        print(f"{os.cpu_count()} CPUs; numpy {np.__version__}", flush=True)
        for part, run in [
            ("dense", _dense_part),
            ("imagenet", _imagenet_part),
            ("files", _files_part),
        ]:
            if part in _PARTS.value:
                print("\n".join(run(workdir)), flush=True)


if __name__ == "__main__":
    app.run(main)
