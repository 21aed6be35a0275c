"""`tools/published_scores.py`: the published score files, checked, and ours written in them.

`--inspect` reads any published format (C-scores, high-influence pairs, class-wise
influence matrices; ImageNet's `.bin` parts as one comma-separated list) and says what
it holds. `--export` writes ours in the same formats: `cscores` (from a scores file's
`cscore`), `pairs` (from a scores file's dense or top-k influence and memorization, or
from a class-wise file), `classwise` (from an experiment's runs, class by class, without
the dense matrix). Labels come from `--labels` (an .npz with `tr_labels`, `tt_labels`),
`--dataset`/`--data_dir`, or `--experiment_dir`'s dataset. Every written file carries a
`provenance` entry saying what it was computed from.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
from absl import flags

from heldout.cli import app

FLAGS = flags.FLAGS
NAME = "published_scores"
EXPORTS = ("cscores", "pairs", "classwise")


def define_flags() -> None:
    """This command's flags (defined when it runs, so importing the module defines none)."""
    flags.DEFINE_list("inspect", None, "Published (or exported) files to check and describe.")
    flags.DEFINE_enum("export", None, EXPORTS, "Which published format to write.")
    flags.DEFINE_string("output", None, "The file to write (with --export).")
    flags.DEFINE_string("scores", None, "Our scores .npz (tools/compute_scores.py).")
    flags.DEFINE_list(
        "classwise_file", None, "A class-wise influence file (or its parts) to take pairs from."
    )
    flags.DEFINE_string("experiment_dir", None, "The experiment (runs; labels from its dataset).")
    flags.DEFINE_float("subset_ratio", None, "Ratio of the runs (classwise; default 0.7).")
    flags.DEFINE_string("labels", None, "An .npz with tr_labels and tt_labels.")
    flags.DEFINE_string("dataset", None, "Data source for the labels (heldout.datasets).")
    flags.DEFINE_string("data_dir", None, "Its data folder.")
    flags.DEFINE_enum(
        "order",
        "tfds",
        ["tfds", "original"],
        "C-score export order: the runs' (tfds) or the original CIFAR order (needs the TFDS "
        "dataset with its `id`).",
    )
    flags.DEFINE_float("min_influence", 0.15, "Pairs: the published influence threshold.")
    flags.DEFINE_float("min_memorization", 0.25, "Pairs: the published memorization threshold.")
    flags.DEFINE_boolean(
        "allow_pickle",
        False,
        "Unpickle object arrays (ImageNet's C-score file: `filenames`; imagenet_index.npz); "
        "unpickling runs code from the file: only for a file you trust.",
    )
    flags.DEFINE_integer(
        "workers",
        None,
        "Threads reading runs (classwise); default none (see heldout.release.reading).",
    )


# ---------------------------------------------------------------------------- inspect


def _describe(path: str) -> str:
    from heldout.published import files as published

    parts = [p for p in path.split("+") if p]
    if len(parts) > 1:
        kind, record = "classwise", published.load_classwise_influence(parts)
    else:
        kind, record = published.describe(path, allow_pickle=FLAGS.allow_pickle)
    if kind == "cscores":
        labels = (
            "no labels"
            if record.labels is None
            else f"labels of {np.unique(record.labels).size} classes"
        )
        names = ", file names" if record.filenames is not None else ""
        defined = record.scores[~np.isnan(record.scores)]
        return (
            f"{path}: C-scores of {len(record)} examples ({labels}{names}); "
            f"{defined.size} defined, range [{defined.min():.4f}, {defined.max():.4f}], "
            f"mean {defined.mean():.4f}"
        )
    if kind == "pairs":
        thresholds = published.thresholds_in_name(path)
        checked = (
            f"; every pair meets the thresholds of its name (influence >= {thresholds[0]:g}, "
            f"memorization >= {thresholds[1]:g})"
            if thresholds
            else ""
        )
        return (
            f"{path}: {len(record)} high-influence pairs over "
            f"{np.unique(record.train_index).size} training and "
            f"{np.unique(record.test_index).size} test examples; influence "
            f"[{record.influence.min():.4f}, {record.influence.max():.4f}], memorization "
            f"[{record.memorization.min():.4f}, {record.memorization.max():.4f}]{checked}"
        )
    entries = sum(block.matrix.size for block in record.blocks.values())
    return (
        f"{path}: class-wise influence of {len(record.blocks)} classes over "
        f"{len(record.train_labels)} training and {len(record.test_labels)} test examples "
        f"({entries} matrix entries); tr_mem defined for "
        f"{int(np.sum(~np.isnan(record.train_memorization)))} training examples"
    )


