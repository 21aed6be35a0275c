"""Heldout training: many small models, each on a random subset, written as a release.

`train_experiment(config, output_dir)` trains `runs_per_ratio` models at each subset
ratio and writes each finished model as a run of the released layout, so `demo.py` and
the scores work on it as on the released checkpoints. Runs are deterministic per
(seed, ratio, run id), resumable, and shareable by several processes (docs/training.md).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from heldout._core.write_safety import ensure_dir
from heldout.errors import HeldoutError, LockBusyError
from heldout.release import layout as release
from heldout.release import outputs_pack
from heldout.training import legacy_runs, locks, record, resume
from heldout.training.config import TrainingConfig
from heldout.training.data import TrainingData, open_source
from heldout.training.events import (
    Event,
    OutputsPacked,
    RunDiverged,
    RunKey,
    RunSetAside,
    RunsSkipped,
    TemporariesRemoved,
    TrainingPlan,
    TrainingResult,
)


class _Session:
    """One call's state: the data, what was written, skipped and set aside."""

    def __init__(
        self,
        config: TrainingConfig,
        data: TrainingData,
        experiment_dir: Path,
        notify: Callable[[Event], None],
        trainer=None,
    ):
        self.config = config
        self.data = data
        self.experiment_dir = experiment_dir
        self.notify = notify
        self.written: list[release.Run] = []
        self.skipped: list[RunKey] = []
        self.busy: list[RunKey] = []
        self.set_aside: list[RunSetAside] = []
        self.diverged: list[RunDiverged] = []
        self._trainer = trainer

    def trainer(self):
        if self._trainer is None:
            # Imported here: the loops need TensorFlow, deciding what to train does not.
            from heldout.training.loops import Trainer

            self._trainer = Trainer(self.config, self.data, self.experiment_dir, self.notify)
        return self._trainer

    def _prepare(self, ratio: float, run_id: int, claim: locks.RunClaim) -> bool:
        """With the run claimed: True to train it (set aside first if it only looks done)."""
        run_dir = claim.path.parent / str(run_id)
        state, why = resume.run_state(
            run_dir, ratio, run_id, self.config, self.data.num_train, self.data.num_test
        )
        if state == resume.FINISHED:  # another process wrote it since the scan
            return False
        # Holding the claim, no one else writes this run: what a killed trainer of it left
        # (a half-written `release.write_run` temporary) can go now, not only when alone.
        remove_run_temporaries(claim.path.parent, run_id)
        if state in (resume.INVALID, resume.UNRECORDED):
            moved = resume.set_aside(run_dir)
            event = RunSetAside(ratio, run_id, run_dir, moved, why)
            self.set_aside.append(event)
            self.notify(event)
        return True

    @contextlib.contextmanager
    def claimed(
        self, ratio: float, run_ids: Sequence[int], quiet_busy: bool = False
    ) -> Iterator[list[int]]:
        """Claims what it can of `run_ids`; yields the runs this process is to train.

        Runs claimed by another process, or written by one since the scan, are reported
        (`RunsSkipped`; busy ones not again when `quiet_busy`) and left. The claims are
        held until the group is written.
        """
        ratio_dir = self.experiment_dir / release.ratio_dir_name(ratio)
        claims: dict[int, locks.RunClaim] = {}
        busy, done = [], []
        reason = ""
        try:
            for run_id in run_ids:
                try:
                    claim = locks.claim_run(ratio_dir, run_id)
                except LockBusyError as error:
                    busy.append(run_id)
                    reason = reason or f"being trained by another process ({error})"
                    continue
                claims[run_id] = claim
                if not self._prepare(ratio, run_id, claim):
                    claims.pop(run_id).release()
                    done.append(run_id)
            if busy:
                self.busy.extend((ratio, run_id) for run_id in busy)
                if not quiet_busy:
                    self.notify(RunsSkipped(ratio, tuple(busy), reason))
            if done:
                self.skipped.extend((ratio, run_id) for run_id in done)
                self.notify(RunsSkipped(ratio, tuple(done), "written by another process"))
            yield list(claims)
        finally:
            for claim in claims.values():
                claim.release()

    def train_ratio(self, ratio: float, run_ids: Sequence[int]) -> None:
        for _, run_group in training_groups(self.config, [(ratio, r) for r in run_ids]):
            self.train_group(ratio, run_group)

    def train_group(self, ratio: float, run_ids: Sequence[int], quiet_busy=False) -> None:
        with self.claimed(ratio, run_ids, quiet_busy) as group:
            if group:
                for outcome in self.trainer().train_group(ratio, group):
                    if isinstance(outcome, RunDiverged):
                        self.diverged.append(outcome)
                    else:
                        self.written.append(outcome)

    def take_over_busy(self) -> None:
        """Takes over the runs left to another process whose claim is now free.

        A claim dies with its process: a free claim means that process finished the run
        (then counted as written by another process) or died (then trained here, its
        leftovers removed first). Repeated while claims come free; runs still claimed by
        a live process stay in `busy`.
        """
        while self.busy:
            before = list(self.busy)
            self.busy.clear()
            for ratio, run_ids in training_groups(self.config, before):
                self.train_group(ratio, run_ids, quiet_busy=True)
            if set(self.busy) == set(before):  # every holder is alive: theirs to finish
                return

    def result(self) -> TrainingResult:
        return TrainingResult(
            self.experiment_dir,
            tuple(self.written),
            tuple(self.skipped),
            tuple(self.set_aside),
            tuple(self.busy),
            tuple(self.diverged),
        )


