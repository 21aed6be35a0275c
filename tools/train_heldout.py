"""Train heldout models on MNIST-like data and write them in the released layout.

Example (the paper's MNIST settings, on Debian's Fashion-MNIST files):

    python tools/train_heldout.py --output_dir=/tmp/fashion_mnist-mlp \
        --subset_ratios=0.1,0.3,0.5,0.7,0.9 --runs_per_ratio=32 --epochs=20

Re-running the same command skips the runs already written. Each epoch of each group of
models trained together prints one line with the mean training loss, the accuracy on the
epoch's training batches (Acc-tr) and on held-out test examples (Acc-val).
"""

from __future__ import annotations

import os
import sys

from absl import app, flags, logging

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow is imported


_DATASET = flags.DEFINE_enum(
    "dataset", "fashion_mnist", ["fashion_mnist", "mnist"], "Dataset to train on."
)
_DATA_DIR = flags.DEFINE_string(
    "data_dir",
    None,
    "Folder of IDX files, or a prepared TFDS data_dir. Default: Debian's Fashion-MNIST "
    "IDX folder (/usr/share/datasets/fashion-mnist).",
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


def _run_range(run_ids) -> str:
    run_ids = list(run_ids)
    if len(run_ids) > 1 and run_ids == list(range(run_ids[0], run_ids[-1] + 1)):
        return f"runs {run_ids[0]}-{run_ids[-1]}"
    return "run" + ("s " if len(run_ids) > 1 else " ") + ",".join(map(str, run_ids))


def main(argv):
    logging.set_verbosity(logging.WARNING)  # TensorFlow's INFO lines drown the progress
    del argv
    from tqdm import tqdm

    from heldout import training

    try:
        config = training.TrainingConfig(
            dataset=_DATASET.value,
            data_dir=_DATA_DIR.value,
            subset_ratios=tuple(float(r) for r in _SUBSET_RATIOS.value),
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
    except (training.TrainingError, ValueError) as error:
        print(f"train_heldout: {error}", file=sys.stderr)
        return 2

    progress = None

    def on_event(event):
        nonlocal progress
        if isinstance(event, training.TrainingPlan):
            print(
                f"{event.experiment_dir}: {len(event.finished)} runs already written, "
                f"{len(event.pending)} to train"
            )
            progress = tqdm(
                total=len(event.pending) * event.epochs, unit="model-epoch", dynamic_ncols=True
            )
        elif isinstance(event, training.EpochLog):
            progress.update(len(event.run_ids))
            progress.write(
                f"ratio {event.subset_ratio:g} {_run_range(event.run_ids)} epoch "
                f"{event.epoch}/{event.epochs}: loss {event.loss.mean():.4f} "
                f"Acc-tr {event.acc_train.mean():.4f} Acc-val {event.acc_val.mean():.4f} "
                f"({event.seconds:.1f}s)"
            )
        elif isinstance(event, training.RunWritten):
            progress.write(
                f"wrote {event.run.path}: train {event.train_accuracy:.4f}, held-out "
                f"{event.heldout_accuracy:.4f}, test {event.test_accuracy:.4f}"
            )

    try:
        result = training.train_experiment(config, _OUTPUT_DIR.value, on_event=on_event)
    except (training.TrainingError, ValueError) as error:
        print(f"train_heldout: {error}", file=sys.stderr)
        return 2
    finally:
        if progress is not None:
            progress.close()
    print(
        f"{result.experiment_dir}: wrote {len(result.written)} runs, skipped "
        f"{len(result.skipped)} already written"
    )
    return 0


if __name__ == "__main__":
    app.run(main)
