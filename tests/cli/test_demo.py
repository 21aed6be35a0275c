"""demo.py end to end on a tiny experiment: train briefly, export a run, cross-check it.

The experiment (48 training + 16 test images, 32x32, SmallInception trained for a few
steps) is built once; each test works on its own copy.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
import tiny_release
from tool_runs import run_main

from heldout import models
from heldout.cli import demo
from heldout.release import layout as release
from heldout.release.aux_arrays import load_aux_arrays, save_aux_arrays

REPO = Path(__file__).resolve().parents[2]
BATCH = 16
RATIO = 0.5


def _train_briefly(model, images, labels, steps=3, lr=0.05):
    models.ensure_variables(model)
    opt_vars = model.trainable_variables
    for step in range(steps):
        sl = slice((step * BATCH) % len(images), (step * BATCH) % len(images) + BATCH)
        x = tf.constant(images[sl], tf.float32) / 255.0
        with tf.GradientTape() as tape:
            logits = model(x, is_training=True)
            loss = tf.reduce_mean(
                tf.nn.sparse_softmax_cross_entropy_with_logits(labels[sl], logits)
            )
        for var, grad in zip(opt_vars, tape.gradient(loss, opt_vars), strict=True):
            var.assign_sub(lr * grad)
    return steps


@pytest.fixture(scope="module")
def tiny_experiment(tmp_path_factory):
    """<root>/tiny-inception/0.5/0 with a checkpoint, and the .npz data it was built from."""
    root = tmp_path_factory.mktemp("release")
    rng = np.random.default_rng(0)
    data_path, splits = tiny_release.random_npz_data(root, (32, 32, 3), 48, 16, rng)
    train_mask = np.zeros(48, bool)
    train_mask[rng.permutation(48)[:24]] = True
    model = models.build_model("small_inception", 10)
    steps = _train_briefly(
        model, splits["train"].images[train_mask], splits["train"].labels[train_mask]
    )
    experiment_dir = root / "tiny-inception"
    tiny_release.write_npz_meta(experiment_dir, "small_inception", (32, 32, 3), data_path)
    run = tiny_release.export_run(
        experiment_dir,
        RATIO,
        0,
        model,
        data_path,
        train_mask,
        epoch=1,
        global_step=steps,
        rng=np.random.default_rng(1),
        batch_size=BATCH,
    )
    return experiment_dir, run, data_path


@pytest.fixture()
def experiment(tiny_experiment, tmp_path):
    experiment_dir, run, data_path = tiny_experiment
    copy = tmp_path / experiment_dir.name
    shutil.copytree(experiment_dir, copy)
    return copy, copy / run.path.relative_to(experiment_dir), data_path


def run_demo(args, capsys) -> tuple[int, str, str]:
    """demo.py's main in-process; returns (exit status, stdout, stderr)."""
    return run_main(demo, "demo.py", args, capsys)


