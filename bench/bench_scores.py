"""Benchmark the score engine against the straightforward dense baseline, in one run.

Every ratio printed is measured in this run, on this machine, whose vector features
(/proc/cpuinfo: avx2, avx512f, avx512_bf16, avx512_vpopcntdq) are printed first.

Part `dense` (per --isas): one synthetic experiment (default 2 000 runs x 50 000 training
x 10 000 test examples at ratio 0.7, shuffled evaluation orders as in the release),
scored by
- the engine (`heldout.scores.counts` / `heldout.scores.influence`, backend "auto": runs
  streamed one at a time, influence from exact bit-packed counts), and
- the baseline the published MNIST example uses: every run stacked into dense arrays,
  C-score and memorization as masked means, influence as two float32 masked matrix
  products (trained and held-out), each divided by its counts. (Divided in float32: the
  published code's float64 division would push the baseline past 8 GiB at full size.)
Each side runs in its own child process, so the peak memory (VmHWM) of one does not
pollute the other; both draw the identical runs from the same seeds. Times exclude drawing
the synthetic runs (measured separately and subtracted) and the engine's loading of its
compiled kernels (numba's cache; a one-time compile when cold); the sides alternate --repeats
times and each keeps its best time. Printed: max |difference|, the wall-time ratio (and
the CPU-time ratio, steadier on a shared machine), the peak-memory ratio, the exact count
check (the baseline's float32 products T^T M are exact integers: they must equal the
popcount counts, max |difference| 0), the kernel's rate in binary multiply-adds per second
and as a multiple of the float32 GEMM rate measured in the same child.
`--isas=native,avx2` repeats the part as an AVX2-only CPU would run it: numba compiles for
Haswell (no AVX512, no VPOPCNTQ), OpenBLAS uses its Haswell kernels and numpy's own AVX512
loops are disabled, in both sides' processes.

Part `e2e`: what a user runs. An experiment of --e2e_runs runs x 20 000 x 5 000 written as
`.npz` files (once; kept with --workdir), then the whole process timed: `tools/
compute_scores.py --scores=influence` (start-up, reading and validating every file, the
product, writing the output) against a script that reads the same files with `np.load` and
applies the published formula, writing its result with `np.savez`.

Part `imagenet`: top-k influence at ImageNet size (1 281 167 x 50 000) with
--imagenet_runs runs (200 by default: "a few hundred"): time per run and peak memory of
the popcount backend at full size, and the ratio to the float32 GEMM path (numpy backend)
measured in the same run on the first --imagenet_compare_num_test test examples (both
costs are linear in N_test; the float32 path alone takes ~15 minutes at full size here).

Part `files`: how fast `heldout.release.reading.read_runs` reads written `aux_arrays.npz`
files, in the calling thread (its default) and on reader threads.

  python bench/bench_scores.py                                   # everything, full size
  python bench/bench_scores.py --num_runs=400 --num_train=20000 --num_test=4000 \
      --imagenet_runs=16 --imagenet_num_test=2000 --e2e_runs=200 # a quick look
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

_PARTS = flags.DEFINE_list(
    "parts", ["dense", "e2e", "imagenet", "files"], "dense, e2e, imagenet, files."
)
_ISAS = flags.DEFINE_list(
    "isas", ["native", "avx2"], "Vector ISAs for the dense part: native, avx2 (emulated)."
)
_NUM_RUNS = flags.DEFINE_integer("num_runs", 2000, "Runs of the dense comparison.")
_NUM_TRAIN = flags.DEFINE_integer("num_train", 50000, "Training examples (dense part).")
_NUM_TEST = flags.DEFINE_integer("num_test", 10000, "Test examples (dense part).")
_SUBSET_RATIO = flags.DEFINE_float("subset_ratio", 0.7, "Subset ratio of every run.")
_TOPK = flags.DEFINE_integer("topk", 10, "k of the top-k influence runs.")
_E2E_RUNS = flags.DEFINE_integer("e2e_runs", 2000, "Runs of the end-to-end experiment.")
_E2E_NUM_TRAIN = flags.DEFINE_integer("e2e_num_train", 20000, "N of the end-to-end part.")
_E2E_NUM_TEST = flags.DEFINE_integer("e2e_num_test", 5000, "N_test of the end-to-end part.")
_IMAGENET_RUNS = flags.DEFINE_integer("imagenet_runs", 200, "Runs of the ImageNet-size top-k.")
_IMAGENET_NUM_TRAIN = flags.DEFINE_integer("imagenet_num_train", 1281167, "ImageNet N.")
_IMAGENET_NUM_TEST = flags.DEFINE_integer("imagenet_num_test", 50000, "ImageNet N_test.")
_IMAGENET_COMPARE_NUM_TEST = flags.DEFINE_integer(
    "imagenet_compare_num_test", 10000, "Test examples of the popcount vs float32 comparison."
)
_FILE_RUNS = flags.DEFINE_integer("file_runs", 200, "Runs written and read back (files part).")
_REPEATS = flags.DEFINE_integer(
    "repeats", 2, "Runs of each side of the dense and e2e parts (alternating); best counts."
)
_WORKDIR = flags.DEFINE_string(
    "workdir", None, "Scratch folder, kept (default: a temporary one, removed)."
)
_CHILD = flags.DEFINE_string("child", None, "Internal: the JSON job of a child process.")

GiB = 2**30
REPO = Path(__file__).resolve().parents[1]
_CPU_FLAGS = ("avx2", "avx512f", "avx512_bf16", "avx512_vpopcntdq")
# An AVX2-only CPU, emulated: what numba compiles for, which OpenBLAS kernels run, and
# numpy's AVX512 loops switched off.
_AVX2_ENV = {
    "NUMBA_CPU_NAME": "haswell",
    "NUMBA_CPU_FEATURES": "",
    "OPENBLAS_CORETYPE": "Haswell",
    "NPY_DISABLE_CPU_FEATURES": "AVX512F AVX512CD AVX512_SKX AVX512_CLX AVX512_CNL "
    "AVX512_ICL AVX512_SPR",
}


# --- children: each measures one side in a fresh process ---------------------------------


class _TimedRuns:
    """Iterates over synthetic runs, adding up the time spent drawing them."""

    def __init__(self, job: dict, shuffle: bool):
        from heldout.testing.synthetic import SyntheticExperiment, SyntheticSpec

        spec = SyntheticSpec(
            num_train=job["num_train"],
            num_test=job["num_test"],
            subset_ratios=(job["subset_ratio"],),
            runs_per_ratio=job["num_runs"],
        )
        self._runs = SyntheticExperiment(spec).iter_runs(shuffle=shuffle)
        self.num_runs = job["num_runs"]
        self.draw_seconds = 0.0
        self.draw_cpu_seconds = 0.0

    def __len__(self) -> int:  # lets backend "auto" see the problem size
        return self.num_runs

    def __iter__(self):
        while True:
            start, start_cpu = time.perf_counter(), time.process_time()
            item = next(self._runs, None)
            self.draw_seconds += time.perf_counter() - start
            self.draw_cpu_seconds += time.process_time() - start_cpu
            if item is None:
                return
            yield item[2]


def _masked_product(values, mask):
    # Division by float32 counts keeps the quotient float32: a float64 count (as in the
    # published example) would add a float64 copy of the matrix, 8+ GiB at full size.
    values = values.T.astype(np.float32)
    counts = np.maximum(np.sum(mask, axis=0, keepdims=True), 1).astype(np.float32)
    return np.matmul(values, mask) / counts


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

    if job["score"] == "counts":
        correct = np.vstack(train_correct)
        return {
            "cscore": masked_mean(correct, heldout),
            "memorization": masked_mean(correct, trained) - masked_mean(correct, heldout),
        }
    tests = np.vstack(test_correct)
    if job["score"] == "products":  # the counts themselves, for the first rows
        rows = job["count_rows"]
        return {"counts": np.matmul(tests[:, :rows].T.astype(np.float32), trained)}
    return {"influence": _masked_product(tests, trained) - _masked_product(tests, heldout)}


def _engine(job: dict, runs: _TimedRuns) -> dict[str, np.ndarray]:
    from heldout.scores.counts import ScoreAccumulator
    from heldout.scores.influence import compute_influence

    if job["score"] == "counts":
        accumulator = ScoreAccumulator()
        for aux in runs:
            accumulator.add(job["subset_ratio"], aux)
        return {
            "cscore": accumulator.cscores().cscore_by_ratio[0],
            "memorization": accumulator.memorization(job["subset_ratio"]).memorization,
        }
    if job["score"] == "products":
        from heldout.scores.backends import popcount
        from heldout.scores.backends.bitplanes import RunBits

        rows = job["count_rows"]
        masks, tests = RunBits(job["num_train"]), RunBits(rows)
        for aux in runs:
            masks.append(aux.train_mask())
            tests.append(np.ascontiguousarray(aux.test_correctness()[:rows]))
        return {"counts": popcount.count_products(tests.planes(), masks.planes())}
    backend = job.get("backend", "auto")
    if job["score"] == "influence":
        result = compute_influence(runs, backend=backend)
        job["ran"] = result.backend
        return {"influence": result.matrix}
    result = compute_influence(runs, topk=job["topk"], backend=backend)
    job["ran"] = result.backend
    return {"topk_value": result.topk_value, "topk_index": result.topk_index}


def _peak_rss_bytes() -> int:
    """This process's peak resident memory.

    VmHWM, not getrusage's ru_maxrss: Linux carries ru_maxrss across exec, so a child
    started by a big parent would report the parent's peak.
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # not Linux