def training_groups(
    config: TrainingConfig, pending: Sequence[RunKey]
) -> list[tuple[float, tuple[int, ...]]]:
    """The groups of runs trained together, in training order: (ratio, run ids) each.

    MLPs of one ratio go `models_per_step` at a time (stacked), other architectures one
    at a time. A fan-out makes each group one task, so a group is trained by the same
    code, with the same companions, wherever it runs.
    """
    group_size = config.models_per_step if config.arch == "mlp" else 1
    groups = []
    for ratio in sorted({ratio for ratio, _ in pending}):
        run_ids = [run_id for r, run_id in pending if r == ratio]
        for start in range(0, len(run_ids), group_size):
            groups.append((ratio, tuple(run_ids[start : start + group_size])))
    return groups


def remove_run_temporaries(ratio_dir: Path, run_id: int) -> list[Path]:
    """Removes run `run_id`'s `release.write_run` temporaries; call it holding its claim."""
    removed = []
    for entry in sorted(ratio_dir.glob(f".{int(run_id)}.*.tmp")):
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
    return removed


@contextlib.contextmanager
def prepared_experiment(
    config: TrainingConfig, experiment_dir: Path, notify: Callable[[Event], None]
) -> Iterator[tuple[TrainingData, resume.RunStates]]:
    """The first steps of every training call; holds the training lock (shared) inside.

    Refuses a folder of another experiment before creating anything in it, removes the
    leftovers of interrupted calls when alone in the folder, writes the record and scans
    the runs; sends `TemporariesRemoved` (if any) and the `TrainingPlan`.

    Yields:
      (the training data, the runs' states).
    """
    opened = open_source(config.dataset, config.data_dir)
    record.check_existing(experiment_dir, config, opened.name)
    ensure_dir(experiment_dir)
    with locks.TrainingLock(experiment_dir) as training_lock:
        if training_lock.alone:
            removed = resume.remove_stale_temporaries(experiment_dir)
            if removed:
                notify(TemporariesRemoved(tuple(removed)))
        training_lock.share()
        data = record.update_record(experiment_dir, config, opened)
        states = resume.scan_runs(experiment_dir, config, data.num_train, data.num_test)
        if states.unrecorded and legacy_runs.record_checked_runs(
            experiment_dir, config, data, states.unrecorded
        ):
            states = resume.scan_runs(experiment_dir, config, data.num_train, data.num_test)
        notify(
            TrainingPlan(
                experiment_dir,
                states.pending,
                states.finished,
                config.epochs,
                tuple(states.invalid),
            )
        )
        yield data, states


def pack_written_outputs(
    config: TrainingConfig, experiment_dir: Path, notify: Callable[[Event], None]
) -> None:
    """Packs the outputs of each ratio of `config` whose runs are all written, beside them.

    Every trainer calls it after writing its runs, so the last one to finish a ratio packs
    it (packers take turns; a current pack is kept, not rewritten). Sends one
    `OutputsPacked` per ratio; a pack that cannot be written is reported, not raised: the
    per-run files stay what reads fall back to.

    Args:
      config: the experiment's configuration (its ratios and planned runs).
      experiment_dir: its folder; the packs go to `<experiment_dir>/outputs_pack/<ratio>/`.
      notify: receives the `OutputsPacked` events.
    """
    try:
        experiment = release.open_experiment(experiment_dir)
    except HeldoutError as error:
        for ratio in config.subset_ratios:
            notify(OutputsPacked(ratio, None, str(error)))
        return
    for ratio in config.subset_ratios:
        try:
            update = outputs_pack.update_pack(
                experiment, ratio, run_ids=list(range(config.runs_per_ratio))
            )
        except HeldoutError as error:
            notify(OutputsPacked(ratio, None, str(error)))
        else:
            notify(OutputsPacked(ratio, update))


