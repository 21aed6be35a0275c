"""The Dask fan-out: training speed-up, per-task overhead, and scores on 1 vs 2 workers.

In one run, every worker and this process with ONE library thread each (so the
comparison is of processes, not of thread pools):

1. training --runs runs (one task each: --models_per_step=1) on a slice of Debian's
   Fashion-MNIST with 1 worker vs 2 workers -> speed-up (goal >= 1.7x on 2 cores);
2. the same runs trained by the library directly in this process
   (`train_experiment`) vs through a 1-worker cluster -> the distributed path's
   overhead, in % and per task (goal < 5 %);
3. compute_scores (C-scores and memorization: the reading-bound part) over
   --score_runs synthetic runs (`heldout.testing.synthetic`) on 2 workers vs 1, beside the
   single process reading with one thread.

Clusters are started and warmed up (TensorFlow and the loops imported in every worker, a
warm-up experiment trained) before timing, since starting workers is paid once per
command, not per task; the timed training includes loading the data and tracing the
steps, as each command does (once per worker on a cluster).
Each time is the best of --repeats, the three training ways timed in turn, round after
round, so that a slow spell of a shared machine does not fall on one of them only. The
results are checked: the runs of all three training ways are bit-identical, the scores
of all three scoring ways are equal. The
CPU's vector features and the load average are printed beside the ratios: on a busy
machine the ratios mean little.

    python bench/bench_distributed.py                       # small: ~2 minutes
    python bench/bench_distributed.py --num_train=20000 --epochs=20 --hidden=512 \\
        --repeats=3 --score_runs=2000 --score_num_train=50000 --score_num_test=10000
        # full size: the paper's 20 epochs, ~4 minutes
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from pathlib import Path

# One library thread per process, set before TensorFlow or numpy's BLAS start.
for _name in ("TF_NUM_INTRAOP_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[_name] = "1"
os.environ["TF_NUM_INTEROP_THREADS"] = "1"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "error")

import numpy as np  # noqa: E402
from absl import app, flags, logging  # noqa: E402
from distributed import Client  # noqa: E402

from heldout import cluster  # noqa: E402
from heldout.datasets import idx  # noqa: E402
from heldout.release import layout as release  # noqa: E402
from heldout.scores import experiment as scores  # noqa: E402
from heldout.scores import fanout as scores_distributed  # noqa: E402
from heldout.scores.request import ScoreRequest  # noqa: E402
from heldout.testing import synthetic  # noqa: E402
from heldout.training import TrainingConfig, train_experiment  # noqa: E402
from heldout.training import fanout as training_cluster  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_integer("num_train", 4000, "Fashion-MNIST training examples of the slice.")
flags.DEFINE_integer("num_test", 1000, "Its test examples.")
flags.DEFINE_integer("runs", 8, "Runs trained each way (one task each).")
flags.DEFINE_integer("epochs", 2, "Epochs per run.")
flags.DEFINE_integer("hidden", 256, "Hidden units of the one-layer MLP.")
flags.DEFINE_integer("score_runs", 2000, "Synthetic runs scored each way.")
flags.DEFINE_integer("score_num_train", 2000, "N of the synthetic runs.")
flags.DEFINE_integer("score_num_test", 500, "N_test of the synthetic runs.")
flags.DEFINE_integer("repeats", 2, "Each timing is the best of this many (fresh folders).")
flags.DEFINE_string("work_dir", None, "Where to write (default: a temporary folder).")

SPEEDUP_GOAL = 1.7
OVERHEAD_GOAL = 0.05
CPU_FEATURES = ("avx2", "avx512f", "avx512_bf16", "amx_tile")


def cpu_features() -> str:
    try:
        with open("/proc/cpuinfo") as info:
            lines = info.readlines()
    except OSError:
        return "CPU unknown"
    flags_line = next((x for x in lines if x.startswith("flags")), "")
    model = next((x.split(":", 1)[1].strip() for x in lines if x.startswith("model name")), "?")
    present = set(flags_line.split(":", 1)[-1].split())
    shown = ", ".join(f"{f} {'yes' if f in present else 'no'}" for f in CPU_FEATURES)
    return f"{model}; {len(os.sched_getaffinity(0))} cores; {shown}"


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f}"


def write_slice(folder: Path, num_train: int, num_test: int) -> str:
    """The first examples of Debian's Fashion-MNIST as gzipped IDX files."""
    source = idx.IdxSource("fashion_mnist", idx.DEBIAN_FASHION_MNIST_DIR)
    return str(idx.write_idx_slice(folder, source, num_train, num_test))


