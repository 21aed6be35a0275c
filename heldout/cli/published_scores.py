"""`heldout published`: the published score files, checked, and ours written in them.

--inspect says what any published file holds (C-scores, pairs, class-wise matrices);
--export writes ours in the same formats (cscores, pairs, classwise), each file with a
`provenance` entry. Labels come from --labels, --dataset/--data_dir or the experiment;
labels of another dataset or order than the scores record are refused (--allow_mismatch).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
from absl import flags

from heldout._core.inputs_outputs import refuse_output_over_inputs
from heldout.cli import app
from heldout.cli import flags as cli_flags
from heldout.cli.flag_types import DEFINE_path_list

FLAGS = flags.FLAGS
NAME = "published_scores"
EXPORTS = ("cscores", "pairs", "classwise")
EXAMPLES = """\
  # what a published file holds (any format; ImageNet's matrix parts joined with "+"):
  heldout published --inspect=cifar100_high_infl_pairs_infl0.15_mem0.25.npz
  # our C-scores as a published C-score file (labels from the experiment's dataset):
  heldout published --export=cscores --scores_file=scores.npz \\
      --experiment_dir=data/cifar10-inception --output=cifar10-cscores-tfds-order.npz
  # high-influence pairs with the published thresholds (0.15, 0.25):
  heldout published --export=pairs --scores_file=infl.npz --output=pairs.npz
  # class-wise influence matrices from the runs, class by class:
  heldout published --export=classwise --experiment_dir=data/imagenet-resnet50 \\
      --labels=imagenet_labels.npz --output=imagenet_infl_matrix.npz"""


def define_flags() -> None:
    """This command's flags (defined when it runs, so importing the module defines none)."""
    cli_flags.define(
        __name__,
        DEFINE_path_list,
        "inspect",
        None,
        "Published (or exported) files to check and describe.",
    )
    flags.DEFINE_enum("export", None, EXPORTS, "Which published format to write.")
    cli_flags.output(__name__, "With --export.")
    cli_flags.scores_file(__name__)
    cli_flags.define(
        __name__,
        DEFINE_path_list,
        "classwise_file",
        None,
        "A class-wise influence file (or its parts) to take pairs from.",
    )
    cli_flags.experiment_dir(__name__, "Its runs, and labels from its dataset.")
    cli_flags.subset_ratio(__name__, "classwise; default 0.7 when present, else the largest.")
    cli_flags.labels(__name__)
    cli_flags.data(__name__, "Default: the experiment's.")
    flags.DEFINE_enum(
        "order",
        "tfds",
        ["tfds", "original"],
        "C-score export order: the runs' (tfds) or the original CIFAR order (needs the TFDS "
        "dataset with its `id`).",
    )
    cli_flags.pair_thresholds(__name__)
    cli_flags.allow_pickle(__name__)
    cli_flags.reader_threads(__name__)
    cli_flags.renamed(__name__, "workers", "reader_threads")
    cli_flags.allow_mismatch(__name__)


# ---------------------------------------------------------------------------- inspect


def _describe(path: str) -> str:
    import heldout.published as published

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


# --------------------------------------------------------------------------- identity


def _labels_identity(order: str | None = None):
    """Which dataset and order the labels come from, before they are read (None: unknown).

    Args:
      order: the order the labels are read in when the source fixes it (`tfds`).
    """
    import dataclasses

    from heldout.published.identity import identity_of_dataset_flag, identity_of_experiment
    from heldout.release import layout as release

    if FLAGS.labels:
        return None
    identity = identity_of_dataset_flag(FLAGS.dataset)
    if identity is None and FLAGS.experiment_dir:
        meta = release.open_experiment(FLAGS.experiment_dir).meta
        identity = identity_of_experiment(meta, FLAGS.experiment_dir)
    if identity is not None and order is not None:
        identity = dataclasses.replace(identity, index_order=order)
    return identity


def _checked_identities(ours, labels) -> dict:
    """Refuses labels of another dataset or order; what the provenance records of it."""
    from heldout.published.identity import check_same_data

    mismatch = check_same_data(ours, labels, FLAGS.allow_mismatch)
    if not FLAGS.allow_mismatch:
        return {}
    if mismatch is not None:
        print(f"--allow_mismatch given: {mismatch}")
    return {"allow_mismatch": True, "mismatch": mismatch}


# ----------------------------------------------------------------------------- export


