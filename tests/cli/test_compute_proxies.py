"""The proxies and the soft C-score as a user runs them, on a slice of real Fashion-MNIST.

One tiny heldout experiment (500 training examples, 4 runs at ratio 0.5, one epoch, with
`--record_heldout_probs`) gives the reference: its compute_scores.py file (with
`--scores=cscore,soft_cscore`) and its runs (split-half reliability, label check). Then
`compute_proxies.py` runs on the first 300 examples for 2 epochs against it. Kept few and
small: each TensorFlow process costs seconds.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from training_slice import write_fashion_slice

from heldout._core.atomic import write_npz_atomic
from heldout._core.npz import load_npz
from heldout.datasets import idx
from heldout.proxies import kde
from heldout.release import layout as release
from heldout.scores.soft_cscore import HELDOUT_PROBS_FILE

REPO = Path(__file__).resolve().parents[2]
NUM_TRAIN, NUM_TEST, PROXY_TRAIN = 500, 100, 300
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")


def _tool(name: str, *args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(REPO / "tools" / f"{name}.py"), *args],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=timeout,
    )


def _train(output_dir: Path, data_dir: str, runs: int, *extra: str):
    done = _tool(
        "train_heldout",
        f"--output_dir={output_dir}",
        f"--data_dir={data_dir}",
        "--subset_ratios=0.5",
        f"--runs_per_ratio={runs}",
        "--epochs=1",
        "--batch_size=50",
        "--val_examples=50",
        "--seed=3",
        *extra,
    )
    assert done.returncode == 0, done.stderr[-2000:]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """(slice folder, experiment folder, scores file) of the reference experiment."""
    work = tmp_path_factory.mktemp("proxies")
    data_dir = write_fashion_slice(work / "slice", NUM_TRAIN, NUM_TEST)
    experiment = work / "exp"
    _train(experiment, data_dir, 4, "--record_heldout_probs")
    scores = work / "scores.npz"
    done = _tool(
        "compute_scores",
        f"--experiment_dir={experiment}",
        f"--output={scores}",
        "--scores=cscore,soft_cscore",
        "--noprogress",
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "soft C-score" in done.stdout
    return work, data_dir, experiment, scores


def test_soft_cscore_is_the_mean_heldout_probability_of_the_label(reference):
    work, data_dir, experiment, scores = reference
    arrays = load_npz(scores)
    labels = idx.load_idx_split(data_dir, "train").labels
    total, count = np.zeros(NUM_TRAIN), np.zeros(NUM_TRAIN, int)
    for run in release.open_experiment(experiment).runs:
        probs = load_npz(run.path / HELDOUT_PROBS_FILE)
        assert probs["probs"].dtype == np.float16 and probs["probs"].shape[1] == 10
        aux_mask = ~np.isin(np.arange(NUM_TRAIN), probs["index"])
        assert aux_mask.sum() == 250  # the held-out half, exactly
        total[probs["index"]] += probs["probs"][:, labels[probs["index"]]].diagonal()
        count[probs["index"]] += 1
    with np.errstate(invalid="ignore"):
        want = total / count
    np.testing.assert_allclose(arrays["soft_cscore"], want, rtol=1e-12)
    np.testing.assert_array_equal(arrays["soft_cscore_count_out"], count)
    # Both are held-out means: the soft and hard C-scores agree in rank, roughly.
    both = count > 0
    assert np.corrcoef(arrays["soft_cscore"][both], arrays["cscore"][both])[0, 1] > 0.5


def test_aux_arrays_are_byte_identical_without_the_flag(reference, tmp_path):
    work, data_dir, experiment, _ = reference
    _train(tmp_path / "plain", data_dir, 1)
    plain = tmp_path / "plain" / "0.5" / "0"
    recorded = experiment / "0.5" / "0"
    assert not (plain / HELDOUT_PROBS_FILE).exists()
    assert (plain / "aux_arrays.npz").read_bytes() == (recorded / "aux_arrays.npz").read_bytes()


def test_soft_cscore_names_the_run_without_probabilities(reference, tmp_path):
    work, data_dir, experiment, _ = reference
    copy = tmp_path / "exp"
    shutil.copytree(experiment, copy)
    (copy / "0.5" / "2" / HELDOUT_PROBS_FILE).unlink()
    output = tmp_path / "s.npz"
    done = _tool(
        "compute_scores",
        f"--experiment_dir={copy}",
        f"--output={output}",
        "--scores=soft_cscore",
        "--noprogress",
    )
    assert done.returncode != 0
    assert str(copy / "0.5" / "2") in done.stderr and "--record_heldout_probs" in done.stderr
    assert not output.exists()


def test_compute_proxies_end_to_end(reference, tmp_path):
    work, data_dir, experiment, scores = reference
    output, figure = tmp_path / "proxies.npz", tmp_path / "proxies.png"
    done = _tool(
        "compute_proxies",
        f"--data_dir={data_dir}",
        f"--num_train={PROXY_TRAIN}",
        "--epochs=2",
        "--batch_size=50",
        "--seed=3",
        f"--output={output}",
        f"--reference={scores}",
        f"--reference_experiment_dir={experiment}",
        f"--figure={figure}",
    )
    assert done.returncode == 0, done.stderr[-3000:]
    arrays = load_npz(output)
    train = idx.load_idx_split(data_dir, "train")
    # --num_train slices: the first 300 examples, in the experiment's order.
    np.testing.assert_array_equal(arrays["index"], np.arange(PROXY_TRAIN))
    np.testing.assert_array_equal(arrays["labels"], train.labels[:PROXY_TRAIN])
    assert set(np.unique(arrays["cbtl"])) <= {0, 1, 2}
    assert arrays["first_learned_epoch"].max() <= 3
    pixels = train.images[:PROXY_TRAIN].reshape(PROXY_TRAIN, -1) / 255.0
    want, h = kde.kde_direct(pixels, train.labels[:PROXY_TRAIN])
    assert float(arrays["kde_bandwidth_input"]) == pytest.approx(h, rel=1e-6)
    np.testing.assert_allclose(arrays["kde_input_pm_label"], want["pm_label"], rtol=1e-4, atol=1e-7)
    reference_cscore = load_npz(scores)["cscore"][:PROXY_TRAIN]
    np.testing.assert_array_equal(arrays["reference"], reference_cscore)
    for name in ("cbtl", "p_label", "kde_hidden_label", "kde_input_unlabeled"):
        assert -1 <= float(arrays[f"spearman_{name}"]) <= 1
        assert -1 <= float(arrays[f"kendall_{name}"]) <= 1
    assert arrays["spearman_by_epoch_cbtl"].shape == (2,)
    assert arrays["spearman_by_epoch_kde_hidden_pm_label"].shape == (2,)
    assert 0 < float(arrays["reference_split_half_rho"]) <= 1
    provenance = json.loads(str(arrays["provenance"]))
    assert provenance["options"]["num_train"] == PROXY_TRAIN
    assert provenance["model_epochs"] == 2
    # The default source, recorded twice: in the provenance and as its own key.
    assert provenance["options"]["proxy_source"] == "training_passes"
    assert str(arrays["proxy_source"]) == "training_passes"
    assert "proxy source training_passes" in done.stdout
    assert "Kendall tau-b" in done.stdout and "split-half reliability" in done.stdout
    assert figure.stat().st_size > 10_000


def _refused(tmp_path, data_dir, reference_file, *needles) -> None:
    output = tmp_path / "out.npz"
    done = _tool(
        "compute_proxies",
        f"--data_dir={data_dir}",
        f"--num_train={PROXY_TRAIN}",
        "--epochs=1",
        f"--output={output}",
        f"--reference={reference_file}",
        timeout=120,
    )
    assert done.returncode == 2, done.stderr[-2000:]
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("compute_proxies: error: "), done.stderr
    assert str(reference_file) in lines[0]
    for needle in needles:
        assert needle in lines[0]
    assert not output.exists()
    assert not list(tmp_path.glob("*.tmp")) and not list(tmp_path.glob(".*tmp*"))


def test_a_reference_of_another_length_is_refused_before_training(reference, tmp_path):
    _, data_dir, _, scores = reference
    short = tmp_path / "short.npz"
    arrays = dict(load_npz(scores))
    arrays["cscore"] = arrays["cscore"][:-1]
    write_npz_atomic(short, arrays)
    _refused(tmp_path, data_dir, short, f"{NUM_TRAIN - 1} C-scores", f"{NUM_TRAIN} examples")


def test_a_reference_in_another_order_is_refused(reference, tmp_path):
    _, data_dir, _, _ = reference
    labels = idx.load_idx_split(data_dir, "train").labels
    order = np.random.default_rng(0).permutation(NUM_TRAIN)
    shuffled = tmp_path / "published.npz"
    write_npz_atomic(shuffled, {"scores": np.linspace(0, 1, NUM_TRAIN), "labels": labels[order]})
    _refused(tmp_path, data_dir, shuffled, "labels disagree", "another order")


def test_a_file_that_is_no_reference_is_refused(reference, tmp_path):
    _, data_dir, _, _ = reference
    other = tmp_path / "other.npz"
    write_npz_atomic(other, {"x": np.zeros(3)})
    _refused(tmp_path, data_dir, other, "cscore")
