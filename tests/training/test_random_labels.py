"""Random labels (issue 11): subset ratio 1.0, label_corrupt_prob 1.0, weight decay, MLP spec.

One tiny experiment on a slice of Debian's Fashion-MNIST is trained the way the
random-labels acceptance run is (every example trained on, every label random, one
hidden layer, weight decay), then validated, scored, re-evaluated by demo.py and resumed.
The rest are pure functions (label drawing, the log line, the record, the figure).
"""

from __future__ import annotations

import dataclasses
import functools
import re

import numpy as np
import pytest
from tool_runs import assert_demo_matches_all, run_script
from training_slice import small_config, write_fashion_slice

from heldout import training
from heldout.datasets import relabeled
from heldout.release import label_corruption
from heldout.release import layout as release
from heldout.training import plan, record

NUM_TRAIN, NUM_TEST = 600, 200
EPOCH_LINE = re.compile(
    r"^\d{3}: Acc-tr: [ \d]{3}\.\d\d, Acc-val: [ \d]{2,3}\.\d\d, L-tr: \d+\.\d{4}, "
    r"L-val: \d+\.\d{4}$"
)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> str:
    return write_fashion_slice(tmp_path_factory.mktemp("slice"), NUM_TRAIN, NUM_TEST)


# The acceptance run's recipe: every example trained on, every label random, one hidden
# layer, weight decay.
RANDOM_LABELS = dict(
    subset_ratios=(1.0,), label_corrupt_prob=1.0, weight_decay=1e-4, mlp_hidden_sizes=(64,)
)
_config = functools.partial(small_config, epochs=2, models_per_step=2, **RANDOM_LABELS)


@pytest.fixture(scope="module")
def random_labels(tmp_path_factory, data_dir):
    """The trained experiment, its events, and what the progress printer printed."""
    from heldout.cli.progress import TrainingProgress

    out = tmp_path_factory.mktemp("exp") / "fashion-random-labels"
    events, lines = [], []
    printer = TrainingProgress()
    printer._print = lines.append  # the lines, without the tqdm bar around them

    def on_event(event):
        events.append(event)
        printer(event)

    result = training.train_experiment(_config(data_dir), out, on_event=on_event)
    printer.close()
    return out, result, events, lines


# ------------------------------------------------------------------ subset ratio 1.0


def test_ratio_one_experiment_validates_with_empty_removed_arrays(random_labels):
    out, result, _, _ = random_labels
    assert len(result.written) == 2
    assert (out / "1.0" / "0" / release.AUX_ARRAYS_FILE).is_file()
    experiment = release.open_experiment(out)
    assert experiment.subset_ratios == (1.0,)
    for run in experiment.runs:
        aux = run.load_aux()  # validates
        assert aux.index_removed.size == 0 and aux.correctness_removed.size == 0
        assert (aux.num_train, aux.num_test) == (NUM_TRAIN, NUM_TEST)
        np.testing.assert_array_equal(np.sort(aux.index_train), np.arange(NUM_TRAIN))


def test_ratio_one_scores_are_nan_not_zero(random_labels):
    from heldout.scores import experiment as scores
    from heldout.scores.request import ScoreRequest

    out, _, _, _ = random_labels
    arrays = scores.score_experiment(
        release.open_experiment(out), ScoreRequest(scores=("cscore", "memorization"))
    ).arrays()
    # No run held any example out: no C-score and no memorization estimate exist.
    assert arrays["cscore"].shape == (NUM_TRAIN,) and np.isnan(arrays["cscore"]).all()
    assert np.isnan(arrays["memorization"]).all()
    assert not arrays["memorization_count_out"].any()
    assert (arrays["memorization_count_in"] == 2).all()
    assert float(arrays["score_subset_ratio"]) == 1.0


def test_ratio_one_demo_cross_checks_n_out_of_n(random_labels):
    """demo.py rebuilds the one-hidden-layer MLP from the record and matches every prediction."""
    out, _, _, _ = random_labels
    completed = run_script(
        "demo.py", f"--experiment_dir={out}", "--subset_ratio=1.0", "--run_id=1", timeout=180
    )
    assert_demo_matches_all(completed, NUM_TRAIN + NUM_TEST)


# ------------------------------------------------------------ label_corrupt_prob 1.0


