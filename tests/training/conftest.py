"""Fixtures the trainer's resume and trust tests share: one small experiment, trained once
per module, and a private copy of it per test (which the test may damage)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from training_slice import small_config, write_fashion_slice

from heldout.training import train_experiment

# A module that trains on other data defines its own `data_dir`, which takes precedence.
NUM_TRAIN, NUM_TEST = 600, 200


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> str:
    return write_fashion_slice(tmp_path_factory.mktemp("slice"), NUM_TRAIN, NUM_TEST)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, data_dir) -> Path:
    """Two runs of `small_config`, trained once per module."""
    out = tmp_path_factory.mktemp("trained") / "exp"
    assert len(train_experiment(small_config(data_dir), out).written) == 2
    return out


@pytest.fixture
def experiment(trained, tmp_path) -> Path:
    """A private copy of the trained experiment."""
    copy = tmp_path / "exp"
    shutil.copytree(trained, copy)
    return copy
