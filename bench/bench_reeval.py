"""Re-evaluating many runs of one architecture: a model per run vs one model per worker.

Writes --runs tiny runs (random weights, random --image_size images, --num_train train and
--num_test test examples) of one architecture, then re-evaluates and cross-checks all of
them in this process twice:

* per run (what `check_run` did before the model cache): build a fresh model, check the
  checkpoint and read it with `tf.train.Checkpoint` (the checkpoint opened twice), a new
  `Evaluator` (its step traced again), evaluate, cross-check;
* cached (`heldout.evaluation.evaluate.ModelCache`, as every `distributed` worker and `demo.py`
  do now): the model built and its step traced once, each run's weights restored in
  place from a checkpoint opened once.

Prints the time per run after the first (mean and median of runs 2..N) of both, their
ratio (goal: >= 3x), the CPU's vector features beside it (the ratio depends on how cheap
the evaluation itself is), and whether both ways agree on every prediction (N out of N).

    python bench/bench_reeval.py [--runs=20] [--arch=small_inception] [--image_size=16]
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import tensorflow as tf
from absl import app, flags, logging

from heldout import models
from heldout.datasets.base import ArraySplit
from heldout.datasets.numpy_source import NpzSource, save_npz
from heldout.evaluation import evaluate as evaluation
from heldout.models import checkpoints
from heldout.release import layout as release
from heldout.release.aux_arrays import aux_from_predictions

FLAGS = flags.FLAGS
flags.DEFINE_integer("runs", 20, "Runs to write and re-evaluate (each way).")
flags.DEFINE_enum("arch", "small_inception", ["small_inception", "mlp"], "Architecture.")
flags.DEFINE_integer("image_size", 16, "Image height and width (MLP: 28x28x1 always).")
flags.DEFINE_integer("num_train", 64, "Training examples per run's dataset.")
flags.DEFINE_integer("num_test", 32, "Test examples.")
flags.DEFINE_integer("batch_size", 64, "Evaluation batch size.")

GOAL = 3.0
NUM_CLASSES = 10
CPU_FEATURES = ("avx2", "avx512f", "avx512_bf16")


def cpu_features() -> str:
    """The vector features that decide how fast TensorFlow's kernels run, from /proc."""
    try:
        with open("/proc/cpuinfo") as info:
            line = next((x for x in info if x.startswith("flags")), "")
    except OSError:
        return "CPU flags unknown"
    present = set(line.split(":", 1)[-1].split())
    shown = ", ".join(f"{f} {'yes' if f in present else 'no'}" for f in CPU_FEATURES)
    gpus = tf.config.list_physical_devices("GPU")
    return shown + (f"; GPU x{len(gpus)}" if gpus else "; no GPU")


def image_shape() -> tuple[int, int, int]:
    return (28, 28, 1) if FLAGS.arch == "mlp" else (FLAGS.image_size, FLAGS.image_size, 3)


def write_experiment(root: Path) -> tuple[release.Experiment, NpzSource]:
    """`--runs` runs with their own random weights, BN statistics and training subsets."""
    rng = np.random.default_rng(0)
    shape = image_shape()
    splits = {
        split: ArraySplit(
            images=rng.integers(0, 256, size=(n, *shape), dtype=np.uint8),
            labels=rng.integers(0, NUM_CLASSES, size=n).astype(np.int64),
        )
        for split, n in (("train", FLAGS.num_train), ("test", FLAGS.num_test))
    }
    data_path = root / "data.npz"
    save_npz(data_path, splits, num_classes=NUM_CLASSES)
    source = NpzSource(data_path)
    experiment_dir = root / f"bench-{FLAGS.arch}"
    release.write_experiment_meta(
        experiment_dir,
        release.ExperimentMeta(
            name=experiment_dir.name,
            arch=FLAGS.arch,
            num_classes=NUM_CLASSES,
            dataset="npz",
            index_order="rows",
            image_shape=shape,
            extra={"data_dir": str(data_path)},
        ),
    )
    # One model and evaluator, perturbed per run: writing the runs should not cost what
    # the benchmark measures (a build and a trace per run).
    model = models.build_model(FLAGS.arch, NUM_CLASSES)
    models.ensure_variables(model, shape)
    model(tf.random.uniform((8, *shape)), is_training=True)  # move the BN statistics
    initial = [v.numpy() for v in model.trainable_variables]
    evaluator = evaluation.Evaluator(model)
    for run_id in range(FLAGS.runs):
        for variable, value in zip(model.trainable_variables, initial, strict=True):
            noise = rng.standard_normal(value.shape).astype(value.dtype)
            variable.assign(value + 0.1 * (np.std(value) + 1e-3) * noise)
        train = evaluator.evaluate(source, "train", FLAGS.batch_size)
        test = evaluator.evaluate(source, "test", FLAGS.batch_size)
        mask = rng.random(FLAGS.num_train) < 0.5
        aux = aux_from_predictions(mask, train.correctness, test.correctness, rng=rng)
        release.write_run(
            experiment_dir,
            0.5,
            run_id,
            aux,
            write_checkpoint=lambda folder, step=10 + run_id: checkpoints.save(
                model, folder, 1, step
            ),
        )
    return release.open_experiment(experiment_dir), source