def config_for(data_dir: str, runs: int, epochs: int) -> TrainingConfig:
    return TrainingConfig(
        data_dir=data_dir,
        subset_ratios=(0.5,),
        runs_per_ratio=runs,
        epochs=epochs,
        batch_size=128,
        models_per_step=1,  # one run per task
        val_examples=200,
        seed=11,
        mlp_hidden_sizes=(FLAGS.hidden,),
    )


def same_runs(a: Path, b: Path) -> bool:
    runs = sorted(p.relative_to(a) for p in a.glob("*/*") if p.is_dir())
    for run in runs:
        with (
            np.load(a / run / release.AUX_ARRAYS_FILE) as x,
            np.load(b / run / release.AUX_ARRAYS_FILE) as y,
        ):
            if x.files != y.files or any(not np.array_equal(x[k], y[k]) for k in x.files):
                return False
    return bool(runs)


def timed(function, *args, **kwargs) -> tuple[float, object]:
    start = time.perf_counter()
    result = function(*args, **kwargs)
    return time.perf_counter() - start, result


def _import_training_loops() -> None:
    """Run in each worker: TensorFlow and the training loops loaded before the timing."""
    import heldout.training.loops  # noqa: F401


def bench_training(work: Path) -> None:
    data_dir = write_slice(work / "slice", FLAGS.num_train, FLAGS.num_test)
    config = config_for(data_dir, FLAGS.runs, FLAGS.epochs)
    warm = config_for(data_dir, 1, 1)
    print(
        f"training: {FLAGS.runs} runs of a {FLAGS.hidden}-unit MLP, {FLAGS.epochs} epochs, "
        f"{FLAGS.num_train // 2} examples each; {load()}"
    )
    train_experiment(warm, work / "warm-direct")
    # The three ways are timed in turn, round after round (best of --repeats each), so
    # that a slow spell of a shared machine does not fall on one of them only.
    times: dict[str, list[float]] = {"direct": [], 1: [], 2: []}
    results: dict[int, object] = {}
    with contextlib.ExitStack() as stack:
        addresses = {}
        for workers in (1, 2):
            local = stack.enter_context(cluster.local_cluster(workers, threads=1))
            addresses[workers] = local.scheduler_address
            with Client(local.scheduler_address) as client:  # every worker, not only some
                client.run(_import_training_loops)
            warm_all = config_for(config.data_dir, 2 * workers, 1)
            training_cluster.train_on_cluster(
                warm_all, work / f"warm-{workers}", scheduler=local.scheduler_address
            )
        for k in range(FLAGS.repeats):
            suffix = f"-{k}" if k else ""
            times["direct"].append(timed(train_experiment, config, work / f"direct{suffix}")[0])
            for workers in (1, 2):
                elapsed, result = timed(
                    training_cluster.train_on_cluster,
                    config,
                    work / f"c{workers}{suffix}",
                    scheduler=addresses[workers],
                )
                assert not result.failed and len(result.written) == FLAGS.runs, result
                times[workers].append(elapsed)
                if elapsed == min(times[workers]):
                    results[workers] = result
    direct_s = min(times["direct"])
    seconds = {workers: min(times[workers]) for workers in (1, 2)}
    print(
        f"  library directly, this process: {direct_s:.2f} s (tries "
        f"{', '.join(f'{t:.2f}' for t in times['direct'])}); {load()}"
    )
    for workers in (1, 2):
        in_tasks = sum(results[workers].task_seconds)
        print(
            f"  {workers} worker(s), one thread each: {seconds[workers]:.2f} s "
            f"({in_tasks:.2f} s inside the tasks; tries "
            f"{', '.join(f'{t:.2f}' for t in times[workers])}); {load()}"
        )
        if workers == 1:
            # Beyond the tasks: the client's preparation, scheduling, results' transfer.
            outside_per_task = (seconds[1] - in_tasks) / FLAGS.runs
    speedup = seconds[1] / seconds[2]
    overhead = (seconds[1] - direct_s) / direct_s
    per_task = (seconds[1] - direct_s) / FLAGS.runs
    identical = same_runs(work / "direct", work / "c1") and same_runs(work / "direct", work / "c2")
    print(f"  speed-up 2 workers vs 1: {speedup:.2f}x (goal >= {SPEEDUP_GOAL}x)")
    print(
        f"  distributed path vs the library directly: {100 * overhead:+.1f} % "
        f"({1000 * per_task:+.0f} ms a task; goal < {100 * OVERHEAD_GOAL:.0f} %); outside "
        f"the tasks: {1000 * outside_per_task:.0f} ms a task (the client's preparation, "
        "scheduling, results)"
    )
    print(f"  runs bit-identical across the three: {'yes' if identical else 'NO'}")