def _export_cscores() -> str:
    import heldout.published as published
    from heldout._core.npz import load_npz
    from heldout._core.provenance import file_identity, provenance_for
    from heldout.errors import ScoresFileError, UsageError
    from heldout.published.identity import identity_of_scores
    from heldout.scores.file import load_provenance

    if not FLAGS.scores_file:
        raise UsageError("--export=cscores needs --scores_file")
    scores = load_npz(
        FLAGS.scores_file, keys=["cscore"], error=ScoresFileError, what="a scores file"
    )
    cscore = scores["cscore"]
    # --order=original moves TFDS order: the scores must be in it, and the labels are.
    checked = _checked_identities(
        identity_of_scores(scores, FLAGS.scores_file),
        _labels_identity("tfds" if FLAGS.order == "original" else None),
    )
    recorded = load_provenance(scores, FLAGS.scores_file) or {}
    if "experiment" in recorded:  # what the scores are of, for a later comparison
        checked["experiment"] = recorded["experiment"]
    labels, origin = _labels(["train"])
    labels = labels["train"]
    if len(labels) != len(cscore):
        raise ScoresFileError(
            f"{FLAGS.scores_file}: {len(cscore)} C-scores but {len(labels)} labels: "
            "another dataset?"
        )
    if FLAGS.order == "original":
        from heldout.datasets.order import permute_scores
        from heldout.datasets.tfds_source import TfdsSource, original_to_tfds_mapping

        source = _source()
        if not isinstance(source, TfdsSource):
            raise UsageError("--order=original needs the TFDS dataset (--dataset=cifar10 ...)")
        to_original = original_to_tfds_mapping(source, "train").inverse()
        cscore, labels = permute_scores(cscore, to_original), permute_scores(labels, to_original)
    provenance = provenance_for(
        scores=file_identity(FLAGS.scores_file),
        key="cscore",
        order=FLAGS.order,
        **origin,
        **checked,
    )
    published.save_cscores(FLAGS.output, cscore, labels, provenance=provenance)
    defined = int(np.sum(~np.isnan(cscore)))
    return (
        f"wrote C-scores of {len(cscore)} examples ({defined} defined) in {FLAGS.order} order "
        f"to {FLAGS.output}"
    )


def _export_pairs() -> str:
    import heldout.published as published
    from heldout._core.npz import load_npz
    from heldout._core.provenance import file_identity, provenance_for
    from heldout.errors import ScoresFileError, UsageError

    thresholds = {"min_influence": FLAGS.min_influence, "min_memorization": FLAGS.min_memorization}
    note = ""
    if FLAGS.classwise_file:
        record = published.load_classwise_influence(FLAGS.classwise_file)
        pairs = record.select_pairs(**thresholds)
        origin = {"classwise_file": [file_identity(p) for p in FLAGS.classwise_file]}
        behind = f"{len(record.blocks)} class blocks"
    elif FLAGS.scores_file:
        arrays = load_npz(
            FLAGS.scores_file, keys=["memorization"], error=ScoresFileError, what="a scores file"
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
            raise ScoresFileError(
                f"{FLAGS.scores_file}: no influence (compute it with --scores=...)"
            )
        runs = int(arrays.get("influence_num_runs", 0))
        origin = {"scores": file_identity(FLAGS.scores_file), "influence_num_runs": runs}
        behind = f"influence from {runs} runs"
    else:
        raise UsageError("--export=pairs needs --scores_file or --classwise_file")
    provenance = provenance_for(**origin, **thresholds)
    published.save_influence_pairs(FLAGS.output, pairs, provenance)
    return (
        f"wrote {len(pairs)} pairs with influence >= {FLAGS.min_influence:g} and memorization "
        f">= {FLAGS.min_memorization:g} ({behind}) to {FLAGS.output}{note}"
    )


def _export_classwise() -> str:
    import heldout.published as published
    from heldout._core.provenance import provenance_for
    from heldout.errors import UsageError
    from heldout.published.identity import identity_of_dataset_flag, identity_of_experiment
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
    checked = _checked_identities(
        identity_of_experiment(experiment.meta, FLAGS.experiment_dir),
        identity_of_dataset_flag(FLAGS.dataset),
    )
    labels, origin = _labels(["train", "test"])
    accumulator = ClasswiseInfluenceAccumulator(labels["train"], labels["test"])
    for _, aux in read_runs(
        runs, workers=FLAGS.reader_threads, progress=True, size_check=known_split_sizes(experiment)
    ):
        accumulator.add(aux)
    provenance = provenance_for(
        experiment=str(experiment.path.absolute()),
        subset_ratio=ratio,
        num_runs=accumulator.num_runs,
        **origin,
        **checked,
    )
    classes = published.save_classwise_influence(
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
    refuse_output_over_inputs(
        [FLAGS.output],
        [*(FLAGS.inspect or ()), FLAGS.scores_file, *(FLAGS.classwise_file or ()), FLAGS.labels],
        input_trees=[FLAGS.experiment_dir],
        data_dir=FLAGS.data_dir,
        dataset=FLAGS.dataset,
    )
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
    """The `heldout published` command."""
    define_flags()
    app.run_command(main, name=NAME)
