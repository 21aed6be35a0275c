"""Trains the proxies' models and records their per-epoch statistics.

Either all seeds together as one stack of MLPs, nothing kept (`train_together`), or one
seed at a time, each one's tables stored in the output's seed parts as it finishes and a
matching stored part loaded instead of retrained (`train_by_seed`: a killed run resumes).
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
import time


def train_together(options, config, data, labels, on_event, kde_block, seconds):
    """Trains `num_seeds` MLPs together in a throw-away folder; returns the recorder."""
    with tempfile.TemporaryDirectory(prefix="heldout-proxies-") as folder:
        trainer = _trainer(options, config, data, folder)
        return _record(
            trainer, range(options.num_seeds), options, labels, on_event, kde_block, seconds
        )


def _trainer(options, config, data, folder: str):
    from heldout.training.loops import Trainer

    return Trainer(
        config,
        data,
        _experiment_dir(folder),
        lambda event: None,  # each group's recorder is set as `notify` by `_record`
        record_training_passes=options.proxy_source == "training_passes",
    )


def _record(trainer, seeds, options, labels, on_event, kde_block, seconds):
    """Trains `seeds` together with `trainer`; their recorder (seconds added up)."""
    from heldout.proxies.recording import EpochRecorder

    recorder = EpochRecorder(
        labels,
        trainer.data.num_classes,
        kde_hidden="kde_hidden" in options.proxies,
        kde_hidden_every=options.kde_hidden_every,
        forward=on_event,
        kde_block=kde_block,
        source=options.proxy_source,
    )
    trainer.notify = recorder
    start = time.perf_counter()
    try:
        trainer.train_group(1.0, list(seeds))
    except BaseException:
        recorder.finish(raise_errors=False)
        raise
    recorder.finish()
    total = time.perf_counter() - start
    seconds["hook"] = seconds.get("hook", 0.0) + recorder.seconds
    seconds["kde_hidden"] = seconds.get("kde_hidden", 0.0) + recorder.kde_seconds
    # What the training waited for (the hook's own time, unless it overlapped).
    seconds["training"] = seconds.get("training", 0.0) + total - recorder.waited
    return recorder


def train_by_seed(options, config, data, labels, on_event, kde_block, seconds, parts, opened):
    """Trains the seeds without a stored matching part, one at a time, storing each."""
    from heldout.proxies.parts import SeedPart, part_record, stack_parts
    from heldout.training.data import source_record

    identity = dataclasses.asdict(source_record(opened))
    records = [part_record(options.as_json(), identity, k) for k in range(options.num_seeds)]
    done = parts.load_matching(records)
    missing = [k for k in range(options.num_seeds) if k not in done]
    if missing:
        with tempfile.TemporaryDirectory(prefix="heldout-proxies-") as folder:
            trainer = _trainer(options, config, data, folder)
            for seed in missing:
                recorder = _record(trainer, [seed], options, labels, on_event, kde_block, seconds)
                done[seed] = SeedPart.of_recorder(recorder)
                parts.save(seed, done[seed], records[seed])
    return stack_parts([done[k] for k in range(options.num_seeds)], parts.folder)


def _experiment_dir(folder: str) -> str:
    path = os.path.join(folder, "experiment")
    os.makedirs(path)
    return path