# ----------------------------------------------------------------------------- labels


def _source():
    from heldout.datasets import get_source, source_for_meta
    from heldout.release import layout as release

    if FLAGS.dataset:
        return get_source(FLAGS.dataset, FLAGS.data_dir)
    if FLAGS.experiment_dir:
        meta = release.open_experiment(FLAGS.experiment_dir).meta
        return source_for_meta(meta, None, FLAGS.data_dir)
    return None


def _labels(splits: Sequence[str]) -> tuple[dict[str, np.ndarray], dict]:
    """Labels of the splits, and what they came from (for the provenance)."""
    from heldout._core.npz import load_npz
    from heldout._core.provenance import file_identity
    from heldout.errors import UsageError

    if FLAGS.labels:
        keys = {"train": "tr_labels", "test": "tt_labels"}
        arrays = load_npz(
            FLAGS.labels,
            keys=[keys[s] for s in splits],
            allow_pickle=FLAGS.allow_pickle,
            what="an .npz with tr_labels and tt_labels",
        )
        return {s: arrays[keys[s]] for s in splits}, {"labels": file_identity(FLAGS.labels)}
    source = _source()
    if source is None:
        raise UsageError("give --labels, --dataset (and --data_dir) or --experiment_dir")
    labels = {s: source.load_arrays(s).labels for s in splits}
    where = None if FLAGS.data_dir is None else os.path.abspath(FLAGS.data_dir)
    return labels, {"dataset": source.name, "data_dir": where}


# ----------------------------------------------------------------------------- export


def _export_cscores() -> str:
    from heldout._core.npz import load_npz
    from heldout._core.provenance import file_identity
    from heldout.errors import ScoresFileError, UsageError
    from heldout.published import files as published

    if not FLAGS.scores:
        raise UsageError("--export=cscores needs --scores")
    scores = load_npz(FLAGS.scores, keys=["cscore"], error=ScoresFileError, what="a scores file")
    cscore = scores["cscore"]
    labels, origin = _labels(["train"])
    labels = labels["train"]
    if len(labels) != len(cscore):
        raise ScoresFileError(
            f"{FLAGS.scores}: {len(cscore)} C-scores but {len(labels)} labels: another dataset?"
        )
    if FLAGS.order == "original":
        from heldout.datasets.order import permute_scores
        from heldout.datasets.tfds_source import TfdsSource, original_to_tfds_mapping

        source = _source()
        if not isinstance(source, TfdsSource):
            raise UsageError("--order=original needs the TFDS dataset (--dataset=cifar10 ...)")
        to_original = original_to_tfds_mapping(source, "train").inverse()
        cscore, labels = permute_scores(cscore, to_original), permute_scores(labels, to_original)
    provenance = published.provenance_for(
        scores=file_identity(FLAGS.scores), key="cscore", order=FLAGS.order, **origin
    )
    published.write_cscores(FLAGS.output, cscore, labels, provenance=provenance)
    defined = int(np.sum(~np.isnan(cscore)))
    return (
        f"wrote C-scores of {len(cscore)} examples ({defined} defined) in {FLAGS.order} order "
        f"to {FLAGS.output}"
    )


