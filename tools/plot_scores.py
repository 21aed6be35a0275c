"""Draw the figures of a scores file (from tools/compute_scores.py) as PDF and PNG.

Example:
  python tools/plot_scores.py --scores=/tmp/scores.npz \
      --experiment_dir=~/.cache/heldout/experiments/fashion_mnist-mlp --output_dir=/tmp/figs

Writes examples (per class, the 10 highest and 10 lowest C-score training images),
histograms (C-score per subset ratio), cscore_bins (mean C-score per bin of integral
C-score against subset ratio) and, when the scores hold influence, influence (test images
with their most influential training images). The images come from the experiment's
recorded dataset (with its corrupted labels, if it was trained on any), or from --dataset
and --data_dir.
"""

from __future__ import annotations

import sys

from absl import app, flags

_SCORES = flags.DEFINE_string("scores", None, "The scores .npz file.", required=True)
_EXPERIMENT_DIR = flags.DEFINE_string(
    "experiment_dir",
    None,
    "The experiment the scores come from: its dataset, data_dir and label corruption are "
    "used to load the images and labels.",
)
_DATASET = flags.DEFINE_string(
    "dataset", None, "Data source name (heldout.datasets), overriding the experiment's."
)
_DATA_DIR = flags.DEFINE_string("data_dir", None, "Data folder, overriding the experiment's.")
_OUTPUT_DIR = flags.DEFINE_string("output_dir", None, "Where to write the figures.", required=True)
_FORMATS = flags.DEFINE_list("formats", ["pdf", "png"], "File formats to write.")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    from heldout import label_noise, plots, release
    from heldout.datasets import DatasetError, get_source

    try:
        scores = plots.load_scores(_SCORES.value)
        if _EXPERIMENT_DIR.value:
            experiment = release.open_experiment(_EXPERIMENT_DIR.value)
            source = label_noise.experiment_source(experiment, _DATASET.value, _DATA_DIR.value)
        elif _DATASET.value:
            source = get_source(_DATASET.value, _DATA_DIR.value)
        else:
            raise app.UsageError("give --experiment_dir, or --dataset (and --data_dir)")
        train = source.load_arrays("train")
        test = source.load_arrays("test") if "test" in source.splits else None
        written = plots.write_figures(
            scores,
            train.images,
            train.labels,
            _OUTPUT_DIR.value,
            test_images=None if test is None else test.images,
            test_labels=None if test is None else test.labels,
            class_names=plots.class_names_for(source.name, source.num_classes),
            formats=_FORMATS.value,
        )
    except (ValueError, DatasetError) as error:  # ScoresFileError, layout, label records
        sys.exit(f"plot_scores: {error}")
    for path in written:
        print(path)


if __name__ == "__main__":
    app.run(main)
