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