def train_experiment(
    config: TrainingConfig,
    output_dir: str | os.PathLike,
    on_event: Callable[[Event], None] | None = None,
    pack_outputs: bool = True,
) -> TrainingResult:
    """Trains every run of `config` not yet finished in `output_dir` and writes it there.

    Calling it again with the same config trains nothing; an interrupted call leaves only
    complete run folders (and hidden temporaries that a later call removes). Several
    calls, in several processes, may train into one folder at once (e.g. one per subset
    ratio); a run another process is training is skipped, and taken over at the end if
    that process has died meanwhile; those still training are listed in `result.busy`.

    Args:
      config: what to train.
      output_dir: the experiment folder (created if missing).
      on_event: receives a `TrainingPlan` first, then `EpochLog`, `RunWritten`,
        `RunSetAside`, `RunDiverged`, `RunsSkipped` and `TemporariesRemoved` records as
        they happen, and one `OutputsPacked` per ratio at the end.
      pack_outputs: pack each ratio's outputs once all its runs are written
        (`pack_written_outputs`).

    Returns:
      What was written, skipped, set aside, left to other processes, and the runs that
      diverged (loss or weights not finite: not written, still to train).

    Raises:
      TrainingError: `output_dir` holds another experiment (not written by this trainer,
        or with other defining settings), the data cannot be found, or a run cannot be
        written (a full disk: the message names the folder).
      LockBusyError: another process kept a lock of the folder for over a minute.
      DatasetError, LabelCorruptionError: the data or the recorded corruption is unusable.
    """
    notify = on_event or (lambda event: None)
    experiment_dir = Path(output_dir)
    with prepared_experiment(config, experiment_dir, notify) as (data, states):
        session = _Session(config, data, experiment_dir, notify)
        session.skipped.extend(states.finished)
        for ratio, run_ids in training_groups(config, states.pending):
            session.train_group(ratio, run_ids)
        session.take_over_busy()  # a companion killed meanwhile left its runs to no one
        if pack_outputs and (session.written or session.skipped):
            pack_written_outputs(config, experiment_dir, notify)
    return session.result()


# ------------------------------------------------------------- one group, for a fan-out


class _Forward:
    """An event callback whose target each task sets: a kept trainer outlives its task."""

    def __init__(self):
        self.target: Callable[[Event], None] = lambda event: None

    def __call__(self, event: Event) -> None:
        self.target(event)


_kept = threading.local()  # per thread that trains: (key, data, forward, trainer)


def train_group(
    config: TrainingConfig,
    output_dir: str | os.PathLike,
    subset_ratio: float,
    run_ids: Sequence[int],
    on_event: Callable[[Event], None] | None = None,
) -> TrainingResult:
    """Trains one group of runs (see `training_groups`) into a prepared experiment folder.

    The task of a fan-out (`heldout.training.fanout`): the caller has checked the folder
    and written its record (`train_experiment`'s first steps); this joins the training
    lock, claims the runs (a run claimed or finished by another process is skipped and
    reported), trains and writes them exactly as `train_experiment` would. The data and
    the trainer (with its compiled steps) are kept by the calling thread for the next
    group of the same experiment, so a worker loads the dataset once.

    Args:
      config: the experiment's configuration.
      output_dir: its folder.
      subset_ratio, run_ids: the group.
      on_event: receives `EpochLog`, `RunWritten`, `RunSetAside` and `RunsSkipped`.

    Returns:
      What was written, skipped, set aside or left to another process.

    Raises:
      TrainingError, DatasetError, LockBusyError: as `train_experiment`.
    """
    notify = on_event or (lambda event: None)
    experiment_dir = Path(output_dir)
    key = (str(experiment_dir.resolve()), config)
    kept = getattr(_kept, "entry", None)
    with locks.TrainingLock(experiment_dir) as training_lock:
        training_lock.share()  # never cleans up: the caller's call owns the folder
        if kept is None or kept[0] != key:
            _kept.entry = None  # drop the old data before loading the new
            opened = open_source(config.dataset, config.data_dir)
            record.check_existing(experiment_dir, config, opened.name)
            data = record.update_record(experiment_dir, config, opened)
            kept = [key, data, _Forward(), None]
        forward = kept[2]
        forward.target = notify
        session = _Session(config, kept[1], experiment_dir, forward, trainer=kept[3])
        try:
            session.train_group(subset_ratio, tuple(run_ids))
            session.take_over_busy()
        finally:
            forward.target = lambda event: None
            kept[3] = session._trainer
            _kept.entry = kept
    return session.result()
