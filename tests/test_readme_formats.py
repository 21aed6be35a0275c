"""The table of score-file keys in docs/formats.md says what `compute_scores` really writes."""

import re
from pathlib import Path

import numpy as np

from heldout.scores import experiment as scores
from heldout.scores.request import SCORE_NAMES, ScoreRequest
from heldout.testing.synthetic import SyntheticSpec, write_synthetic_experiment

FORMATS = Path(__file__).resolve().parents[1] / "docs" / "formats.md"


def _table_rows() -> dict[str, str]:
    """key -> the dtype column text, from the scores table of docs/formats.md."""
    text = FORMATS.read_text()
    section = text[text.index("**Scores**") :]
    section = section[: section.index("\n\n", section.index("| key |"))]
    rows = {}
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) < 3 or not cells[0].startswith("`"):
            continue
        for key in re.findall(r"`([a-z_]+)`", cells[0]):
            rows[key] = cells[1]
    return rows


def test_every_written_key_is_in_the_table_with_its_dtype(tmp_path):
    spec = SyntheticSpec(num_train=40, num_test=8, subset_ratios=(0.3, 0.7), runs_per_ratio=3)
    experiment = write_synthetic_experiment(tmp_path / "e", spec)
    rows = _table_rows()
    written = {}
    for topk in (0, 2):
        result = scores.score_experiment(
            experiment, ScoreRequest(scores=SCORE_NAMES, influence_topk=topk, confidence=0.95)
        )
        written.update(result.arrays())
    assert sorted(written) == sorted(rows)
    for key, value in written.items():
        value = np.asarray(value)
        if value.dtype.kind in "US":
            assert "str" in rows[key], key
            continue
        dtypes = re.findall(r"(?:int|float)\d+", rows[key])
        assert str(value.dtype) in dtypes, (key, value.dtype, rows[key])
