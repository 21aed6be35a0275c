"""`EpochRecorder` with each proxy source, on hand-made `EpochEnd` events (no training)."""

from __future__ import annotations

import numpy as np
import pytest

from heldout.errors import TrainingError
from heldout.proxies.confidence import softmax_statistics
from heldout.proxies.recording import EpochRecorder
from heldout.training.events import EpochEnd, TrainingPass


def _no_inference(with_features):
    raise AssertionError("training_passes must not run an inference pass without densities")


def test_training_passes_are_recorded_with_unseen_examples_masked():
    rng = np.random.default_rng(0)
    labels = np.array([0, 1, 2, 0, 1])
    recorder = EpochRecorder(labels, 3, source="training_passes")
    passes = []
    for epoch in (1, 2):
        logits = rng.standard_normal((2, 5, 3)).astype(np.float32)
        seen = np.array([[1, 1, 1, 0, 1], [1, 0, 1, 1, 1]], dtype=bool)
        logits[~seen] = np.nan
        passes.append((logits, seen))
        recorder(EpochEnd(0.5, (0, 1), epoch, 2, _no_inference, TrainingPass(logits, seen)))
    recorder.finish()  # the statistics are computed beside the training
    tables, seen_table = recorder.tables, recorder.seen
    assert tables["loss"].shape == (2, 2, 5) and seen_table.shape == (2, 2, 5)
    for e, (logits, seen) in enumerate(passes):
        expected = softmax_statistics(logits, labels)
        np.testing.assert_array_equal(seen_table[:, e], seen)
        np.testing.assert_array_equal(tables["correct"][:, e], expected["correct"] & seen)
        np.testing.assert_array_equal(tables["loss"][:, e][seen], expected["loss"][seen])
        assert np.isnan(tables["p_label"][:, e][~seen]).all()
        # label 0 of an unseen example would be "right" by argmax of NaN: it is not.
        assert not tables["correct"][:, e][~seen].any()


def test_training_passes_without_the_trainers_logits_are_refused():
    recorder = EpochRecorder(np.zeros(3, int), 2, source="training_passes")
    with pytest.raises(TrainingError, match="record_training_passes"):
        recorder(EpochEnd(1.0, (0,), 1, 1, _no_inference))
    with pytest.raises(TrainingError, match="unknown proxy source"):
        EpochRecorder(np.zeros(3, int), 2, source="free")


def test_the_inference_source_runs_the_pass_from_a_snapshot_beside_the_training():
    """The callback returns before the pass ends: the next epoch can train meanwhile."""
    import threading

    labels = np.array([0, 1, 1])
    logits = np.log(np.array([[[0.7, 0.3], [0.4, 0.6], [0.9, 0.1]]], np.float32))
    threads = []

    def snapshot(next_epoch_trained):
        def predict(with_features):
            threads.append(threading.current_thread())
            assert next_epoch_trained.wait(timeout=30), "the pass blocked the training"
            return logits, None

        return lambda: predict

    recorder = EpochRecorder(labels, 2, source="inference")
    for epoch in (1, 2):
        trained = threading.Event()
        recorder(EpochEnd(1.0, (0,), epoch, 2, _no_inference, snapshot=snapshot(trained)))
        trained.set()  # "training" goes on while the pass waits for it
    recorder.finish()
    assert threads and all(t is not threading.main_thread() for t in threads)
    np.testing.assert_array_equal(
        recorder.tables["correct"][0], [[True, True, False], [True, True, False]]
    )
