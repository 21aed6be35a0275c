"""heldout.cluster: scheduler names, the cores' split, and a SLURMCluster's job script."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys

import pytest

from heldout import cluster
from heldout.errors import UsageError


@pytest.mark.parametrize("name", ["local", "none", "tcp://10.0.0.5:8786", "tls://h:1"])
def test_scheduler_names_accepted(name):
    cluster.check_scheduler(name)


@pytest.mark.parametrize("name", ["", "locale", "10.0.0.5:8786"])
def test_other_scheduler_names_are_usage_errors(name):
    with pytest.raises(UsageError, match="scheduler must be 'local', 'none' or a scheduler"):
        cluster.check_scheduler(name)


def test_cores_are_split_evenly_between_local_workers():
    import os

    cores = len(os.sched_getaffinity(0))
    env = cluster.worker_environment(2)
    assert env["TF_NUM_INTRAOP_THREADS"] == str(max(1, cores // 2))
    assert env["OMP_NUM_THREADS"] == env["TF_NUM_INTRAOP_THREADS"]
    assert env["TF_NUM_INTEROP_THREADS"] == "1"
    assert cluster.threads_per_worker(10 * cores) == 1


def test_connect_refuses_none():
    with pytest.raises(UsageError, match="needs a cluster"):
        with cluster.connect("none"):
            pass


def test_slurm_cluster_job_script_asks_for_gpus_memory_and_walltime():
    """Builds the real SLURMCluster object (no SLURM needed) and reads its job script."""
    pytest.importorskip("dask_jobqueue", reason="pip install dask-jobqueue")
    slurm = cluster.slurm_cluster(
        cores=6,
        memory="24GB",
        walltime="02:30:00",
        gpus=2,
        queue="gpu",
        account="lab",
        job_extra_directives=("--constraint=a100",),
        scheduler_options={"dashboard_address": "127.0.0.1:0"},
    )
    try:
        script = slurm.job_script()
        lines = script.splitlines()
        for directive in (
            "#SBATCH -p gpu",
            "#SBATCH -A lab",
            "#SBATCH --cpus-per-task=6",
            "#SBATCH -t 02:30:00",
            "#SBATCH --gres=gpu:2",
            "#SBATCH --constraint=a100",
        ):
            assert directive in lines, (directive, script)
        assert any(line.startswith("#SBATCH --mem=") for line in lines)
        assert "export TF_NUM_INTRAOP_THREADS=6" in lines
        (command,) = [line for line in lines if "distributed.cli.dask_worker" in line]
        assert command.startswith(sys.executable)
        assert "--nthreads 1" in command and "--resources GPU=2" in command
        assert slurm.scheduler_address.startswith("tcp://")
        slurm.adapt(minimum_jobs=0, maximum_jobs=4)  # adaptive: no job until work comes
    finally:
        slurm.close()


def test_slurm_workers_get_the_local_clusters_dask_settings():
    """The job script's exports, run by bash, give a fresh Python (the job's nanny and
    worker) the settings of LOCAL_CLUSTER_CONFIG, MALLOC_TRIM_THRESHOLD_ unset among
    Dask's other pre-spawn variables, which stay as they were."""
    pytest.importorskip("dask_jobqueue", reason="pip install dask-jobqueue")
    import dask

    slurm = cluster.slurm_cluster(gpus=0, scheduler_options={"dashboard_address": "127.0.0.1:0"})
    try:
        exports = [line for line in slurm.job_script().splitlines() if "DASK_" in line]
    finally:
        slurm.close()
    assert exports
    probe = (
        "import json, dask, distributed\n"
        f"keys = {sorted(cluster.LOCAL_CLUSTER_CONFIG)!r}\n"
        "config = {key: dask.config.get(key, 'absent') for key in keys}\n"
        "config['environ'] = dask.config.get('distributed.nanny.pre-spawn-environ')\n"
        "print(json.dumps(config))\n"
    )
    script = "\n".join([*exports, f"{sys.executable} -c {shlex.quote(probe)}"])
    env = {k: v for k, v in os.environ.items() if not k.startswith("DASK_")}
    done = subprocess.run(["bash", "-c", script], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    environ = seen.pop("environ")
    assert seen == {key: value for key, value in cluster.LOCAL_CLUSTER_CONFIG.items()}
    defaults = dask.config.get("distributed.nanny.pre-spawn-environ")
    assert environ == {**defaults, "MALLOC_TRIM_THRESHOLD_": None}
    assert defaults.get("MALLOC_TRIM_THRESHOLD_") is not None  # there is something to undo


def test_cpu_only_slurm_jobs_declare_no_gpu():
    pytest.importorskip("dask_jobqueue", reason="pip install dask-jobqueue")
    slurm = cluster.slurm_cluster(gpus=0, scheduler_options={"dashboard_address": "127.0.0.1:0"})
    try:
        script = slurm.job_script()
        assert "--gres" not in script and "--resources" not in script
    finally:
        slurm.close()


def test_tasks_ask_for_a_gpu_when_workers_declare_one():
    pytest.importorskip("distributed", reason="needs Dask's distributed")
    from distributed import Client, LocalCluster

    threads = {"processes": False, "n_workers": 1, "dashboard_address": None}
    with LocalCluster(resources={"GPU": 1}, **threads) as local, Client(local) as client:
        assert cluster.gpu_workers(client) == 1
        assert cluster.task_resources(client) == {"GPU": 1}
        assert cluster.task_resources(client, "no") is None
        assert client.submit(int, "7", resources={"GPU": 1}).result() == 7
    with LocalCluster(**threads) as local, Client(local) as client:
        assert cluster.task_resources(client) is None
        assert cluster.task_resources(client, "yes") == {"GPU": 1}
    with pytest.raises(UsageError, match="gpu must be"):
        cluster.task_resources(None, "maybe")


def test_local_workers_keep_glibc_malloc_defaults_and_run_no_profiler(monkeypatch):
    """Dask's nannies would set MALLOC_TRIM_THRESHOLD_ (mmapping every large temporary)
    and its profiler would sample the task's stack 100 times a second."""
    from distributed import Client

    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_", raising=False)
    with cluster.local_cluster(1, threads=1) as local, Client(local.scheduler_address) as client:
        (settings,) = client.run(
            lambda: {
                "trim": __import__("os").environ.get("MALLOC_TRIM_THRESHOLD_"),
                "profile": __import__("dask").config.get("distributed.worker.profile.enabled"),
                "threads": __import__("os").environ.get("TF_NUM_INTRAOP_THREADS"),
            }
        ).values()
    assert settings == {"trim": None, "profile": False, "threads": "1"}
    assert "MALLOC_TRIM_THRESHOLD_" not in __import__("os").environ  # nor set in this process
