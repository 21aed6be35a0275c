"""train_heldout's flags: the papers' CIFAR recipe by default for CIFAR, flags given win."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

_PROBE = """
import dataclasses, json, sys
from absl import flags
from heldout.cli import train_heldout
flags.FLAGS(["train_heldout", "--output_dir=unused", *sys.argv[1:]])
print(json.dumps(dataclasses.asdict(train_heldout.config_from_flags())))
"""


def _config(*argv: str) -> dict:
    completed = subprocess.run(
        [sys.executable, "-c", _PROBE, *argv], capture_output=True, text=True, timeout=120
    )
    assert completed.returncode == 0, completed.stderr
    return json.loads(completed.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(
    "argv, expected",
    [
        ((), {"arch": "mlp", "epochs": 20, "batch_size": 256, "augment": False}),
        (
            ("--dataset=cifar10",),
            {
                "arch": "small_inception",
                "epochs": 80,
                "batch_size": 512,
                "learning_rate": 0.4,
                "augment": True,
                "lr_schedule": "linear",
            },
        ),
        (
            ("--dataset=cifar100", "--epochs=3", "--noaugment", "--lr_schedule=step"),
            {"arch": "small_inception", "epochs": 3, "augment": False, "lr_schedule": "step"},
        ),
        (
            (
                "--dataset=npz",
                "--data_dir=x.npz",
                "--arch=resnet50",
                "--augment",
                "--checkpoint_every=2",
            ),
            {"arch": "resnet50", "epochs": 20, "augment": True, "checkpoint_every": 2},
        ),
    ],
)
def test_recipe_defaults_and_flags(argv, expected):
    config = _config(*argv)
    assert {key: config[key] for key in expected} == expected
