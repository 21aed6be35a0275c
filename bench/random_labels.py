"""Measurement: an MLP fits random labels (Zhang et al., 2017) on Fashion-MNIST.

    python bench/random_labels.py --output_dir=/tmp/random-labels [--epochs=1200]

Trains, through the library (`heldout.training`, what `tools/train_heldout.py` runs),
two experiments of one run each at subset ratio 1.0 (every training example, no
augmentation, one hidden layer of 512 units): one on the true labels and one with every
label redrawn uniformly (`--label_corrupt_prob=1.0`). Prints each epoch's line
(`000: Acc-tr: ...`), then for each: the epochs, the wall time, the final training
accuracy (every training example, against the labels it was trained on) and the test
accuracy (all test examples, true labels). Acceptance: with random labels, training
accuracy >= 99% while test accuracy stays within 10 +- 1.5%. Writes both learning curves
(Acc-tr, Acc-val against epoch) in one figure, `<output_dir>/learning_curves.{png,pdf}`,
and the curves' numbers in `<output_dir>/learning_curves.npz`. The experiments stay in
`<output_dir>/true-labels` and `<output_dir>/random-labels` (rerunning resumes: a
finished experiment is not retrained, and its curve is then not available).
"""

from __future__ import annotations

import os
import time

import numpy as np
from absl import app, flags, logging

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

_OUTPUT_DIR = flags.DEFINE_string("output_dir", None, "Folder of both experiments.", required=True)
_DATA_DIR = flags.DEFINE_string("data_dir", None, "IDX folder (default: Debian's Fashion-MNIST).")
# The recipe of the reported run. Batch 512 rather than the heldout default 256: with less
# gradient noise the random labels are fitted faster (on 20 000 examples, 200 epochs:
# 95.8% with 512, 93.2% with 256, 87.0% with 128, 90.5% with 1024; 600 epochs of batch
# 256 on all 60 000 reached only 94.9%).
_EPOCHS = flags.DEFINE_integer("epochs", 1200, "Epochs of both runs.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 512, "Batch size.")
_LEARNING_RATE = flags.DEFINE_float("learning_rate", 0.1, "Peak learning rate.")
_WARMUP = flags.DEFINE_float("warmup_fraction", 0.15, "Linear warm-up fraction of the steps.")
_WEIGHT_DECAY = flags.DEFINE_float("weight_decay", 0.0, "L2 weight decay.")
_MLP_SPEC = flags.DEFINE_list("mlp_spec", ["512"], "Hidden layer sizes.")
_VAL_EXAMPLES = flags.DEFINE_integer("val_examples", 10000, "Test examples behind Acc-val.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed (initialisation, shuffling, random labels).")
_WHICH = flags.DEFINE_enum("which", "both", ["both", "true", "random"], "Experiments to run.")


def train(name: str, label_corrupt_prob: float):
    """Trains one experiment; returns (curve, final RunWritten, wall seconds)."""
    from heldout import training
    from heldout.cli.progress import TrainingProgress
    from heldout.plots.curves import CurveRecorder

    config = training.TrainingConfig(
        data_dir=_DATA_DIR.value,
        subset_ratios=(1.0,),
        runs_per_ratio=1,
        epochs=_EPOCHS.value,
        batch_size=_BATCH_SIZE.value,
        learning_rate=_LEARNING_RATE.value,
        warmup_fraction=_WARMUP.value,
        models_per_step=1,
        label_corrupt_prob=label_corrupt_prob,
        seed=_SEED.value,
        val_examples=_VAL_EXAMPLES.value,
        weight_decay=_WEIGHT_DECAY.value,
        mlp_hidden_sizes=tuple(int(size) for size in _MLP_SPEC.value),
    )
    recorder, written = CurveRecorder(), []
    printer = TrainingProgress(run_lines=True)

    def on_event(event):
        recorder(event)
        printer(event)
        if isinstance(event, training.RunWritten):
            written.append(event)

    start = time.perf_counter()
    with printer:
        training.train_experiment(config, os.path.join(_OUTPUT_DIR.value, name), on_event)
    wall = time.perf_counter() - start
    curve = recorder.curve(name.replace("-", " ")) if recorder.logs else None
    return curve, (written[0] if written else None), wall


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)
    import tensorflow as tf

    from heldout._core.atomic import write_npz_atomic
    from heldout.plots.curves import save_learning_curves

    print(
        f"TensorFlow {tf.__version__}; CPU cores: {os.cpu_count()}; load average "
        f"{os.getloadavg()[0]:.2f}; MLP {','.join(_MLP_SPEC.value)}, {_EPOCHS.value} epochs, "
        f"batch {_BATCH_SIZE.value}, lr {_LEARNING_RATE.value:g}, weight decay "
        f"{_WEIGHT_DECAY.value:g}"
    )
    wanted = {"true": [("true-labels", 0.0)], "random": [("random-labels", 1.0)]}
    runs = wanted.get(_WHICH.value, wanted["true"] + wanted["random"])
    results = {name: train(name, prob) for name, prob in runs}
    curves = []
    print()
    for name, (curve, written, wall) in results.items():
        if written is None:
            print(f"{name}: already trained in {_OUTPUT_DIR.value}/{name}; nothing measured")
            continue
        curves.append(curve)
        print(
            f"{name}: {len(curve.epochs)} epochs in {wall:.0f} s wall "
            f"({curve.seconds.sum():.0f} s training steps, {curve.seconds.mean():.2f} s/epoch); "
            f"final train accuracy {100 * written.train_accuracy:.2f}%, test accuracy "
            f"{100 * written.test_accuracy:.2f}%"
        )
        if name == "random-labels":
            fits = written.train_accuracy >= 0.99
            chance = abs(written.test_accuracy - 0.10) <= 0.015
            print(
                f"acceptance (random labels: train >= 99%, test within 10 +- 1.5%): "
                f"{'met' if fits and chance else 'NOT met'}"
            )
            reached = np.flatnonzero(curve.acc_train >= 0.99)
            if reached.size:
                print(f"running Acc-tr first >= 99% at epoch {int(curve.epochs[reached[0]]):03d}")
    if curves:
        stem = os.path.join(_OUTPUT_DIR.value, "learning_curves")
        title = (
            f"Fashion-MNIST, MLP {','.join(_MLP_SPEC.value)}, subset ratio 1.0 "
            f"(Acc-val: {_VAL_EXAMPLES.value} test examples)"
        )
        for path in save_learning_curves(curves, stem, ("png", "pdf"), title, chance=0.1):
            print(f"wrote {path}")
        arrays = {}
        for curve in curves:
            arrays.update(curve.as_arrays(curve.label.replace(" ", "_")))
        write_npz_atomic(stem + ".npz", arrays)
        print(f"wrote {stem}.npz")


if __name__ == "__main__":
    app.run(main)
