"""Evaluation throughput: heldout.evaluation.evaluate vs a plain eager loop and the matmul rate.

SmallInception on 32x32x3 images (random pixels, random weights: speed does not depend on
them). In the same process, interleaved over several rounds so that a shared or throttled
machine affects all three alike:

* matmul: float32 2048x2048 matrix products (the machine's practical FLOP rate);
* plain loop: batches of 200 from a numpy array, converted to float32 per batch, the model
  called eagerly per batch, argmax fetched per batch;
* ours: `heldout.evaluation.evaluate.Evaluator` over the `.npz` data source (compiled step,
  prefetching input pipeline), batch size --batch_size.

Prints images/s of both (best and median over rounds), their ratio, and our throughput as
a fraction of the matmul rate at --gflop_per_image (SmallInception: about 0.65 GFLOP per
32x32 image). CPU goals: ours >= 1.0x the plain loop and >= 0.9 of the matmul rate; on a
GPU: >= 3x the plain loop.

With --outputs_cost it measures instead the cost of `--outputs=margins` over writing
correctness alone (bench/_eval_outputs_cost.py; goal <= 5 %), on --cost_arch (the MLP of
Fashion-MNIST by default: the cheaper the model, the larger the share of the outputs).

    python bench/bench_eval.py [--num_images=1000] [--rounds=3] [--batch_size=200]
    python bench/bench_eval.py --outputs_cost [--cost_num_train=60000] [--quick]
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import tensorflow as tf
from absl import app, flags

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import _eval_outputs_cost, _shared  # noqa: E402
from heldout import models  # noqa: E402
from heldout.datasets.base import ArraySplit  # noqa: E402
from heldout.datasets.numpy_source import NpzSource, save_npz  # noqa: E402
from heldout.evaluation import evaluate as evaluation  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_integer("num_images", 2000, "Images per timed pass (each method).")
flags.DEFINE_integer("rounds", 3, "Interleaved timing rounds; best and median are reported.")
flags.DEFINE_integer(
    "batch_size",
    evaluation.DEFAULT_BATCH_SIZE,
    "Batch size of heldout.evaluation.evaluate (its default).",
)
flags.DEFINE_integer("plain_batch_size", 200, "Batch size of the plain loop.")
flags.DEFINE_bool("jit_compile", False, "Compile our step with XLA.")
flags.DEFINE_float("gflop_per_image", 0.65, "Model cost used for the FLOP-rate fraction.")
flags.DEFINE_integer("matmul_size", 2048, "Matrix size of the matmul rate measurement.")
flags.DEFINE_integer("matmul_reps", 10, "Chained matmuls per timed matmul call.")
flags.DEFINE_bool("outputs_cost", False, "Measure the cost of --outputs=margins instead.")
flags.DEFINE_string("cost_arch", "mlp", "Outputs cost: the model (mlp: 28x28x1 images).")
flags.DEFINE_integer("cost_num_train", 60_000, "Outputs cost: training images evaluated.")
flags.DEFINE_integer("cost_num_test", 10_000, "Outputs cost: test images evaluated.")
flags.DEFINE_bool("quick", False, "Outputs cost on a few hundred images (seconds), for tests.")

PLAIN_GOAL_CPU, MATMUL_GOAL_CPU, PLAIN_GOAL_GPU = 1.0, 0.9, 3.0


def counted_gflop_per_image(model, image_shape=(32, 32, 3)) -> float | None:
    """Float operations of one inference, counted by TensorFlow's graph profiler."""
    try:
        from tensorflow.python.profiler import model_analyzer, option_builder
    except ImportError:
        return None
    fn = tf.function(lambda x: model(x, is_training=False))
    graph = fn.get_concrete_function(tf.TensorSpec([1, *image_shape], tf.float32)).graph
    builder = option_builder.ProfileOptionBuilder
    options = builder(builder.float_operation()).with_empty_output().build()
    return model_analyzer.profile(graph=graph, options=options).total_float_ops / 1e9


def matmul_rate(size: int, reps: int):
    a = tf.random.normal((size, size))
    b = tf.random.normal((size, size)) / size**0.5  # keeps chained products finite

    @tf.function
    def chain(x, y):  # arguments, not captured constants: nothing can be folded away
        for _ in range(reps):
            x = tf.matmul(x, y)
        return x

    chain(a, b).numpy()  # trace and warm up

    def timed() -> tuple[float, float]:
        wall, cpu = time.perf_counter(), time.process_time()
        chain(a, b).numpy()
        flop = reps * 2.0 * size**3
        return flop / (time.perf_counter() - wall), flop / (time.process_time() - cpu)

    return timed


def plain_loop(model, images: np.ndarray, batch_size: int) -> np.ndarray:
    predictions = []
    for start in range(0, len(images), batch_size):
        batch = images[start : start + batch_size].astype(np.float32) / 255.0
        logits = model(tf.convert_to_tensor(batch), is_training=False)
        predictions.append(np.argmax(logits.numpy(), axis=-1))
    return np.concatenate(predictions)


def describe_machine() -> str:
    gpus = tf.config.list_physical_devices("GPU")
    device = f"GPU x{len(gpus)}" if gpus else "CPU"
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return f"{device}; {os.cpu_count()} CPUs; load average {load}; TensorFlow {tf.__version__}"