def test_every_label_is_redrawn_uniformly_at_prob_one():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, 200_000)
    corruption = label_corruption.corrupt_labels(labels, 1.0, 10, plan.corruption_rng(1))
    trained_on = corruption.apply(labels)
    # Independent of the original label: every (original, new) pair about equally often,
    # including new == original (a "different class" rule would leave that diagonal empty).
    table = np.zeros((10, 10))
    np.add.at(table, (labels, trained_on), 1)
    expected = labels.size / 100
    assert np.abs(table - expected).max() < 5 * np.sqrt(expected)
    assert (trained_on == labels).mean() == pytest.approx(0.1, abs=0.005)
    # The record lists exactly the changed labels, so it stays a valid corruption record.
    np.testing.assert_array_equal(corruption.indices, np.flatnonzero(trained_on != labels))
    assert np.all(corruption.new_labels != corruption.original_labels)


def test_prob_below_one_draws_exactly_as_before():
    """Experiments trained before prob 1 was allowed get the same corrupted labels."""
    labels = np.arange(1000) % 10
    corruption = label_corruption.corrupt_labels(labels, 0.3, 10, np.random.default_rng(0))
    assert corruption.num_corrupted == 300
    # Values drawn by the code as first written (git 9496c58).
    assert corruption.indices[:6].tolist() == [1, 3, 6, 11, 13, 14]
    assert corruption.new_labels[:6].tolist() == [9, 9, 5, 7, 9, 9]
    assert (int(corruption.indices.sum()), int(corruption.new_labels.sum())) == (153960, 1371)


def test_the_experiment_trains_on_random_labels(random_labels, data_dir):
    from heldout.datasets import idx

    out, _, _, _ = random_labels
    clean = idx.load_idx_split(data_dir, "train").labels
    expected = label_corruption.corrupt_labels(clean, 1.0, 10, plan.corruption_rng(7))
    recorded = label_corruption.experiment_label_corruption(release.open_experiment(out))
    np.testing.assert_array_equal(recorded.indices, expected.indices)
    np.testing.assert_array_equal(recorded.new_labels, expected.new_labels)
    trained_on = relabeled.experiment_labels(out, clean)
    assert 0.04 < (trained_on == clean).mean() < 0.17  # about 1/10 keep their label by chance


# ------------------------------------------------ weight decay and MLP spec, recorded


def test_weight_decay_and_mlp_spec_are_recorded(random_labels):
    out, _, _, _ = random_labels
    meta = release.open_experiment(out).meta
    assert meta.arch == "mlp:64"
    assert meta.extra["training"]["weight_decay"] == 1e-4
    assert meta.extra["training"]["mlp_hidden_sizes"] == [64]
    assert meta.extra["training"]["label_corrupt_prob"] == 1.0


def test_resume_trains_nothing_and_refuses_other_decay_or_spec(random_labels, data_dir):
    out, _, _, _ = random_labels
    again = training.train_experiment(_config(data_dir), out)
    assert not again.written and len(again.skipped) == 2
    with pytest.raises(training.TrainingError, match="weight_decay: recorded 0.0001, asked 0.001"):
        training.train_experiment(_config(data_dir, weight_decay=1e-3), out)
    with pytest.raises(training.TrainingError, match=r"mlp_hidden_sizes: recorded \[64\]"):
        training.train_experiment(_config(data_dir, mlp_hidden_sizes=(512,)), out)


def test_a_record_older_than_the_new_fields_still_resumes(tmp_path):
    """Experiments recorded before weight_decay / mlp_hidden_sizes existed used 0 / (512, 256)."""
    config = training.TrainingConfig(data_dir=str(tmp_path))
    old = {
        k: v for k, v in config.defining().items() if k not in ("weight_decay", "mlp_hidden_sizes")
    }
    meta = release.ExperimentMeta(
        name="old", arch="mlp", num_classes=10, dataset="fashion_mnist_idx",
        index_order="idx", image_shape=(28, 28, 1), extra={"training": old},
    )  # fmt: skip
    release.write_experiment_meta(tmp_path, meta)
    assert record.check_existing(tmp_path, config, "fashion_mnist_idx") is not None
    with pytest.raises(training.TrainingError, match="weight_decay: recorded 0.0"):
        record.check_existing(
            tmp_path, dataclasses.replace(config, weight_decay=0.1), "fashion_mnist_idx"
        )


def test_config_refuses_bad_values():
    for bad, match in (
        (dict(label_corrupt_prob=1.01), "label_corrupt_prob"),
        (dict(weight_decay=-1.0), "weight_decay"),
        (dict(weight_decay=float("nan")), "weight_decay"),
        (dict(mlp_hidden_sizes=()), "mlp_hidden_sizes"),
        (dict(mlp_hidden_sizes=(0,)), "mlp_hidden_sizes"),
        (dict(arch="small_inception", mlp_hidden_sizes=(64,)), "arch mlp only"),
    ):
        with pytest.raises(training.TrainingError, match=match):
            training.TrainingConfig(**bad)


