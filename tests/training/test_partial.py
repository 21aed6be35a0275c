"""In-run resumability (heldout.training.partial): a run stopped after epoch k and restarted
is, bit for bit, the run an uninterrupted call writes."""

from __future__ import annotations

import functools
import json

import numpy as np
import pytest
import tensorflow as tf
from training_slice import tiny_conv_config, tiny_npz

from heldout import training
from heldout.training import partial

EPOCHS = 3


class _Stop(Exception):
    """Raised by the event callback: the interruption, injected through a real event."""


_config = functools.partial(
    tiny_conv_config,
    epochs=EPOCHS,
    seed=2,
    augment=True,  # its generator's state is part of what is restored
    weight_decay=5e-4,
    checkpoint_every=1,
)


def _stop_after(epoch: int, seen: list):
    def on_event(event):
        if isinstance(event, training.EpochLog):
            seen.append(event.epoch)
            if event.epoch == epoch:
                raise _Stop

    return on_event


def _assert_same_run(run, reference):
    aux, want = run.load_aux().as_dict(), reference.load_aux().as_dict()
    for key in want:
        np.testing.assert_array_equal(aux[key], want[key], err_msg=key)
    got = tf.train.load_checkpoint(str(run.checkpoint_dir / f"ckpt-{EPOCHS}"))
    ref = tf.train.load_checkpoint(str(reference.checkpoint_dir / f"ckpt-{EPOCHS}"))
    names = ref.get_variable_to_shape_map()
    assert set(got.get_variable_to_shape_map()) == set(names)
    for name in names:
        if name != "_CHECKPOINTABLE_OBJECT_GRAPH":
            np.testing.assert_array_equal(got.get_tensor(name), ref.get_tensor(name), err_msg=name)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("partial")
    path = tiny_npz(folder / "tiny.npz", seed=7)
    # The reference: the same run, never interrupted and never checkpointed mid-way.
    whole = training.train_experiment(_config(path, checkpoint_every=0), folder / "whole")
    return path, whole.written[0]


def test_a_restarted_run_equals_the_uninterrupted_run(tmp_path, data):
    path, reference = data
    out = tmp_path / "exp"
    seen = []
    with pytest.raises(_Stop):
        training.train_experiment(_config(path), out, on_event=_stop_after(2, seen))
    assert seen == [1, 2]
    ratio_dir = out / "0.5"
    # The checkpoint of epoch 2 only (epoch 1's was removed once it was in place), no run.
    assert [p.name for p in ratio_dir.glob(".0.partial*")] == [".0.partial-e2"]
    assert not (ratio_dir / "0").exists()
    state = json.loads((ratio_dir / ".0.partial-e2" / partial.STATE_FILE).read_text())
    assert state["epoch"] == 2 and set(state["rng_states"]) == {"shuffle", "augment"}

    seen = []
    result = training.train_experiment(_config(path), out, on_event=_stop_after(99, seen))
    assert seen == [3], "the restart trained epochs it had already done"
    _assert_same_run(result.written[0], reference)
    assert not list(ratio_dir.glob(".0.partial-*")), "the mid-training checkpoint was kept"


def test_a_checkpoint_of_another_identity_is_not_resumed(tmp_path, data):
    path, reference = data
    out = tmp_path / "exp"
    with pytest.raises(_Stop):
        training.train_experiment(_config(path), out, on_event=_stop_after(1, []))
    state_file = out / "0.5" / ".0.partial-e1" / partial.STATE_FILE
    state = json.loads(state_file.read_text())
    state["identity"]["config"]["seed"] = 99  # as if another experiment's run had left it
    state_file.write_text(json.dumps(state))
    seen = []
    result = training.train_experiment(_config(path), out, on_event=_stop_after(99, seen))
    assert seen == [1, 2, 3], "a foreign checkpoint was resumed from"
    _assert_same_run(result.written[0], reference)
