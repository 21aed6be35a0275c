"""A `--reference` no proxy can be measured against is refused before any training: one
that holds no defined C-score (all NaN: `heldout proxies` trained fully, then printed NaN
correlations) or a value no C-score can take (an infinity, 1.5)."""

from __future__ import annotations

import numpy as np
import pytest
from tool_runs import run_script
from training_slice import write_fashion_slice

from heldout.datasets import idx

NUM_TRAIN, NUM_TEST, PROXY_TRAIN = 300, 50, 200


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return write_fashion_slice(tmp_path_factory.mktemp("proxies") / "slice", NUM_TRAIN, NUM_TEST)


def _refused(tmp_path, data_dir, reference, *needles) -> None:
    output = tmp_path / "out.npz"
    done = run_script(
        "tools/compute_proxies.py",
        f"--data_dir={data_dir}",
        f"--num_train={PROXY_TRAIN}",
        "--epochs=1",
        f"--output={output}",
        f"--reference={reference}",
        timeout=600,
    )
    assert done.returncode == 2, done.stderr[-2000:]
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("compute_proxies: error: "), done.stderr
    for needle in (str(reference), *needles):
        assert needle in lines[0], lines[0]
    assert "epoch" not in done.stdout + done.stderr  # refused before any training
    assert not output.exists()


def test_a_scores_reference_with_no_defined_cscore_is_refused(data_dir, tmp_path):
    reference = tmp_path / "scores.npz"
    np.savez(reference, cscore=np.full(NUM_TRAIN, np.nan))
    _refused(tmp_path, data_dir, reference, f"0 of the {PROXY_TRAIN} C-scores used are defined")


def test_a_reference_defined_only_beyond_the_examples_used_is_refused(data_dir, tmp_path):
    cscore = np.full(NUM_TRAIN, np.nan)
    cscore[PROXY_TRAIN:] = 0.5
    reference = tmp_path / "scores.npz"
    np.savez(reference, cscore=cscore)
    _refused(tmp_path, data_dir, reference, "0 of the 200")


def test_a_published_reference_of_nan_is_refused(data_dir, tmp_path):
    labels = idx.load_idx_split(data_dir, "train").labels
    reference = tmp_path / "published.npz"
    np.savez(reference, scores=np.full(NUM_TRAIN, np.nan), labels=labels)
    _refused(tmp_path, data_dir, reference, "no defined C-score")


@pytest.mark.parametrize("value", [np.inf, 1.5])
def test_a_reference_with_an_impossible_cscore_is_refused(data_dir, tmp_path, value):
    cscore = np.linspace(0, 1, NUM_TRAIN)
    cscore[9] = value
    reference = tmp_path / "scores.npz"
    np.savez(reference, cscore=cscore)
    _refused(tmp_path, data_dir, reference, "cscore", "[9]")
