"""The Dask flags that `train_heldout` and `compute_scores` share: --scheduler, --workers.

Both fan out through `heldout.cluster`, so a scheduler name means the same in both:
`none` (default: this process, as before), `local` (a `distributed.LocalCluster` of
--workers processes, the CPUs split evenly between them) or the address of a running
scheduler (`tcp://host:8786`, e.g. one a `dask_jobqueue.SLURMCluster` started; see the
README).

    cluster_flags.define_flags()           # at import of the command module
    options = cluster_flags.cluster_options()   # after flag parsing
"""

from __future__ import annotations

import dataclasses
import os

from absl import flags

from heldout import cluster

FLAGS = flags.FLAGS
DEFAULT_LOCAL_WORKERS = 2

_defined: set[int] = set()  # id() of the FlagValues the group was defined in


def define_flags(
    flag_values: flags.FlagValues = FLAGS, default_scheduler: str = cluster.SCHEDULER_NONE
) -> None:
    """Defines --scheduler and --workers (once per FlagValues).

    Args:
      flag_values: where to define them.
      default_scheduler: `none` for the commands that ran in one process before they
        could fan out (train_heldout, compute_scores); `local` for evaluate_runs, which
        has always started a local cluster.
    """
    if id(flag_values) in _defined:
        return
    _defined.add(id(flag_values))
    fv = {"flag_values": flag_values}
    flags.DEFINE_string(
        "scheduler",
        default_scheduler,
        f"'none': this process; 'local': a Dask LocalCluster of --workers processes (the "
        "CPUs split evenly); or the address of a running Dask scheduler "
        "(tcp://host:8786), whose workers see the same files. The dashboard address is "
        f"printed. Default {default_scheduler!r}.",
        **fv,
    )
    flags.DEFINE_integer(
        "workers",
        None,
        "With --scheduler=local: worker processes (default 2). compute_scores with "
        "--scheduler=none: threads reading runs (default none: the command's own thread "
        "reads, the kernel reading ahead; threads help only on storage where each file "
        "waits long, such as some network mounts).",
        lower_bound=1,
        **fv,
    )


def define_gpu_flag(flag_values: flags.FlagValues = FLAGS) -> None:
    """Defines --gpu_tasks (train_heldout only: training is what needs the GPUs)."""
    flags.DEFINE_enum(
        "gpu_tasks",
        "auto",
        ["auto", "yes", "no"],
        "Whether each training task asks its Dask worker for a GPU (resources "
        "{'GPU': 1}, so one GPU trains one group at a time): auto = when a connected "
        "worker declares one (dask worker --resources GPU=1); yes = always (tasks wait "
        "for such workers, e.g. while an adaptive SLURM cluster starts them).",
        flag_values=flag_values,
    )


@dataclasses.dataclass(frozen=True)
class ClusterOptions:
    """What the flags ask for; `workers` is None when not given."""

    scheduler: str
    workers: int | None

    @property
    def distributed(self) -> bool:
        return self.scheduler != cluster.SCHEDULER_NONE

    @property
    def local_workers(self) -> int:
        return self.workers or DEFAULT_LOCAL_WORKERS


def cluster_options(flag_values: flags.FlagValues = FLAGS) -> ClusterOptions:
    """The flags' values, checked; quiets Dask's INFO logging before it is imported.

    Raises:
      UsageError: a --scheduler that is not 'none', 'local' or an address (exit 2).
    """
    cluster.check_scheduler(flag_values.scheduler)
    # Dask logs every cluster event at INFO, which absl shows; the progress bar says
    # enough. Dask reads this when first imported, and its worker processes inherit it.
    os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "warning")
    return ClusterOptions(flag_values.scheduler, flag_values.workers)
