"""Contiguous shares of runs read by Dask tasks, their partials added in a fixed tree.

The one fan-out pattern of every per-run pass (`heldout.scores.fanout` for the scores,
`heldout.scores.privacy.fanout` for the shadow sums): a task returns its partial, with the
one-line error that stopped it as `failure` rather than raised, so Dask's workers log no
"Compute Failed" and traceback before the command's one line.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import heldout.cluster as cluster
from heldout.errors import HeldoutError
from heldout.release.reading import ProgressCallback, progress_reporter

__all__ = ["RUNS_PER_SHARE", "Partial", "default_share", "failure_of", "reduce_shares"]

RUNS_PER_SHARE = 64  # small enough for many shares per worker, large for little overhead


class Partial(Protocol):
    """What a share's task returns: anything with the error that stopped it, or None."""

    failure: HeldoutError | None


def failure_of(partial: Partial) -> HeldoutError | None:
    """The task the client waits on per share: the share's failure, without its data."""
    return partial.failure


def default_share(num_runs: int, n_workers: int) -> int:
    """Runs per share: about four shares per worker (so a slow one does not hold up the
    end), at most `RUNS_PER_SHARE` runs each."""
    return max(1, min(RUNS_PER_SHARE, math.ceil(num_runs / (4 * n_workers))))


def reduce_shares(
    scheduler: str,
    n_workers: int,
    task: Callable[..., Partial],
    shares: Sequence[tuple[int, tuple]],
    add: Callable[[Any, Any], Partial],
    progress: bool | ProgressCallback = False,
    name: str = "read-share",
) -> Partial:
    """One task per share, their partials added pairwise (adjacent shares, in order) on
    the workers; the root's partial.

    The tree's pairing depends only on the number of shares, so a sum that is not exact
    in floating point still comes out the same every time for the same shares.

    Args:
      scheduler: "local" or a scheduler address (see `heldout.cluster.connect`).
      n_workers: processes of a local cluster.
      task: called as `task(*args)` on a worker for each share.
      shares: (runs in the share, args) per share, in run order.
      add: `add(a, b)` of two adjacent partials (`a` first): their sum, or the first
        failed one of them.
      progress: True for a tqdm bar over runs (moves a share at a time), or a callable
        `progress(done, total)`.
      name: the tasks' key prefix.

    Returns:
      The partial of all shares.

    Raises:
      HeldoutError: the first share's `failure` seen (a local cluster is quieted first).
    """
    from distributed import as_completed

    report = progress_reporter(progress, sum(runs for runs, _ in shares))
    with cluster.connect(scheduler, n_workers) as client:
        level = [
            client.submit(task, *args, pure=False, key=f"{name}-{k}-{os.urandom(4).hex()}")
            for k, (_, args) in enumerate(shares)
        ]
        # Small tasks that bring back each share's failure (not its data) as it finishes.
        checks = [client.submit(failure_of, future, pure=False) for future in level]
        sizes = {check.key: runs for check, (runs, _) in zip(checks, shares, strict=True)}
        done = 0
        tree = _tree(client, level, add)
        for check in as_completed(checks):
            failure = check.result()  # a bug in a share raises here, with its traceback
            if failure is not None:  # an expected error: the command's one line
                if scheduler == cluster.SCHEDULER_LOCAL:
                    _quiet_teardown(client)
                raise failure
            done += sizes[check.key]
            report(done)
        root = tree.result()
        report(None)
    if root.failure is not None:
        raise root.failure
    return root


def _silence_dask_logs() -> None:
    logging.getLogger("distributed").setLevel(logging.CRITICAL)


def _quiet_teardown(client) -> None:
    """Before a local cluster closes under a failed command, its processes stop logging,
    so the command's one line is all that is printed (closing while shares were moving
    between workers made them log errors with tracebacks). Local clusters only: a shared
    scheduler's workers keep their logs."""
    client.run(_silence_dask_logs)
    _silence_dask_logs()  # the scheduler and nannies of a LocalCluster live here


def _tree(client, level: list, add: Callable):
    """Adds adjacent partials pairwise on the workers until one future is left."""
    while len(level) > 1:
        paired = [
            client.submit(add, level[k], level[k + 1], pure=False)
            for k in range(0, len(level) - 1, 2)
        ]
        if len(level) % 2:
            paired.append(level[-1])
        level = paired
    return level[0]
