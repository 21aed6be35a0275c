"""outputs.npz: margins against direct numpy formulas, and what loading refuses."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest

from heldout.errors import OutputsError
from heldout.release.aux_arrays import aux_from_predictions
from heldout.release.outputs import (
    load_outputs,
    margins_from_logits,
    outputs_from_logits,
    save_outputs,
)


def _direct(logits, labels):
    """phi and hinge, one example at a time, in Python floats (math.fsum, no tricks)."""
    phi, hinge = [], []
    for row, y in zip(np.asarray(logits, dtype=np.float64), labels, strict=True):
        others = [float(v) for k, v in enumerate(row) if k != y]
        top = max(others)
        phi.append(float(row[y]) - (top + math.log(math.fsum(math.exp(v - top) for v in others))))
        hinge.append(float(row[y]) - top)
    return np.array(phi), np.array(hinge)


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_margins_match_direct_formula(dtype):
    rng = np.random.default_rng(0)
    logits = (rng.normal(size=(300, 7)) * 3).astype(dtype)
    labels = rng.integers(0, 7, size=300)
    phi, hinge = margins_from_logits(logits, labels)
    want_phi, want_hinge = _direct(logits, labels)
    assert phi.dtype == np.float32 and hinge.dtype == np.float32
    np.testing.assert_allclose(phi, want_phi, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(hinge, want_hinge, rtol=1e-6, atol=1e-6)


def test_margins_of_large_logits_do_not_overflow():
    logits32 = np.array([[1e30, 9.9e29, -1e30], [3e38, 3e38, 0.0]], dtype=np.float32)
    phi, hinge = margins_from_logits(logits32, np.array([0, 2]))
    assert np.all(np.isfinite(phi)) and np.all(np.isfinite(hinge))
    want = np.float64(np.float32(1e30)) - np.float64(np.float32(9.9e29))
    np.testing.assert_allclose(phi[0], want, rtol=1e-6)
    # two equal huge others: logsumexp = top + log 2
    np.testing.assert_allclose(phi[1], -np.float64(np.float32(3e38)) - math.log(2), rtol=1e-6)
    logits16 = np.array([[65504, 65000, -65504]], dtype=np.float16)
    phi16, hinge16 = margins_from_logits(logits16, np.array([0]))
    np.testing.assert_allclose(hinge16, [65504 - float(np.float16(65000))])
    np.testing.assert_allclose(phi16, _direct(logits16, [0])[0], rtol=1e-6)


def test_ties_give_zero_hinge_and_minus_log_count():
    logits = np.array([[2.0, 2.0, 2.0], [5.0, 5.0, 1.0]], dtype=np.float32)
    phi, hinge = margins_from_logits(logits, np.array([0, 1]))
    np.testing.assert_array_equal(hinge, [0.0, 0.0])
    np.testing.assert_allclose(phi, [-math.log(2), -math.log(1 + math.exp(-4))], rtol=1e-6)


def test_margins_refuse_bad_shapes_and_labels():
    with pytest.raises(ValueError):
        margins_from_logits(np.zeros((3, 1)), np.zeros(3, dtype=int))
    with pytest.raises(ValueError):
        margins_from_logits(np.zeros((3, 4)), np.array([0, 1, 4]))


def _run(rng, n_train=40, n_test=30, classes=5):
    logits = {
        "train": rng.normal(size=(n_train, classes)).astype(np.float32),
        "test": rng.normal(size=(n_test, classes)).astype(np.float32),
    }
    labels = {s: rng.integers(0, classes, size=v.shape[0]) for s, v in logits.items()}
    correct = {s: logits[s].argmax(axis=1) == labels[s] for s in logits}
    mask = rng.random(n_train) < 0.5
    aux = aux_from_predictions(mask, correct["train"], correct["test"], rng=rng)
    return logits, labels, aux


def test_save_load_round_trip_aligned_with_aux(tmp_path):
    rng = np.random.default_rng(1)
    logits, labels, aux = _run(rng)
    arrays = outputs_from_logits(logits, labels, aux, keep_logits=True)
    path = tmp_path / "outputs.npz"
    identity = {"run_id": 3, "aux_sha256": "ab"}
    save_outputs(path, arrays, identity, labels_source="dataset")
    outputs = load_outputs(path, expect_identity=identity, aux=aux)
    assert outputs.identity == identity and outputs.provenance["labels_source"] == "dataset"
    phi, _ = margins_from_logits(logits["test"], labels["test"])
    np.testing.assert_array_equal(outputs.in_index_order("test"), phi)
    phi_train, hinge_train = margins_from_logits(logits["train"], labels["train"])
    np.testing.assert_array_equal(outputs.in_index_order("train"), phi_train)
    np.testing.assert_array_equal(outputs.in_index_order("train", "hinge_margin"), hinge_train)
    np.testing.assert_array_equal(
        outputs.logits["removed"], logits["train"][aux.index_removed].astype(np.float16)
    )
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".")]  # no temporary left


def test_load_refuses_identity_mismatch_naming_file(tmp_path):
    rng = np.random.default_rng(2)
    logits, labels, aux = _run(rng)
    path = tmp_path / "outputs.npz"
    save_outputs(path, outputs_from_logits(logits, labels, aux), {"run_id": 1})
    with pytest.raises(OutputsError, match=rf"^{path}: from another checkpoint"):
        load_outputs(path, expect_identity={"run_id": 2})


def test_load_refuses_outputs_disagreeing_with_aux_correctness(tmp_path):
    rng = np.random.default_rng(3)
    logits, labels, aux = _run(rng)
    _, _, other = _run(np.random.default_rng(3))  # same indices, same data: agrees
    path = tmp_path / "outputs.npz"
    save_outputs(path, outputs_from_logits(logits, labels, aux), {})
    load_outputs(path, aux=other)
    wrong = {s: np.roll(labels[s], 1) for s in labels}  # another model's view of correctness
    save_outputs(path, outputs_from_logits(logits, wrong, aux), {})
    with pytest.raises(OutputsError, match=rf"^{path}: its hinge margins disagree"):
        load_outputs(path, aux=aux)


def test_load_refuses_file_declaring_more_than_aux_sizes_allow(tmp_path):
    rng = np.random.default_rng(4)
    logits, labels, aux = _run(rng)
    arrays = outputs_from_logits(logits, labels, aux)
    arrays["logit_margin_test"] = np.zeros(10_000_000, dtype=np.float32)
    path = tmp_path / "outputs.npz"
    save_outputs(path, arrays, {})
    with pytest.raises(OutputsError, match=rf"^{path}: .*refused before reading"):
        load_outputs(path, aux=aux)


def test_load_refuses_wrong_dtype_and_missing_provenance(tmp_path):
    rng = np.random.default_rng(5)
    logits, labels, aux = _run(rng)
    arrays = outputs_from_logits(logits, labels, aux)
    path = tmp_path / "outputs.npz"
    np.savez(path, **arrays)
    with pytest.raises(OutputsError, match="no `provenance`"):
        load_outputs(path)
    arrays["hinge_margin_test"] = arrays["hinge_margin_test"].astype(np.float64)
    save_outputs(path, arrays, {})
    with pytest.raises(OutputsError, match="hinge_margin_test must be float32"):
        load_outputs(path)


def test_save_never_writes_through_a_planted_link(tmp_path):
    rng = np.random.default_rng(6)
    logits, labels, aux = _run(rng)
    victim = tmp_path / "victim"
    victim.write_text("keep")
    link = tmp_path / "outputs.npz"
    link.symlink_to(victim)
    save_outputs(link, outputs_from_logits(logits, labels, aux), {})
    assert victim.read_text() == "keep"  # the link was replaced, its target untouched
    assert not link.is_symlink() and load_outputs(link, aux=aux).index["test"].size == 30
