"""The adversarial suite (`bench/adversary.py --quick`) as part of the tests: every hostile
input it builds must end refused in one line or correctly done, never in a traceback, a
wrong result, data lost, a hang or a crash. Run in its own process, as a user runs it.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
FAILURES = ("traceback", "wrong", "lost", "hang", "crash")


def _totals(stdout: str) -> dict[str, int]:
    """The counts of the `totals:` line of the suite's report."""
    line = next(x for x in stdout.splitlines() if x.startswith("totals: "))
    return {name: int(count) for name, count in re.findall(r"(\w+) (\d+)", line)}


@pytest.mark.slow
def test_quick_adversarial_suite_has_no_failures():
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / "adversary.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )
    assert "totals: " in done.stdout, done.stdout + done.stderr
    totals = _totals(done.stdout)
    assert totals["refused"] + totals["ok"] > 0, done.stdout
    failed = {name: totals[name] for name in FAILURES if totals[name]}
    assert not failed, f"{failed}\n{done.stdout}"
    assert done.returncode == 0, done.stdout + done.stderr


# The classifier itself: a lenient change to it would hide every failure above.


def _classify(code, stderr, changed=(), **attempt):
    sys.path.insert(0, str(REPO))
    from bench._adversary_base import EITHER, Attempt
    from bench.adversary import classify

    attempt.setdefault("expect", EITHER if attempt.pop("either", False) else frozenset({"refused"}))
    stdout = attempt.pop("stdout", "")
    made = Attempt(klass="k", case="c", tool="t", args=[], **attempt)
    return classify(made, code, stderr, list(changed), stdout)[0]


@pytest.mark.parametrize(
    "code, stderr, changed, attempt, outcome",
    [
        (2, "scores: error: /x/aux_arrays.npz: is a folder\n", (), {}, "refused"),
        (1, "50%|###\rdownload: error: /x/a.tar.gz: MD5 mismatch\n", (), {}, "refused"),
        (1, "Traceback (most recent call last):\n  ...\nValueError: x\n", (), {}, "traceback"),
        (0, "", (), {}, "wrong"),
        (0, "", (), {"either": True}, "ok"),
        (0, "", (), {"either": True, "check": lambda: "differs"}, "wrong"),
        (2, "scores: error: /x: bad\n", ("victim.txt",), {}, "lost"),
        (None, "", (), {}, "hang"),
        (-11, "", (), {}, "crash"),
        (2, "Compute Failed\nscores: error: /x: bad\n", (), {}, "wrong"),
        (2, "scores: error: something is wrong\n", (), {}, "wrong"),
        (2, "scores: error: /x: [Errno 17] File exists\n", (), {"forbid": r"\[Errno"}, "wrong"),
        (2, "train: error: /x: no checkpoint\n", (), {"needle": "learning_rate"}, "wrong"),
        (2, "train: error: /x/learning_rate: bad\n", (), {"needle": "learning_rate"}, "wrong"),
        (
            2,
            "train: error: --learning_rate=nan: not finite\n",
            (),
            {"needle": "learning_rate"},
            "refused",
        ),
        (2, "scores: error: [Errno 27] File too large\n", (), {"names": "s.npz"}, "wrong"),
        (
            2,
            "scores: error: /x/s.npz: [Errno 27] File too large\n",
            (),
            {"names": "s.npz"},
            "refused",
        ),
        (1, "download: error: 1 members refused (see above)\n", (), {}, "wrong"),
        (
            1,
            "download: error: 1 members refused (see above)\n",
            (),
            {"stdout": "REFUSED:     't/sparse': a sparse file\n", "needle": "sparse"},
            "refused",
        ),
    ],
)
def test_the_classifier_names_each_outcome(code, stderr, changed, attempt, outcome):
    assert _classify(code, stderr, changed, **attempt) == outcome
