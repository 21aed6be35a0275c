"""`train_heldout`: train heldout models on MNIST-like data, written in the released layout.

Flags are defined here (the command is `tools/train_heldout.py`, or the `heldout-train`
entry point, both calling `run()`). Re-running the same command skips the runs already
written; several commands may train into one `--output_dir` at once (e.g. one per
`--subset_ratios`).
"""

from __future__ import annotations

from collections.abc import Sequence

from absl import flags, logging

from heldout.cli import app
from heldout.errors import UsageError

_DATASET = flags.DEFINE_enum(
    "dataset", "fashion_mnist", ["fashion_mnist", "mnist"], "Dataset to train on."
)
_DATA_DIR = flags.DEFINE_string(
    "data_dir",
    None,
    "Folder of IDX files, or a prepared TFDS data_dir. Default: Debian's Fashion-MNIST "
    "IDX folder (/usr/share/datasets/fashion-mnist). Recorded as an absolute path.",
)
_OUTPUT_DIR = flags.DEFINE_string(
    "output_dir", None, "The experiment folder to write.", required=True
)
_SUBSET_RATIOS = flags.DEFINE_list(
    "subset_ratios", ["0.1", "0.3", "0.5", "0.7", "0.9"], "Comma-separated subset ratios."
)
_RUNS_PER_RATIO = flags.DEFINE_integer("runs_per_ratio", 16, "Runs per subset ratio.")
_EPOCHS = flags.DEFINE_integer("epochs", 20, "Training epochs (paper: 20 for MNIST).")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 256, "Batch size (paper: 256).")
_LEARNING_RATE = flags.DEFINE_float("learning_rate", 0.1, "Base learning rate (paper: 0.1).")
_MODELS_PER_STEP = flags.DEFINE_integer(
    "models_per_step", 32, "MLPs trained simultaneously (speed only; results do not change)."
)
_LABEL_CORRUPT_PROB = flags.DEFINE_float(
    "label_corrupt_prob",
    0.0,
    "Fraction of training labels replaced by a random other label, once for the whole "
    "experiment (recorded in <output_dir>/label_corruption.npz).",
)
_SEED = flags.DEFINE_integer("seed", 0, "Seed of subsets, initialisations and shuffling.")
_ARCH = flags.DEFINE_enum(
    "arch",
    "mlp",
    ["mlp", "small_inception"],
    "Model: mlp (trained stacked) or small_inception (one at a time).",
)
_VAL_EXAMPLES = flags.DEFINE_integer(
    "val_examples", 1000, "Test examples behind the per-epoch Acc-val."
)
_COMPUTE_DTYPE = flags.DEFINE_enum(
    "compute_dtype",
    "float32",
    ["float32", "bfloat16"],
    "dtype of the MLP's matrix products (bfloat16: faster on CPUs with AVX512-BF16).",
)


def _subset_ratios(values: Sequence[str]) -> tuple[float, ...]:
    try:
        return tuple(float(value) for value in values)
    except ValueError:
        raise UsageError(
            f"--subset_ratios must be comma-separated numbers in (0, 1], got {','.join(values)}"
        ) from None


def main(argv: Sequence[str]) -> int:
    """Trains the experiment the flags describe; 0 when done (errors: `app.guarded`)."""
    del argv
    logging.set_verbosity(logging.WARNING)  # TensorFlow's INFO lines drown the progress
    from heldout import training
    from heldout.cli.progress import TrainingProgress

    config = training.TrainingConfig(
        dataset=_DATASET.value,
        data_dir=_DATA_DIR.value,
        subset_ratios=_subset_ratios(_SUBSET_RATIOS.value),
        runs_per_ratio=_RUNS_PER_RATIO.value,
        epochs=_EPOCHS.value,
        batch_size=_BATCH_SIZE.value,
        learning_rate=_LEARNING_RATE.value,
        models_per_step=_MODELS_PER_STEP.value,
        label_corrupt_prob=_LABEL_CORRUPT_PROB.value,
        seed=_SEED.value,
        arch=_ARCH.value,
        val_examples=_VAL_EXAMPLES.value,
        compute_dtype=_COMPUTE_DTYPE.value,
    )
    with TrainingProgress() as progress:
        result = training.train_experiment(config, _OUTPUT_DIR.value, on_event=progress)
    line = (
        f"{result.experiment_dir}: wrote {len(result.written)} runs, skipped "
        f"{len(result.skipped)} already written"
    )
    if result.set_aside:
        line += f", set aside {len(result.set_aside)} unfinished run folders"
    if result.busy:
        line += f"; {len(result.busy)} runs left to another process training them"
    print(line)
    return app.EXIT_OK


def run() -> None:
    """The `train_heldout` command (tools/train_heldout.py, `heldout-train`)."""
    app.run_command(main, name="train_heldout")