def test_cli_cross_checks_n_out_of_n(tiny_experiment):
    """The acceptance path, as a user runs it: a subprocess, default flags otherwise."""
    _, run, _ = tiny_experiment
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.run(
        [sys.executable, str(REPO / "demo.py"), f"--model_dir={run.path}", f"--batch_size={BATCH}"],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "checkpoint ckpt-1: epoch 1, global step 3" in out
    assert "subset ratio 0.5: trained on 50% of the training set (24 of 48 examples" in out
    assert "train (trained on): 24 out of 24 predictions match" in out
    assert "removed (held out): 24 out of 24 predictions match" in out
    assert "test: 16 out of 16 predictions match" in out
    assert "\n  64 out of 64 predictions match" in out
    assert "accuracy: train split " in out and ", test split " in out


def test_experiment_dir_and_split_flags(experiment, capsys):
    experiment_dir, _, _ = experiment
    code, out, _ = run_demo(
        [
            f"--experiment_dir={experiment_dir}",
            f"--subset_ratio={RATIO}",
            "--run_id=0",
            "--split=test",
            f"--batch_size={BATCH}",
        ],
        capsys,
    )
    assert code == 0
    assert "test: 16 out of 16 predictions match" in out
    assert "removed" not in out


def test_dataset_flags_override_the_experiment(experiment, capsys):
    _, run_dir, data_path = experiment
    code, out, _ = run_demo(
        [
            f"--model_dir={run_dir}",
            "--dataset=npz",
            f"--data_dir={data_path}",
            "--split=train",
            f"--batch_size={BATCH}",
        ],
        capsys,
    )
    assert code == 0 and "48 out of 48 predictions match" in out


def test_mismatch_exits_1_unless_min_match(experiment, capsys):
    _, run_dir, _ = experiment
    aux = load_aux_arrays(run_dir / "aux_arrays.npz")
    flipped = aux.correctness_test.copy()
    flipped[0] ^= True
    save_aux_arrays(
        run_dir / "aux_arrays.npz",
        type(aux)(**{**aux.as_dict(), "correctness_test": flipped}),
    )
    args = [f"--model_dir={run_dir}", "--split=test", f"--batch_size={BATCH}"]
    code, out, err = run_demo(args, capsys)
    assert code == 1
    assert "test: 15 out of 16 predictions match" in out
    assert f"mismatching test indices: {aux.index_test[0]}" in out
    assert "MISMATCH: 1 of 16" in err
    code, out, _ = run_demo([*args, "--min_match=0.9"], capsys)
    assert code == 0 and "at least --min_match=0.9" in out


@pytest.mark.parametrize(
    "flags,expected",
    [
        (["--arch=resnet50"], "checkpoint looks like small_inception with 10 classes"),
        (["--arch=mlp"], "build it with arch='small_inception'"),
        (["--num_classes=100"], "checkpoint has 10 classes, model built with 100"),
    ],
)
def test_wrong_model_is_a_clear_error(experiment, capsys, flags, expected):
    _, run_dir, _ = experiment
    code, _, err = run_demo([f"--model_dir={run_dir}", *flags], capsys)
    assert code == 2
    assert expected in err


def test_missing_checkpoint(experiment, capsys):
    _, run_dir, _ = experiment
    for f in (run_dir / "checkpoints").iterdir():
        f.unlink()
    code, _, err = run_demo([f"--model_dir={run_dir}"], capsys)
    assert code == 2
    assert f"{run_dir}/checkpoints: no checkpoint (ckpt-*.index)" in err


def test_run_folder_without_checkpoints_folder(experiment, capsys):
    experiment_dir, run_dir, _ = experiment
    shutil.rmtree(run_dir / "checkpoints")  # only aux_arrays.npz: valid for scoring only
    code, _, err = run_demo([f"--model_dir={run_dir}"], capsys)
    assert code == 2
    assert f"{run_dir}: no checkpoint (ckpt-*.index) and no checkpoints/ subfolder" in err
    code, _, err = run_demo([f"--experiment_dir={experiment_dir}"], capsys)
    assert code == 2
    assert f"{experiment_dir}: no run has a checkpoints/ folder to restore" in err


@pytest.mark.parametrize(
    "flags, expected",
    [
        (["--subset_ratio=0.42"], "no run with a checkpoint at subset ratio 0.42"),
        (["--subset_ratio=0.42", "--run_id=0"], "no run 0 at subset ratio 0.42"),
        (["--max_runs=0"], "--max_runs must be at least 1, got 0"),
    ],
)
def test_bad_run_choice_is_a_usage_error(experiment, capsys, flags, expected):
    experiment_dir, _, _ = experiment
    code, out, err = run_demo([f"--experiment_dir={experiment_dir}", *flags], capsys)
    assert code == 2
    assert expected in err and "predictions match" not in out


def test_duplicate_checkpoints(experiment, capsys):
    _, run_dir, _ = experiment
    folder = run_dir / "checkpoints"
    for f in list(folder.iterdir()):
        shutil.copy(f, folder / f.name.replace("ckpt-1", "ckpt-7"))
    code, _, err = run_demo([f"--model_dir={run_dir}"], capsys)
    assert code == 2
    assert "2 checkpoints (ckpt-1, ckpt-7)" in err


def test_truncated_checkpoint(experiment, capsys):
    _, run_dir, _ = experiment
    data = next((run_dir / "checkpoints").glob("ckpt-1.data-*"))
    os.truncate(data, data.stat().st_size // 2)
    code, _, err = run_demo([f"--model_dir={run_dir}"], capsys)
    assert code == 2
    assert "truncated or corrupt" in err and "ckpt-1" in err


def test_no_flags_without_default_experiment(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("HELDOUT_HOME", str(tmp_path / "home"))
    code, _, err = run_demo([], capsys)
    assert code == 2
    assert "default experiment has not been built" in err
    assert "--model_dir" in err


def test_no_flags_uses_the_default_experiment(experiment, capsys, monkeypatch, tmp_path):
    experiment_dir, _, _ = experiment
    default = release.default_experiment_dir()
    monkeypatch.setenv("HELDOUT_HOME", str(tmp_path / "home"))
    target = release.default_experiment_dir()
    assert target.name == default.name
    target.parent.mkdir(parents=True)
    shutil.copytree(experiment_dir, target)
    code, out, _ = run_demo([f"--batch_size={BATCH}"], capsys)
    assert code == 0, out
    assert f"Using the default experiment {target}" in out
    assert "64 out of 64 predictions match" in out


def test_expected_errors_are_one_line_and_bugs_keep_their_traceback(
    experiment, capsys, monkeypatch
):
    """Issue 13: demo.py caught every ValueError, so internal bugs printed as user errors."""
    _, run_dir, _ = experiment
    for f in (run_dir / "checkpoints").iterdir():
        f.unlink()
    code, _, err = run_demo([f"--model_dir={run_dir}"], capsys)
    assert code == 2
    assert err == (
        f"demo.py: error: {run_dir}/checkpoints: no checkpoint (ckpt-*.index) "
        "(the folder is empty)\n"
    )
    code, _, err = run_demo([f"--model_dir={run_dir}", "--min_match=1.5"], capsys)
    assert (code, err) == (2, "demo.py: error: --min_match must be a fraction in [0, 1], got 1.5\n")

    from heldout.evaluation import evaluate as evaluation

    def buggy_check_run(*args, **kwargs):
        raise ValueError("an internal bug")

    monkeypatch.setattr(evaluation, "check_run", buggy_check_run)  # fault injection
    with pytest.raises(ValueError, match="an internal bug"):
        run_demo([f"--model_dir={run_dir}"], capsys)


def test_demo_and_evaluate_runs_share_one_definition_of_their_flags():
    """Issue 13: both commands defined the same eight flags and the same --min_match rule."""
    from absl import flags

    from heldout.cli import evaluate_runs, options
    from heldout.cli import flags as cli_flags

    shared = ["dataset", "data_dir", "split", "batch_size", "arch", "num_classes", "min_match"]
    for name in shared:
        # defined once, by the shared definer (`define` in flag_types, called from flags.py)
        assert flags.FLAGS.find_module_defining_flag(name) == "heldout.cli.flag_types", name
        assert getattr(cli_flags, "evaluation", None) is not None
    for command in (demo, evaluate_runs):  # listed by each command's --help
        key = {flag.name for flag in flags.FLAGS.get_key_flags_for_module(command.__name__)}
        assert set(shared) <= key, command.__name__
    assert options.match_verdict(9, 10, min_match=0.9).status == 0
    assert options.match_verdict(10, 10, failed_runs=1, min_match=0.0).status == 1
    assert options.match_verdict(0, 0, min_match=0.0).status == 1
