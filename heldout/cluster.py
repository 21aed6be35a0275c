"""Where every Dask cluster starts: a local cluster of worker processes, a running
scheduler's address, or SLURM jobs.

Every fan-out (evaluation, training, scores) connects here, so all agree on what a
scheduler name means and how the cores are shared. Dask is imported only when asked for.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shlex
import sys
from collections.abc import Iterator

from heldout.errors import UsageError

SCHEDULER_LOCAL = "local"
SCHEDULER_NONE = "none"
GPU_RESOURCE = "GPU"  # the worker resource a GPU task asks for (`--resources GPU=1`)
# Threads libraries start per process; set in each local worker to its share of the cores.
_THREAD_VARIABLES = (
    "TF_NUM_INTRAOP_THREADS",
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "NUMBA_NUM_THREADS",
)


def check_scheduler(scheduler: str) -> None:
    """Raises UsageError unless `scheduler` is "local", "none" or an address."""
    if scheduler in (SCHEDULER_LOCAL, SCHEDULER_NONE) or "://" in scheduler:
        return
    raise UsageError(
        f"scheduler must be {SCHEDULER_LOCAL!r}, {SCHEDULER_NONE!r} or a scheduler address "
        f"such as 'tcp://10.0.0.5:8786'; got {scheduler!r}"
    )


def check_workers(n_workers: int) -> None:
    """Raises UsageError for fewer than one worker."""
    if int(n_workers) != n_workers or n_workers < 1:
        raise UsageError(f"workers must be a positive integer, got {n_workers}")


def threads_per_worker(n_workers: int) -> int:
    """The cores this process may use, split evenly between `n_workers` (at least 1)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return max(1, cores // n_workers)


# Dask settings of the local clusters started here, where the workers' tasks are long
# (seconds to hours of numeric work) and the workers as many as the cores, so whatever
# else a Dask process does comes out of the tasks' time (with one worker it runs on the
# idle core, which flattered 1 worker against 2 in bench/bench_distributed.py):
LOCAL_CLUSTER_CONFIG = {
    # The nannies would set MALLOC_TRIM_THRESHOLD_=65536 in every worker (against the
    # fragmentation of many small pandas objects). Setting it at all also pins glibc's
    # mmap threshold at 128 KiB, so every large temporary of a training step or an
    # evaluation is mmapped and page-faulted afresh: tasks ran measurably slower in a
    # worker than in a plain process. None: unset, glibc's defaults, as in a plain process.
    "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None,
    # The statistical profiler samples every thread's stack 100 times a second.
    "distributed.worker.profile.enabled": False,
    # Event-loop health checks 50 times a second, system and memory monitors 2 and 10
    # times, work stealing 10 times: an idle worker and the scheduler used a few % of a core.
    "distributed.admin.tick.interval": "1s",
    "distributed.admin.system-monitor.interval": "2s",
    "distributed.worker.memory.monitor-interval": "500ms",
    "distributed.scheduler.work-stealing-interval": "500ms",
}


def dask_config_environment(config: dict) -> dict[str, str]:
    """`config` (dotted Dask keys, as `LOCAL_CLUSTER_CONFIG`) as DASK_* variables that a
    process started elsewhere (a SLURM job's worker and nanny) reads into its config.

    Why whole sections as Python literals (`DASK_DISTRIBUTED__NANNY="{...}"`), not one
    variable per key: Dask lower-cases the names of environment variables, and the key
    `MALLOC_TRIM_THRESHOLD_` under `pre-spawn-environ` is an environment variable name
    of its own, which only a literal keeps in its case; Dask merges the literal into its
    defaults key by key, so the rest of each section stays as it was.
    """
    sections: dict[str, dict] = {}
    for dotted, value in config.items():
        top, section, *path = dotted.split(".")
        node = sections.setdefault(f"DASK_{top.upper()}__{section.upper().replace('-', '_')}", {})
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = value
    return {name: repr(tree) for name, tree in sections.items()}


def worker_environment(n_workers: int, threads: int | None = None) -> dict[str, str]:
    """The environment of each local worker process: its share of the cores (or `threads`)
    and quiet TensorFlow."""
    threads = str(threads or threads_per_worker(n_workers))
    env = dict.fromkeys(_THREAD_VARIABLES, threads)
    env.update(
        TF_NUM_INTEROP_THREADS="1",
        TF_CPP_MIN_LOG_LEVEL=os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"),
        # Several workers may share one GPU: each takes memory as it needs it.
        TF_FORCE_GPU_ALLOW_GROWTH="true",
    )
    return env


def local_cluster(
    n_workers: int,
    memory_limit: str | float | None = None,
    dashboard: bool = False,
    threads: int | None = None,
):
    """A LocalCluster of single-threaded worker processes sharing the cores evenly.

    Args:
      n_workers: worker processes.
      memory_limit: per worker (Dask's default: the machine's memory split evenly).
      dashboard: serve the dashboard on a free loopback port (its pages need bokeh);
        False: Dask's HTTP routes still listen, on a free port rather than 8787, so that
        concurrent jobs on one machine do not collide.
      threads: library threads per worker (default: the cores split evenly); e.g. 1 to
        compare one worker with two on equal terms.

    Returns:
      The started `distributed.LocalCluster` (close it, or use it as a context manager).
    """
    import dask
    from distributed import LocalCluster

    check_workers(n_workers)
    kwargs = {} if memory_limit is None else {"memory_limit": memory_limit}
    # Read when the scheduler and the nannies are made (a nanny hands its config to its
    # worker process, over the worker's own environment): see LOCAL_CLUSTER_CONFIG.
    with dask.config.set(LOCAL_CLUSTER_CONFIG):
        return LocalCluster(
            n_workers=n_workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address="127.0.0.1:0" if dashboard else None,
            scheduler_kwargs={} if dashboard else {"dashboard_address": "127.0.0.1:0"},
            env=worker_environment(n_workers, threads),
            # Workers print errors only: a command reports its own failures in one line,
            # and closing a cluster after one cancels the other tasks, which Dask's
            # workers would each log as a warning beneath it.
            silence_logs=logging.ERROR,
            **kwargs,
        )


@contextlib.contextmanager
def connect(
    scheduler: str,
    n_workers: int = 2,
    memory_limit: str | float | None = None,
    dashboard: bool = False,
) -> Iterator:
    """A `distributed.Client` of a fresh local cluster or of a running scheduler.

    Everything started here is closed on exit (a running scheduler is left running).

    Args:
      scheduler: "local" or an address (not "none": callers handle that themselves).
      n_workers, memory_limit, dashboard: of the local cluster (see `local_cluster`).

    Yields:
      The connected client.

    Raises:
      UsageError: a bad scheduler name, or "none".
      OSError: the scheduler cannot be reached (Dask's own timeout and message).

    Example:

        with cluster.connect("local", n_workers=2) as client:
            futures = client.map(task, items, pure=False)

    Scheduler names:
    * "local": a `distributed.LocalCluster` of `n_workers` processes with one task thread
      each; the machine's cores are split evenly between them through
      TF_NUM_INTRAOP_THREADS and the thread counts of numpy's BLAS, so two workers on two
      cores do not fight over them, and a run trained on a worker sees the same thread count
      wherever it is trained.
    * an address ("tcp://host:8786"): a running scheduler (e.g. one a `SLURMCluster`
      started); its workers must import `heldout` and see the same files.
    * "none": no Dask at all; the callers then work in their own process.
    """
    check_scheduler(scheduler)
    if scheduler == SCHEDULER_NONE:
        raise UsageError("connect() needs a cluster: 'local' or a scheduler address")
    from distributed import Client

    cluster = client = None
    try:
        if scheduler == SCHEDULER_LOCAL:
            cluster = local_cluster(n_workers, memory_limit, dashboard)
            client = Client(cluster)
        else:
            client = Client(scheduler)
        yield client
    finally:
        if client is not None:
            client.close()
        if cluster is not None:
            cluster.close()


def dashboard_link(client) -> str | None:
    """The dashboard address of the client's scheduler, if it serves one."""
    try:
        return client.dashboard_link or None
    except (AttributeError, KeyError):
        return None


def gpu_workers(client) -> int:
    """How many of the connected workers declare a GPU resource (`--resources GPU=1`)."""
    workers = client.scheduler_info().get("workers", {})
    return sum(1 for info in workers.values() if info.get("resources", {}).get(GPU_RESOURCE))


def task_resources(client, gpu: str = "auto") -> dict | None:
    """The resources each task asks for: one GPU, or nothing.

    Args:
      gpu: "yes" (every task needs a GPU: tasks wait for a worker that declares one, e.g.
        while an adaptive SLURM cluster starts them), "no", or "auto" (yes when a
        connected worker declares a GPU now).

    Raises:
      UsageError: an unknown `gpu` value.
    """
    if gpu not in ("auto", "yes", "no"):
        raise UsageError(f"gpu must be 'auto', 'yes' or 'no', got {gpu!r}")
    wants = gpu == "yes" or (gpu == "auto" and gpu_workers(client) > 0)
    return {GPU_RESOURCE: 1} if wants else None


def slurm_cluster(
    *,
    cores: int = 8,
    memory: str = "32GB",
    walltime: str = "04:00:00",
    gpus: int = 1,
    queue: str | None = None,
    account: str | None = None,
    python: str | None = None,
    job_extra_directives: tuple[str, ...] = (),
    **kwargs,
):
    """A `dask_jobqueue.SLURMCluster` whose jobs are one worker each, set up for heldout.

    Each job is one worker process with `cores` threads' worth of cores; with `gpus` > 0 it
    asks SLURM for that many GPUs (`--gres=gpu:N`) and declares them to Dask
    (`--resources GPU=N`), so training tasks (which ask for `{"GPU": 1}`) run there one per
    GPU. The worker runs one task at a time (TensorFlow uses the job's cores inside it:
    TF_NUM_INTRAOP_THREADS is set to `cores`). Scale it with `cluster.scale(jobs=N)` or
    `cluster.adapt(minimum_jobs=0, maximum_jobs=N)`, and pass `cluster.scheduler_address`
    as `--scheduler`.

    Args:
      cores, memory, walltime: per job (SLURM's --cpus-per-task, --mem, -t).
      gpus: GPUs per job (0 for CPU jobs).
      queue, account: SLURM partition and account.
      python: the interpreter the jobs run (default: this one, e.g. the project's venv).
      job_extra_directives: more `#SBATCH` options.
      **kwargs: any other `SLURMCluster` argument.

    Returns:
      The cluster (no job is submitted until it is scaled).

    Raises:
      UsageError: dask-jobqueue is not installed, or bad sizes.
    """
    try:
        from dask_jobqueue import SLURMCluster
    except ImportError:
        raise UsageError("SLURM clusters need dask-jobqueue: pip install dask-jobqueue") from None
    if cores < 1 or gpus < 0:
        raise UsageError(f"cores must be >= 1 and gpus >= 0, got {cores} and {gpus}")
    directives = [f"--gres=gpu:{gpus}"] if gpus else []
    directives += list(job_extra_directives)
    worker_args = ["--resources", f"{GPU_RESOURCE}={gpus}"] if gpus else []
    prologue = [f"export {name}={cores}" for name in _THREAD_VARIABLES]
    prologue += ["export TF_NUM_INTEROP_THREADS=1", "export TF_CPP_MIN_LOG_LEVEL=2"]
    # The local clusters' Dask settings (no MALLOC_TRIM_THRESHOLD_, no profiler, slower
    # housekeeping ticks), read by the job's nanny and worker from their environment.
    prologue += [
        f"export {name}={shlex.quote(value)}"
        for name, value in dask_config_environment(LOCAL_CLUSTER_CONFIG).items()
    ]
    return SLURMCluster(
        cores=1,  # Dask threads: one task at a time; the job's cores go to TensorFlow
        job_cpu=cores,
        processes=1,
        memory=memory,
        walltime=walltime,
        queue=queue,
        account=account,
        python=python or sys.executable,
        job_extra_directives=directives,
        worker_extra_args=worker_args,
        job_script_prologue=prologue,
        **kwargs,
    )