def _gemm_rate() -> float:
    """float32 multiply-adds per second of numpy's GEMM at a tile-like size (best of 3)."""
    rng = np.random.default_rng(0)
    a = rng.random((2048, 2048), dtype=np.float32)
    b = rng.random((2048, 8192), dtype=np.float32)
    best = np.inf
    for _ in range(3):
        start = time.perf_counter()
        np.matmul(a, b)
        best = min(best, time.perf_counter() - start)
    return 2048 * 2048 * 8192 / best


def _kernel_seconds(job: dict) -> float:
    """Time of the popcount kernel alone on the job's problem size (random words)."""
    from heldout.scores.backends import popcount
    from heldout.scores.backends.bitplanes import PLANE_GROUP, PlaneProblem

    rng = np.random.default_rng(1)
    words = -(-job["num_runs"] // 64)
    words = -(-words // PLANE_GROUP) * PLANE_GROUP
    rows = min(job["num_test"], 2000)
    tests = rng.integers(0, 2**63, (words, rows), dtype=np.uint64)
    trains = rng.integers(0, 2**63, (words, job["num_train"]), dtype=np.uint64)
    count_in = rng.integers(1, job["num_runs"], job["num_train"]).astype(np.int32)
    correct = rng.integers(0, job["num_runs"], rows).astype(np.int32)
    scale = np.full(job["num_train"], 1e-6, np.float32)
    out = np.empty((rows, job["num_train"]), np.float32)
    warm = PlaneProblem(tests[:, :2].copy(), trains, correct[:2], count_in, scale, 1)
    popcount.dense_influence(warm)
    start = time.perf_counter()
    problem = PlaneProblem(tests, trains, correct, count_in, scale, job["num_runs"])
    popcount.dense_influence(problem, out)
    return (time.perf_counter() - start) * job["num_test"] / rows


def _child(job: dict) -> dict:
    out = Path(job["out"])
    out.mkdir(parents=True, exist_ok=True)
    if job["score"] == "rates":
        return {"gemm_rate": _gemm_rate(), "kernel_seconds": _kernel_seconds(job)}
    runs = _TimedRuns(job, shuffle=job["shuffle"])
    if job["side"] == "engine" and job.get("backend", "auto") != "numpy":
        # Compiled once per machine and ISA, then loaded from numba's cache: keep a cold
        # cache's compile out of the clock (the e2e part times a whole process instead).
        from heldout.scores.backends import popcount

        popcount.warm_up(topk=job["score"] == "topk")
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
        "backend": job.get("ran"),
    }


def _run_child(job: dict, isa: str = "native") -> dict:
    env = dict(os.environ, **(_AVX2_ENV if isa == "avx2" else {}))
    done = subprocess.run(
        [sys.executable, __file__, f"--child={json.dumps(job)}"],
        capture_output=True,
        text=True,
        env=env,
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
        "backend": tries[0].get("backend"),
    }


# --- parent --------------------------------------------------------------------------------


def _machine_line() -> str:
    flags_seen = set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags_seen = set(line.split(":", 1)[1].split())
                break
    except OSError:
        pass
    present = [flag for flag in _CPU_FLAGS if flag in flags_seen]
    missing = [flag for flag in _CPU_FLAGS if flag not in flags_seen]
    load = os.getloadavg()[0]
    return (
        f"{os.cpu_count()} CPUs; numpy {np.__version__}; vector features: "
        f"{' '.join(present) or '-'} (absent: {' '.join(missing) or '-'}); "
        f"load average {load:.2f}"
    )


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


def _dense_part(workdir: Path, isa: str) -> list[str]:
    base = {
        "num_runs": _NUM_RUNS.value,
        "num_train": _NUM_TRAIN.value,
        "num_test": _NUM_TEST.value,
        "subset_ratio": _SUBSET_RATIO.value,
        "topk": _TOPK.value,
        "shuffle": True,
    }
    where = workdir / f"dense-{isa}"
    isa_text = "this CPU" if isa == "native" else "an AVX2-only CPU (emulated)"
    lines = [
        f"dense part on {isa_text}: {base['num_runs']} runs x {base['num_train']} training x "
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
                job = {**base, "side": side, "score": score, "out": str(where / side / score)}
                tries[side].append(_run_child(job, isa))
        measured = {side: _best(runs) for side, runs in tries.items()}
        diffs = [
            _max_abs_difference(where / "engine" / score / f, where / "baseline" / score / f)
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
        if engine["backend"]:
            lines.append(f"  (engine backend: {engine['backend']})")
        results[score] = (measured, worst)
        lines.append(
            f"  (drawing the synthetic runs took {engine['draw_seconds']:.1f} s per side, "
            "not counted)"
        )

    # The counts themselves: the baseline's float32 products are exact integers.
    rows = min(1000, base["num_test"])
    for side in ("engine", "baseline"):
        job = {**base, "side": side, "score": "products", "count_rows": rows}
        _run_child({**job, "out": str(where / side / "products")}, isa)
    counts_diff, _ = _max_abs_difference(
        where / "engine" / "products" / "counts.npy",
        where / "baseline" / "products" / "counts.npy",
    )
    lines.append(
        f"counts T^T M of the first {rows} test examples x {base['num_train']}: max |popcount "
        f"- float32 GEMM| = {counts_diff:g}"
    )

    measured, worst = results["influence"]
    speedup = measured["baseline"]["seconds"] / measured["engine"]["seconds"]
    memory = measured["engine"]["peak_rss_bytes"] / measured["baseline"]["peak_rss_bytes"]
    verdict = "met" if speedup >= 5 and memory <= 1 / 3 and counts_diff == 0 else "NOT met"
    lines.append(
        f"goal (influence >= 5x faster, <= 1/3 peak memory, counts max|diff| 0): {verdict} "
        f"({speedup:.2f}x, {memory:.3f}, {counts_diff:g}; influence max|diff| {worst:.1e}, "
        "the baseline's float32 division against one rounding of the exact quotient)"
    )

    rates = _run_child({**base, "side": "engine", "score": "rates", "out": str(where)}, isa)
    binary_rate = base["num_runs"] * base["num_train"] * base["num_test"] / rates["kernel_seconds"]
    lines.append(
        f"popcount kernel: {binary_rate:.3g} binary multiply-adds/s "
        f"({rates['kernel_seconds']:.2f} s for the whole product) = "
        f"{binary_rate / rates['gemm_rate']:.1f}x the float32 GEMM's "
        f"{rates['gemm_rate']:.3g} multiply-adds/s in the same process"
    )

    if isa == "native":  # the top-k mode on the same runs must agree with the dense matrix
        job = {**base, "side": "engine", "score": "topk", "out": str(where / "engine" / "topk")}
        topk = _run_child(job, isa)
        lines.append(_topk_check(where, topk))
    return lines


def _topk_check(where: Path, topk: dict) -> str:
    dense = np.load(where / "engine" / "influence" / "influence.npy", mmap_mode="r")
    values = np.load(where / "engine" / "topk" / "topk_value.npy")
    index = np.load(where / "engine" / "topk" / "topk_index.npy")
    mismatched = 0
    for start in range(0, dense.shape[0], 256):
        rows = np.nan_to_num(np.asarray(dense[start : start + 256]), nan=-np.inf)
        columns = np.broadcast_to(np.arange(rows.shape[1]), rows.shape)
        expected = np.lexsort((columns, -rows), axis=1)[:, : values.shape[1]]
        mismatched += int(np.count_nonzero(expected != index[start : start + 256]))
    return (
        f"top-{_TOPK.value} on the same runs ({topk['backend']}): {topk['seconds']:.1f} s, "
        f"{topk['peak_rss_bytes'] / GiB:.2f} GiB peak; indices differing from the dense "
        f"matrix's top-k (ties to the smaller index): {mismatched}"
    )


def _imagenet_part(workdir: Path) -> list[str]:
    runs = _IMAGENET_RUNS.value
    base = {
        "num_runs": runs,
        "num_train": _IMAGENET_NUM_TRAIN.value,
        "subset_ratio": _SUBSET_RATIO.value,
        "topk": _TOPK.value,
        "shuffle": False,
        "side": "engine",
        "score": "topk",
    }
    lines = [
        f"imagenet part: top-{base['topk']} influence, {runs} runs x {base['num_train']} "
        "training examples"
    ]
    # The full size with the popcount backend; both backends on the first test examples
    # for the ratio (each one's time is linear in N_test: the float32 path alone would take
    # a quarter of an hour at full size on a small machine).
    compare = min(_IMAGENET_COMPARE_NUM_TEST.value, _IMAGENET_NUM_TEST.value)
    jobs = [("popcount", _IMAGENET_NUM_TEST.value)]
    if compare < _IMAGENET_NUM_TEST.value:
        jobs.append(("popcount", compare))
    jobs.append(("numpy", compare))
    measured = {}
    for backend, num_test in jobs:
        where = workdir / "imagenet" / f"{backend}-{num_test}"
        job = {**base, "num_test": num_test, "backend": backend, "out": str(where)}
        measured[backend, num_test] = result = _run_child(job)
        peak = result["peak_rss_bytes"] / GiB
        lines.append(
            f"  {backend:<9} x {num_test} test: {result['seconds']:.1f} s = "
            f"{result['seconds'] / runs:.3f} s per run (drawing the runs: "
            f"{result['draw_seconds']:.1f} s more); peak memory {peak:.2f} GiB "
            f"(goal < 8 GB: {'met' if peak * GiB < 8e9 else 'NOT met'})"
        )
    same = all(
        np.array_equal(
            np.load(workdir / "imagenet" / f"popcount-{compare}" / name),
            np.load(workdir / "imagenet" / f"numpy-{compare}" / name),
            equal_nan=True,
        )
        for name in ("topk_index.npy", "topk_value.npy")
    )
    ratio = measured["numpy", compare]["seconds"] / measured["popcount", compare]["seconds"]
    lines.append(
        f"  time per run on {compare} test examples: {ratio:.2f}x lower than the float32 "
        f"path (goal >= 2x: {'met' if ratio >= 2 else 'NOT met'}); identical top-k: {same}"
    )
    return lines


def _e2e_experiment(workdir: Path):
    from heldout.release.layout import open_experiment
    from heldout.testing.synthetic import SyntheticExperiment, SyntheticSpec

    path = workdir / f"e2e-{_E2E_RUNS.value}x{_E2E_NUM_TRAIN.value}x{_E2E_NUM_TEST.value}"
    spec = SyntheticSpec(
        num_train=_E2E_NUM_TRAIN.value,
        num_test=_E2E_NUM_TEST.value,
        subset_ratios=(0.7,),
        runs_per_ratio=_E2E_RUNS.value,
    )
    if not (path / "experiment.json").exists():
        SyntheticExperiment(spec).write(path)
    return open_experiment(path)


_E2E_BASELINE = """
import glob, sys
import numpy as np
paths = sorted(glob.glob(sys.argv[1] + "/0.7/*/aux_arrays.npz"))
masks, tests = [], []
for path in paths:
    with np.load(path) as run:
        index_train, index_test = run["index_train"], run["index_test"]
        mask = np.zeros(index_train.size + run["index_removed"].size, bool)
        mask[index_train] = True
        test = np.empty(index_test.size, bool)
        test[index_test] = run["correctness_test"]
    masks.append(mask)
    tests.append(test)
trained, tests = np.vstack(masks), np.vstack(tests)
def masked_product(values, mask):
    values = values.T.astype(np.float32)
    counts = np.maximum(np.sum(mask, axis=0, keepdims=True), 1).astype(np.float32)
    return np.matmul(values, mask) / counts
influence = masked_product(tests, trained) - masked_product(tests, np.logical_not(trained))
np.savez(sys.argv[2], influence=influence)
"""


def _e2e_part(workdir: Path) -> list[str]:
    experiment = _e2e_experiment(workdir)
    script = workdir / "published_formula.py"
    script.write_text(_E2E_BASELINE)
    commands = {
        "compute_scores": [
            sys.executable,
            str(REPO / "tools" / "compute_scores.py"),
            f"--experiment_dir={experiment.path}",
            f"--output={workdir / 'e2e-engine.npz'}",
            "--scores=influence",
            "--noprogress",
        ],
        "np.load script": [
            sys.executable,
            str(script),
            str(experiment.path),
            str(workdir / "e2e-baseline.npz"),
        ],
    }
    best = {name: np.inf for name in commands}
    output = ""
    for _ in range(_REPEATS.value):
        for name, command in commands.items():
            start = time.perf_counter()
            done = subprocess.run(command, capture_output=True, text=True)
            seconds = time.perf_counter() - start
            if done.returncode:
                raise RuntimeError(f"{name} failed:\n{done.stderr}")
            best[name] = min(best[name], seconds)
            output = done.stdout if name == "compute_scores" else output
    backend = [line.strip() for line in output.splitlines() if "backend" in line]
    with np.load(workdir / "e2e-engine.npz") as a, np.load(workdir / "e2e-baseline.npz") as b:
        x, y = a["influence"], b["influence"]
        both = np.isfinite(x) & np.isfinite(y)
        worst = float(np.abs(x[both] - y[both]).max()) if both.any() else 0.0
    ratio = best["np.load script"] / best["compute_scores"]
    return [
        f"e2e part: {len(experiment.runs)} runs x {_E2E_NUM_TRAIN.value} x "
        f"{_E2E_NUM_TEST.value} in .npz files, whole processes timed (best of "
        f"{_REPEATS.value}; load average now {os.getloadavg()[0]:.2f})",
        f"  tools/compute_scores.py --scores=influence: {best['compute_scores']:.2f} s "
        f"({'; '.join(backend)})",
        f"  np.load + published formula: {best['np.load script']:.2f} s",
        f"  speed-up {ratio:.2f}x (goal >= 4x: {'met' if ratio >= 4 else 'NOT met'}); "
        f"max |difference| {worst:.1e}",
    ]


def _files_part(workdir: Path) -> list[str]:
    from heldout.release.layout import open_experiment
    from heldout.release.reading import read_runs
    from heldout.testing.synthetic import SyntheticExperiment, SyntheticSpec

    spec = SyntheticSpec(
        num_train=_NUM_TRAIN.value,
        num_test=_NUM_TEST.value,
        subset_ratios=(_SUBSET_RATIO.value,),
        runs_per_ratio=_FILE_RUNS.value,
    )
    path = workdir / "files" / "synthetic"
    start = time.perf_counter()
    if not path.exists():
        SyntheticExperiment(spec).write(path)
    write_seconds = time.perf_counter() - start
    experiment = open_experiment(path)
    lines = [f"files part: {len(experiment.runs)} aux_arrays.npz files of N={spec.num_train}"]
    for workers in (None, 1, 4):
        start = time.perf_counter()
        for _ in read_runs(experiment.runs, workers=workers):
            pass
        seconds = time.perf_counter() - start
        how = "in the calling thread" if workers is None else f"with {workers} thread(s)"
        lines.append(
            f"  read + validate {how}: {len(experiment.runs) / seconds:.0f} "
            f"runs/s (writing them: {len(experiment.runs) / max(write_seconds, 1e-9):.0f} runs/s)"
        )
    return lines


def main(argv: list[str]) -> None:
    del argv
    if _CHILD.value:
        print(json.dumps(_child(json.loads(_CHILD.value))))
        return
    if _WORKDIR.value:
        workdir = Path(_WORKDIR.value)
        workdir.mkdir(parents=True, exist_ok=True)
        _run_parts(workdir)
    else:
        with tempfile.TemporaryDirectory(prefix="bench-scores-") as tmp:
            _run_parts(Path(tmp))


def _run_parts(workdir: Path) -> None:
    print(_machine_line(), flush=True)
    for part in _PARTS.value:
        if part == "dense":
            for isa in _ISAS.value:
                print("\n".join(_dense_part(workdir, isa)), flush=True)
        elif part in ("e2e", "imagenet", "files"):
            run = {"e2e": _e2e_part, "imagenet": _imagenet_part, "files": _files_part}[part]
            print("\n".join(run(workdir)), flush=True)
        else:
            raise app.UsageError(f"unknown part {part!r}")
    print(f"done; {_machine_line()}", flush=True)


if __name__ == "__main__":
    app.run(main)
