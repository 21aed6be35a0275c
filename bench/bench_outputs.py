"""Reading per-run outputs for an analysis, against reading the same bytes from one `.npy`.

A synthetic experiment in a temporary folder: --runs runs at ratio 0.5, each with a full
training split of --num_train examples (Fashion-MNIST's 60 000 by default; half trained on)
and --num_test test examples, its `aux_arrays.npz` and an `outputs.npz` written by
`heldout.release.outputs.save_outputs` (logit and hinge margins, index arrays, provenance).
Every file is read once first (page cache warm), then, alternated --rounds times, best of
each:

* baseline: `np.load` of one `.npy` of exactly the bytes the analysis gets (float32
  margins and bool masks [runs, num_train]);
* ours: `heldout.release.outputs_reading.read_outputs(split="train")`: masks and logit
  margins of every run in index order, first from the per-run files (each checked against
  its run's identity and aux arrays), then, after `pack_outputs`, from the ratio's pack.

Printed: the rates in MB/s of those bytes, the ratios (goal >= 0.8), the time to
pack, and the bytes of the per-run files read per byte delivered (they hold index arrays,
both margins and the aux arrays too).

    python bench/bench_outputs.py [--runs=2000] [--num_train=60000] [--num_test=10000]
    python bench/bench_outputs.py --quick   # seconds, for tests/benchmarks
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from absl import app, flags

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import _shared  # noqa: E402
from heldout.release import layout as release  # noqa: E402
from heldout.release.aux_arrays import aux_from_predictions  # noqa: E402
from heldout.release.outputs import (  # noqa: E402
    OUTPUTS_FILE,
    SPLITS,
    run_identity,
    save_outputs,
)
from heldout.release.outputs_pack import pack_outputs  # noqa: E402
from heldout.release.outputs_reading import read_outputs  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_integer("runs", 2000, "Runs of the synthetic experiment.")
flags.DEFINE_integer("num_train", 60_000, "Full training split of each run (read by the bench).")
flags.DEFINE_integer("num_test", 10_000, "Test split of each run.")
flags.DEFINE_integer("rounds", 3, "Alternated rounds; best of each side.")
flags.DEFINE_bool("quick", False, "Tiny sizes (a few seconds), for tests/benchmarks.")
flags.DEFINE_string("workdir", None, "Keep the synthetic files here (default: a temporary one).")

GOAL = 0.8
RATIO = 0.5


def write_experiment(root: Path, runs: int, num_train: int, num_test: int) -> int:
    """The synthetic runs with their outputs; the bytes of all their files."""
    rng = np.random.default_rng(0)
    for run_id in range(runs):
        mask = np.zeros(num_train, dtype=bool)  # exactly half, as a release's ratio folder
        mask[rng.permutation(num_train)[: round(RATIO * num_train)]] = True
        margin_train = rng.standard_normal(num_train, dtype=np.float32)
        margin_test = rng.standard_normal(num_test, dtype=np.float32)
        aux = aux_from_predictions(mask, margin_train > 0, margin_test > 0, rng=rng)
        run = release.write_run(root, RATIO, run_id, aux)
        arrays = {}
        for split in SPLITS:
            index = np.asarray(getattr(aux, f"index_{split}"), dtype=np.int64)
            margin = margin_test if split == "test" else margin_train
            arrays[f"index_{split}"] = index
            arrays[f"logit_margin_{split}"] = margin[index] - np.float32(0.5)
            arrays[f"hinge_margin_{split}"] = margin[index]
        save_outputs(run.path / OUTPUTS_FILE, arrays, run_identity(run.path, RATIO, run_id))
    return sum(p.stat().st_size for p in root.rglob("*.npz"))


def main(argv):
    del argv
    runs, num_train, num_test = FLAGS.runs, FLAGS.num_train, FLAGS.num_test
    if FLAGS.quick:
        runs, num_train, num_test = 12, 3000, 500
    print(f"CPU: {_shared.cpu_features()}; {_shared.load_average()}; numpy {np.__version__}")
    with tempfile.TemporaryDirectory(dir=FLAGS.workdir) as tmp:
        root = Path(tmp) / "experiment"
        start = time.perf_counter()
        file_bytes = write_experiment(root, runs, num_train, num_test)
        written = time.perf_counter() - start
        delivered = runs * num_train * (4 + 1)  # float32 margins and bool masks
        npy = Path(tmp) / "same_bytes.npy"
        np.save(npy, np.random.default_rng(1).integers(0, 256, delivered, dtype=np.uint8))
        print(
            f"{runs} runs x {num_train} training (+ {num_test} test) examples; files "
            f"{file_bytes / 1e6:.0f} MB written in {written:.0f} s; what the analysis gets: "
            f"float32 margins and bool masks [{runs}, {num_train}] = {delivered / 1e6:.0f} MB"
        )
        experiment = release.open_experiment(root)  # once, as an analysis does
        np.load(npy)
        read_outputs(experiment, RATIO, split="train")  # every file read once: page cache warm
        per_run = timed(npy, experiment, FLAGS.rounds)
        start = time.perf_counter()
        pack_outputs(experiment, RATIO)
        packing = time.perf_counter() - start
        read_outputs(experiment, RATIO, split="train")  # the pack read once: page cache warm
        packed = timed(npy, experiment, FLAGS.rounds)
    print(f"  packing every run's outputs once (pack_outputs): {packing:.1f} s")
    for label, (base_s, ours_s) in (
        ("per-run files, each checked", per_run),
        ("the ratio's pack, current", packed),
    ):
        base_rate, ours_rate = delivered / min(base_s), delivered / min(ours_s)
        ratio = ours_rate / base_rate
        verdict = "met" if ratio >= GOAL else "NOT met"
        print(
            f"  read_outputs from {label}: {min(ours_s):.3f} s, {ours_rate / 1e6:.0f} MB/s; "
            f"np.load of the same bytes: {min(base_s):.3f} s, {base_rate / 1e6:.0f} MB/s; "
            f"ratio {ratio:.2f} (goal >= {GOAL}: {verdict})"
        )
    print(f"  per-run files read per byte delivered: {file_bytes / delivered:.1f}")
    print(_shared.load_average("load average at the end"))


def timed(npy: Path, experiment, rounds: int) -> tuple[list[float], list[float]]:
    """Seconds of np.load of the .npy and of read_outputs, alternated `rounds` times."""
    base_s, ours_s = [], []
    for _ in range(rounds):
        start = time.perf_counter()
        np.load(npy)
        base_s.append(time.perf_counter() - start)
        start = time.perf_counter()
        _, masks, margins = read_outputs(experiment, RATIO, split="train")
        ours_s.append(time.perf_counter() - start)
        assert margins.shape == masks.shape
    return base_s, ours_s


if __name__ == "__main__":
    app.run(main)