def test_recorded_arch_names_the_model_that_is_built():
    """TrainingConfig.model_arch and heldout.models agree (it is written without importing them)."""
    from heldout.models import build_model, canonical_arch, ensure_variables
    from heldout.models.naming import mlp_arch, mlp_hidden_sizes

    for sizes in ((512, 256), (512,), (1024, 512, 128)):
        arch = training.TrainingConfig(mlp_hidden_sizes=sizes).model_arch
        assert arch == mlp_arch(sizes) == canonical_arch(arch)
        assert mlp_hidden_sizes(arch) == sizes
    assert training.TrainingConfig().model_arch == "mlp"  # existing experiments unchanged
    assert canonical_arch("MLP:512, 256") == "mlp"
    model = build_model("mlp:32", 10)
    ensure_variables(model)
    assert [v.name for v in model.trainable_variables] == [
        "mlp/hidden1/b:0", "mlp/hidden1/w:0", "mlp/logits/b:0", "mlp/logits/w:0",
    ]  # fmt: skip
    from heldout.errors import ModelError

    with pytest.raises(ModelError, match="mlp:<hidden sizes>"):
        canonical_arch("mlp:")


# ------------------------------------------------------------------- the log line


def test_epoch_line_has_the_published_format():
    from heldout.cli.progress import epoch_line

    log = training.EpochLog(
        subset_ratio=1.0, run_ids=(0, 1), epoch=1, epochs=20,
        loss=np.array([1.1574, 1.1574]), acc_train=np.array([0.5849, 0.5849]),
        acc_val=np.array([0.5692, 0.5692]), val_loss=np.array([1.1857, 1.1857]), seconds=1.0,
    )  # fmt: skip
    assert epoch_line(log) == "000: Acc-tr:  58.49, Acc-val: 56.92, L-tr: 1.1574, L-val: 1.1857"
    done = dataclasses.replace(log, epoch=12, acc_train=np.array([1.0]), acc_val=np.array([0.1]))
    assert epoch_line(done).startswith("011: Acc-tr: 100.00, Acc-val: 10.00, ")


def test_training_prints_one_heading_and_a_line_per_epoch(random_labels):
    _, _, _, lines = random_labels
    assert "ratio 1 runs 0-1: 2 epochs (means of 2 models)" in lines
    epoch_lines = [line for line in lines if EPOCH_LINE.match(line)]
    assert [line[:4] for line in epoch_lines] == ["000:", "001:"]


# ------------------------------------------------------------------ the figure


def test_learning_curves_figure_shows_both_curves(random_labels, tmp_path):
    from heldout.plots import curves

    _, _, events, _ = random_labels
    recorder = curves.CurveRecorder()
    for event in events:
        recorder(event)
    random_curve = recorder.curve("random labels")
    assert random_curve.epochs.tolist() == [0, 1]
    logs = [e for e in events if isinstance(e, training.EpochLog)]
    assert random_curve.acc_train[1] == pytest.approx(logs[1].acc_train.mean())
    true_curve = dataclasses.replace(
        random_curve, label="true labels", acc_val=np.array([0.5, 0.8])
    )
    figure = curves.learning_curve_figure([true_curve, random_curve], chance=0.1)
    (axes,) = figure.axes
    drawn = {line.get_label(): line.get_ydata() for line in axes.get_lines()}
    assert set(drawn) == {
        "true labels: Acc-tr", "true labels: Acc-val",
        "random labels: Acc-tr", "random labels: Acc-val", "chance",
    }  # fmt: skip
    np.testing.assert_allclose(drawn["chance"], [10.0, 10.0])
    np.testing.assert_allclose(drawn["true labels: Acc-val"], [50.0, 80.0])
    np.testing.assert_allclose(drawn["random labels: Acc-tr"], 100 * random_curve.acc_train)
    (png,) = curves.save_learning_curves([true_curve, random_curve], tmp_path / "c", ("png",))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(tmp_path.glob(".*.tmp"))


# ----------------------------------------------------------------- command line


def test_train_heldout_refuses_bad_spec_and_probability(tmp_path):
    for flag, needle in (
        ("--mlp_spec=512,x", "--mlp_spec must be comma-separated positive layer sizes"),
        ("--label_corrupt_prob=1.5", "--label_corrupt_prob must be in [0, 1]"),
    ):
        completed = run_script(
            "tools/train_heldout.py", f"--output_dir={tmp_path / 'exp'}", flag, timeout=120
        )
        assert completed.returncode == 2, completed.stderr
        (line,) = completed.stderr.strip().splitlines()
        assert line.startswith("train_heldout: error: ") and needle in line, line
    assert not (tmp_path / "exp").exists()
