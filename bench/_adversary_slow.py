"""The slow adversarial classes, left out of `--quick`: training (TensorFlow) on hostile
flags, links, folders and a full disk, and commands whose background work (numba, Dask)
must end cleanly on an error.
"""

from __future__ import annotations

import os
import sys

import numpy as np

from bench._adversary_base import (
    EITHER,
    REPO,
    SCORES,
    Attempt,
    Base,
    scores_attempt,
)


def cases_training(base: Base, quick: bool) -> list[Attempt]:
    """Non-finite rates, a lock link, a file as output folder, a full disk (TensorFlow: slow)."""
    sys.path.insert(0, str(REPO / "tests"))
    from training_slice import tiny_npz

    data = tiny_npz(base.path("training/tiny.npz"))
    common = [
        "--dataset=npz",
        f"--data_dir={data}",
        "--arch=mlp",
        "--subset_ratios=0.5",
        "--runs_per_ratio=1",
        "--epochs=1",
        "--batch_size=16",
        "--val_examples=8",
    ]

    def train(name: str, *extra: str, **kw) -> Attempt:
        out = base.root / "training" / name
        return Attempt(
            klass="training",
            tool="train_heldout",
            args=[f"--output_dir={out}", *common, *extra],
            timeout=180,
            **kw,
        )

    truncated = base.root / "training" / "truncated"
    base.run_tool("train_heldout", f"--output_dir={truncated}", *common)
    (checkpoint,) = truncated.glob("0.5/0/checkpoints/ckpt-*.data-*")
    os.truncate(checkpoint, 100)

    def retrained() -> str | None:
        kept = [
            p for p in truncated.glob("0.5/0/checkpoints/ckpt-*.data-*") if p.stat().st_size == 100
        ]
        return "exit 0 with the truncated checkpoint kept as a finished run" if kept else None

    lock = base.folder("training/lock")
    os.symlink(base.victim, lock / ".training.lock")
    blocker = base.path("training/a_file")
    blocker.write_bytes(b"not a folder\n")
    labels = np.load(data)["y_train"]  # the dataset's: only the NaN values are wrong
    reference = base.npz("training/all_nan.npz", scores=np.full(labels.size, np.nan), labels=labels)
    proxies = Attempt(
        klass="training",
        case="proxies, all-NaN --reference",
        tool="compute_proxies",
        args=[
            *common[:3],
            "--epochs=1",
            "--batch_size=16",
            f"--reference={reference}",
            f"--output={base.root}/training/p.npz",
        ],
        needle=r"reference|nan|finite|defined",
        timeout=180,
    )
    return [
        train("nan", "--learning_rate=nan", case="--learning_rate=nan", needle="learning_rate"),
        train("inf", "--learning_rate=inf", case="--learning_rate=inf", needle="learning_rate"),
        train("lock", case="lock link to a victim", keep=[base.victim]),
        train(
            "truncated",
            case="a finished run's checkpoint truncated",
            expect=EITHER,
            check=retrained,
        ),
        Attempt(
            klass="training",
            case="output folder is a file",
            tool="train_heldout",
            args=[f"--output_dir={blocker}", *common],
            keep=[blocker],
            forbid=r"File exists",
        ),
        train("full", case="full disk while training", fsize=64 << 10),
        proxies,
    ]


def cases_workers(base: Base, quick: bool) -> list[Attempt]:
    """Commands with background work (numba warm-up, a Dask cluster) that end in an error:
    the process must exit cleanly, repeatedly, with one line."""
    bad = base.copy("workers/exp")
    (bad / "0.7" / "3" / "aux_arrays.npz").write_bytes(b"PK\x03\x04" + bytes(4000))
    output = base.root / "workers" / "s.npz"
    popcount = [
        scores_attempt(
            base,
            bad,
            output,
            SCORES,
            "--backend=popcount",
            klass="workers",
            case="popcount, bad run",
        )
        for _ in range(30)  # the crash at exit came in about 7 % of such runs
    ]
    dask = scores_attempt(
        base,
        bad,
        output,
        "--scheduler=local",
        "--dask_workers=1",
        klass="workers",
        case="Dask local, bad run",
        timeout=120,
    )
    return [*popcount, dask]
