"""outputs.npz on hostile disks and files: a full disk, a FIFO, a truncated file."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from heldout.errors import OutputsError
from heldout.release.aux_arrays import aux_from_predictions
from heldout.release.outputs import load_outputs, outputs_from_logits, save_outputs


def _arrays(n_train=2000, n_test=500):
    rng = np.random.default_rng(0)
    logits = {"train": rng.normal(size=(n_train, 5)), "test": rng.normal(size=(n_test, 5))}
    labels = {s: rng.integers(0, 5, size=v.shape[0]) for s, v in logits.items()}
    correct = {s: logits[s].argmax(axis=1) == labels[s] for s in logits}
    aux = aux_from_predictions(rng.random(n_train) < 0.5, correct["train"], correct["test"], rng)
    return outputs_from_logits(logits, labels, aux), aux


def _limit():
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG, as on a full disk
    resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))


def test_full_disk_names_the_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "outputs.npz"
    script = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {os.path.dirname(__file__)!r})
        from test_outputs_hostile import _arrays
        from heldout.errors import HeldoutError
        from heldout.release.outputs import save_outputs
        arrays, _ = _arrays()
        try:
            save_outputs({str(target)!r}, arrays, {{"run_id": 0}})
        except HeldoutError as error:
            print(error)
            sys.exit(1)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        preexec_fn=_limit,
        timeout=120,
        env={**os.environ},
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"could not write {target}: file too large" in done.stdout, done.stdout
    assert os.listdir(tmp_path) == []  # neither the file nor a temporary


def test_fifo_in_place_of_outputs_is_refused_without_hanging(tmp_path):
    fifo = tmp_path / "outputs.npz"
    os.mkfifo(fifo)
    with pytest.raises(OutputsError, match=rf"^{fifo}: not a regular file"):
        load_outputs(fifo)


def test_truncated_outputs_is_refused_naming_it(tmp_path):
    arrays, aux = _arrays()
    path = tmp_path / "outputs.npz"
    save_outputs(path, arrays, {})
    os.truncate(path, path.stat().st_size // 2)
    with pytest.raises(OutputsError, match=rf"^{path}: "):
        load_outputs(path, aux=aux)