def check_per_run(run, source, meta) -> evaluation.RunCheck:
    """The way before the model cache: everything built, opened and traced per run."""
    arch, num_classes, shape = evaluation.resolve_model(run, source, meta=meta)
    model = models.build_model(arch, num_classes)
    prefix = checkpoints.check_compatible(model, run.path, shape)  # opens it once ...
    reader = tf.train.load_checkpoint(str(prefix))  # ... and again for the counters
    epoch = int(reader.get_tensor(checkpoints.EPOCH_KEY))
    global_step = int(reader.get_tensor(checkpoints.GLOBAL_STEP_KEY))
    status = tf.train.Checkpoint(model=model).read(str(prefix))
    status.assert_existing_objects_matched().expect_partial()
    evaluator = evaluation.Evaluator(model)
    results = {s: evaluator.evaluate(source, s, FLAGS.batch_size) for s in ("train", "test")}
    aux = run.load_aux()
    return evaluation.RunCheck(
        run_path=Path(run.path),
        subset_ratio=run.subset_ratio,
        restore=checkpoints.RestoreInfo(prefix, epoch, global_step),
        arch=arch,
        num_classes=num_classes,
        results=results,
        checks=evaluation.cross_check(aux, list(results.values())),
        aux=aux,
    )


def timed(check_one, runs) -> tuple[list[float], list[evaluation.RunCheck]]:
    seconds, checks = [], []
    for run in runs:
        start = time.perf_counter()
        checks.append(check_one(run))
        seconds.append(time.perf_counter() - start)
    return seconds, checks


def main(argv):
    del argv
    tf.get_logger().setLevel("ERROR")  # the per-run way triggers retracing warnings
    logging.set_verbosity(logging.WARNING)  # TF's saver logs every checkpoint at INFO
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(
        f"{FLAGS.runs} runs of {FLAGS.arch}, images {image_shape()}, {FLAGS.num_train} train + "
        f"{FLAGS.num_test} test examples, batch {FLAGS.batch_size}; {os.cpu_count()} CPUs, "
        f"load average {load}; TensorFlow {tf.__version__}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        experiment, source = write_experiment(Path(tmp))
        print(f"wrote the runs in {time.perf_counter() - start:.1f} s")
        runs, meta = experiment.runs, experiment.meta

        old_s, old = timed(lambda run: check_per_run(run, source, meta), runs)
        cache = evaluation.ModelCache()
        new_s, new = timed(
            lambda run: evaluation.check_run(
                run, source, meta=meta, batch_size=FLAGS.batch_size, cache=cache
            ),
            runs,
        )

    agree = sum(
        all(
            np.array_equal(a.results[s].predictions, b.results[s].predictions)
            for s in ("train", "test")
        )
        and a.matches == b.matches
        for a, b in zip(old, new, strict=True)
    )
    matches = sum(c.matches for c in new)
    total = sum(c.total for c in new)
    rows = (("model per run", old_s), ("one model, restored in place", new_s))
    for label, seconds in rows:
        rest = seconds[1:]
        print(
            f"{label}: first run {1000 * seconds[0]:.0f} ms; runs 2..{len(seconds)}: mean "
            f"{1000 * statistics.mean(rest):.1f} ms, median {1000 * statistics.median(rest):.1f} ms"
        )
    print(f"cached: {cache.builds} model(s) built, {cache.traces} step(s) traced")
    ratio_mean = statistics.mean(old_s[1:]) / statistics.mean(new_s[1:])
    ratio_median = statistics.median(old_s[1:]) / statistics.median(new_s[1:])
    verdict = "met" if min(ratio_mean, ratio_median) >= GOAL else "NOT met"
    print(
        f"time per run after the first, per run / cached: {ratio_mean:.1f}x (mean), "
        f"{ratio_median:.1f}x (median); goal >= {GOAL:g}x {verdict}; CPU: {cpu_features()}"
    )
    print(
        f"both ways agree on every prediction for {agree} out of {len(runs)} runs; cached "
        f"cross-check: {matches} out of {total} predictions match"
    )


if __name__ == "__main__":
    app.run(main)