def _export_pairs() -> str:
    from heldout._core.npz import load_npz
    from heldout._core.provenance import file_identity
    from heldout.errors import ScoresFileError, UsageError
    from heldout.published import files as published

    thresholds = {"min_influence": FLAGS.min_influence, "min_memorization": FLAGS.min_memorization}
    note = ""
    if FLAGS.classwise_file:
        record = published.load_classwise_influence(FLAGS.classwise_file)
        pairs = record.select_pairs(**thresholds)
        origin = {"classwise_file": [file_identity(p) for p in FLAGS.classwise_file]}
        behind = f"{len(record.blocks)} class blocks"
    elif FLAGS.scores:
        arrays = load_npz(
            FLAGS.scores, keys=["memorization"], error=ScoresFileError, what="a scores file"
        )
        if "influence" in arrays:
            pairs = published.select_pairs_dense(
                arrays["influence"], arrays["memorization"], **thresholds
            )
        elif "influence_topk_index" in arrays:
            pairs, saturated = published.select_pairs_topk(
                arrays["influence_topk_index"],
                arrays["influence_topk_value"],
                arrays["memorization"],
                **thresholds,
            )
            if saturated:
                note = (
                    f"; {saturated} test examples have all k top values above the threshold "
                    "and may have more pairs: recompute with a larger --influence_topk"
                )
        else:
            raise ScoresFileError(f"{FLAGS.scores}: no influence (compute it with --scores=...)")
        runs = int(arrays.get("influence_num_runs", 0))
        origin = {"scores": file_identity(FLAGS.scores), "influence_num_runs": runs}
        behind = f"influence from {runs} runs"
    else:
        raise UsageError("--export=pairs needs --scores or --classwise_file")
    provenance = published.provenance_for(**origin, **thresholds)
    published.write_influence_pairs(FLAGS.output, pairs, provenance)
    return (
        f"wrote {len(pairs)} pairs with influence >= {FLAGS.min_influence:g} and memorization "
        f">= {FLAGS.min_memorization:g} ({behind}) to {FLAGS.output}{note}"
    )


def _export_classwise() -> str:
    from heldout.errors import UsageError
    from heldout.published import files as published
    from heldout.release import layout as release
    from heldout.release.reading import read_runs
    from heldout.scores.classwise import ClasswiseInfluenceAccumulator
    from heldout.scores.request import default_score_ratio, known_split_sizes

    if not FLAGS.experiment_dir:
        raise UsageError("--export=classwise needs --experiment_dir")
    experiment = release.open_experiment(FLAGS.experiment_dir)
    ratio = FLAGS.subset_ratio or default_score_ratio(experiment.subset_ratios)
    runs = experiment.runs_at(ratio)
    if not runs:
        raise UsageError(
            f"{experiment.path}: no runs at subset ratio {ratio}; ratios present: "
            f"{list(experiment.subset_ratios)}"
        )
    labels, origin = _labels(["train", "test"])
    accumulator = ClasswiseInfluenceAccumulator(labels["train"], labels["test"])
    for _, aux in read_runs(
        runs, workers=FLAGS.workers, progress=True, size_check=known_split_sizes(experiment)
    ):
        accumulator.add(aux)
    provenance = published.provenance_for(
        experiment=str(experiment.path.absolute()),
        subset_ratio=ratio,
        num_runs=accumulator.num_runs,
        **origin,
    )
    classes = published.write_classwise_influence(
        FLAGS.output,
        accumulator.blocks(),
        labels["train"],
        labels["test"],
        accumulator.memorization(),
        provenance,
    )
    return (
        f"wrote class-wise influence of {classes} classes ({accumulator.num_train} training, "
        f"{accumulator.num_test} test examples) from {accumulator.num_runs} runs at subset "
        f"ratio {ratio:g} to {FLAGS.output}"
    )


def main(argv: Sequence[str]) -> int:
    del argv
    from heldout.errors import UsageError

    if not FLAGS.inspect and not FLAGS.export:
        raise UsageError("give --inspect FILE[,FILE...] and/or --export FORMAT --output FILE")
    if FLAGS.export and not FLAGS.output:
        raise UsageError("--export needs --output")
    for path in FLAGS.inspect or ():
        print(_describe(path))
    if FLAGS.export:
        exporters = {
            "cscores": _export_cscores,
            "pairs": _export_pairs,
            "classwise": _export_classwise,
        }
        print(exporters[FLAGS.export]())
    return app.EXIT_OK


def run() -> None:
    """The console entry point."""
    define_flags()
    app.run_command(main, name=NAME)