def bench_scores(work: Path) -> None:
    per_ratio = FLAGS.score_runs // 2
    spec = synthetic.SyntheticSpec(
        num_train=FLAGS.score_num_train,
        num_test=FLAGS.score_num_test,
        subset_ratios=(0.3, 0.7),
        runs_per_ratio=per_ratio,
        seed=2,
    )
    folder = work / "synthetic"
    write_s, _ = timed(synthetic.write_synthetic_experiment, folder, spec)
    experiment = release.open_experiment(folder)
    wanted = ("cscore", "memorization")
    print(
        f"compute_scores ({', '.join(wanted)}) over {2 * per_ratio} synthetic runs, "
        f"N={spec.num_train}, N_test={spec.num_test} (written in {write_s:.1f} s); {load()}"
    )
    single_s, reference = min(
        (
            timed(scores.score_experiment, experiment, ScoreRequest(wanted), workers=1)
            for _ in range(FLAGS.repeats)
        ),
        key=lambda t: t[0],
    )
    print(f"  one process, one reader thread: {single_s:.2f} s; {load()}")
    seconds = {}
    for workers in (1, 2):
        with cluster.local_cluster(workers, threads=1) as local:
            address = local.scheduler_address
            scores_distributed.score_on_cluster(
                release.open_experiment(folder),
                ScoreRequest(scores=wanted),
                scheduler=address,
                runs_per_share=50,
            )
            seconds[workers], result = min(
                (
                    timed(
                        scores_distributed.score_on_cluster,
                        experiment,
                        ScoreRequest(wanted),
                        address,
                    )
                    for _ in range(FLAGS.repeats)
                ),
                key=lambda t: t[0],
            )
        ours, theirs = result.arrays(), reference.arrays()
        equal = ours.keys() == theirs.keys() and all(
            np.array_equal(ours[k], theirs[k], equal_nan=ours[k].dtype.kind == "f") for k in theirs
        )
        print(
            f"  {workers} worker(s), one thread each: {seconds[workers]:.2f} s, equal to one "
            f"process: {'yes' if equal else 'NO'}; {load()}"
        )
    print(f"  speed-up 2 workers vs 1: {seconds[1] / seconds[2]:.2f}x")


def main(argv) -> None:
    del argv
    logging.set_verbosity(logging.WARNING)  # TensorFlow's INFO lines drown the results
    print(f"CPU: {cpu_features()}")
    with tempfile.TemporaryDirectory(prefix="bench-distributed-", dir=FLAGS.work_dir) as tmp:
        work = Path(tmp)
        bench_training(work)
        bench_scores(work)


if __name__ == "__main__":
    import functools

    print = functools.partial(print, flush=True)  # noqa: A001 - lines as they come, in logs too
    app.run(main)