def main(argv):
    del argv
    if FLAGS.outputs_cost:
        print(f"CPU: {_shared.cpu_features()}; {_shared.load_average()}; TF {tf.__version__}")
        shape = (28, 28, 1) if FLAGS.cost_arch == "mlp" else (32, 32, 3)
        sizes = (300, 100) if FLAGS.quick else (FLAGS.cost_num_train, FLAGS.cost_num_test)
        _eval_outputs_cost.outputs_cost(FLAGS.cost_arch, shape, *sizes, FLAGS.rounds)
        return
    n = FLAGS.num_images
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, size=n).astype(np.int64)

    model = models.build_model("small_inception", 10)
    models.ensure_variables(model)
    model(tf.random.uniform((32, 32, 32, 3)), is_training=True)  # non-trivial BN statistics
    counted = counted_gflop_per_image(model)
    print(f"Machine: {describe_machine()}")
    print(
        f"SmallInception, 32x32x3, {n} images per pass, {FLAGS.rounds} interleaved rounds; "
        f"profiler count {counted:.3f} GFLOP/image; the rate fraction uses "
        f"{FLAGS.gflop_per_image} GFLOP/image"
    )

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.npz"
        save_npz(path, {"test": ArraySplit(images=images, labels=labels)}, num_classes=10)
        source = NpzSource(path)
        evaluator = evaluation.Evaluator(model, jit_compile=FLAGS.jit_compile or None)
        timed_matmul = matmul_rate(FLAGS.matmul_size, FLAGS.matmul_reps)

        # Warm-up: trace our step, let the eager kernels pick their algorithms.
        small = tf.data.Dataset.from_tensor_slices(
            {
                "image": images[:8].astype(np.float32) / 255.0,
                "label": labels[:8],
                "index": np.arange(8, dtype=np.int64),
            }
        ).batch(8)
        evaluator.evaluate(small)
        plain_loop(model, images[: FLAGS.plain_batch_size], FLAGS.plain_batch_size)

        # Per method: rates by wall-clock time, and per CPU-second of this process (the
        # latter is less sensitive to other processes sharing the machine).
        wall = {"matmul": [], "plain": [], "ours": []}
        cpu = {"matmul": [], "plain": [], "ours": []}
        agree = True
        for _ in range(FLAGS.rounds):
            rate, rate_cpu = timed_matmul()
            wall["matmul"].append(rate)
            cpu["matmul"].append(rate_cpu)
            start, start_cpu = time.perf_counter(), time.process_time()
            plain_pred = plain_loop(model, images, FLAGS.plain_batch_size)
            wall["plain"].append(n / (time.perf_counter() - start))
            cpu["plain"].append(n / (time.process_time() - start_cpu))
            start, start_cpu = time.perf_counter(), time.process_time()
            result = evaluator.evaluate(source, "test", FLAGS.batch_size)
            wall["ours"].append(n / (time.perf_counter() - start))
            cpu["ours"].append(n / (time.process_time() - start_cpu))
            agree &= bool(np.array_equal(result.predictions, plain_pred))

    gflop = FLAGS.gflop_per_image
    xla = ", XLA" if FLAGS.jit_compile else ""
    for label, rates, unit in (("wall-clock", wall, "/s"), ("per CPU-second", cpu, "/CPU-s")):
        best = {k: max(v) for k, v in rates.items()}
        median = {k: statistics.median(v) for k, v in rates.items()}
        print(f"-- {label} (best / median of {FLAGS.rounds})")
        print(
            f"matmul {FLAGS.matmul_size}^2 float32: {best['matmul'] / 1e9:.1f} / "
            f"{median['matmul'] / 1e9:.1f} GFLOP{unit} "
            f"(= {best['matmul'] / (gflop * 1e9):.0f} images{unit} at {gflop} GFLOP/image)"
        )
        print(
            f"plain loop (batch {FLAGS.plain_batch_size}, eager): {best['plain']:.1f} / "
            f"{median['plain']:.1f} images{unit}"
        )
        print(
            f"heldout.evaluation.evaluate (batch {FLAGS.batch_size}{xla}): {best['ours']:.1f} / "
            f"{median['ours']:.1f} images{unit}"
        )
        print(
            f"ratio ours / plain: {best['ours'] / best['plain']:.2f}x / "
            f"{median['ours'] / median['plain']:.2f}x"
        )
        print(
            f"ours as a fraction of the matmul rate: "
            f"{best['ours'] * gflop * 1e9 / best['matmul']:.2f} / "
            f"{median['ours'] * gflop * 1e9 / median['matmul']:.2f}"
        )
    print(f"predictions identical to the plain loop: {agree}")

    ratio = max(wall["ours"]) / max(wall["plain"])
    fraction = max(wall["ours"]) * gflop * 1e9 / max(wall["matmul"])

    def verdict(ok: bool) -> str:
        return "met" if ok else "NOT met"

    if tf.config.list_physical_devices("GPU"):
        met = verdict(ratio >= PLAIN_GOAL_GPU)
        print(f"GPU goal (wall-clock, best): >= {PLAIN_GOAL_GPU}x plain {met}")
    else:
        print(
            f"CPU goals (wall-clock, best): >= {PLAIN_GOAL_CPU}x plain "
            f"{verdict(ratio >= PLAIN_GOAL_CPU)}; >= {MATMUL_GOAL_CPU} of the matmul rate "
            f"{verdict(fraction >= MATMUL_GOAL_CPU)}"
        )


if __name__ == "__main__":
    app.run(main)
