"""Commands writing on a careless disk, run as a user runs them: an output name that is not
UTF-8, a full disk (a file-size limit in the child process), a file where the output folder
goes. Each ends in the output written, or in one line naming the file; never a traceback,
never a temporary left behind."""

import os
import resource
import signal
import subprocess
import sys

import numpy as np
import pytest
from tool_runs import TOOLS


def test_scores_written_to_a_name_that_is_not_utf8(scores_experiment, tmp_path):
    output = os.fsdecode(os.fsencode(tmp_path) + b"/scores-\xff.npz")
    done = subprocess.run(  # bytes: stdout names the file as it is
        [
            sys.executable,
            str(TOOLS / "compute_scores.py"),
            "--noprogress",
            f"--experiment_dir={scores_experiment.path}",
            f"--output={output}",
        ],
        capture_output=True,
        timeout=120,
        env={**os.environ, "PYTHONIOENCODING": "utf-8:strict"},  # as in a UTF-8 locale
    )
    assert done.returncode == 0, done.stderr
    assert os.fsencode(output) in done.stdout
    assert os.listdir(os.fsencode(tmp_path)) == [b"scores-\xff.npz"]
    assert np.load(output)["cscore"].shape == (120,)


def _file_size_limit(ignore_sigxfsz: bool):
    def limit():
        if ignore_sigxfsz:  # EFBIG instead of a kill, as on a full disk
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))

    return limit


@pytest.mark.parametrize("ignore_sigxfsz", [True, False], ids=["EFBIG", "SIGXFSZ"])
def test_a_full_disk_names_the_file_and_leaves_no_temporary(
    scores_experiment, tmp_path, ignore_sigxfsz
):
    output = tmp_path / "out" / "scores.npz"
    output.parent.mkdir()
    done = subprocess.run(
        [
            sys.executable,
            str(TOOLS / "compute_scores.py"),
            "--noprogress",
            f"--experiment_dir={scores_experiment.path}",
            f"--output={output}",
        ],
        capture_output=True,
        text=True,
        preexec_fn=_file_size_limit(ignore_sigxfsz),
        timeout=120,
    )
    assert done.returncode == 1, done.stderr
    assert done.stderr.strip().splitlines() == [
        f"compute_scores: error: could not write {output}: file too large (errno 27); "
        "nothing was left behind"
    ]
    assert os.listdir(output.parent) == []


def test_figures_into_a_file_say_it_is_not_a_folder(tmp_path):
    scores = tmp_path / "cscores.npz"
    np.savez(scores, scores=np.linspace(0, 1, 50), labels=np.arange(50) % 10)
    (tmp_path / "blocker").write_text("a file")
    for output_dir in (tmp_path / "blocker", tmp_path / "blocker" / "sub"):
        done = subprocess.run(
            [
                sys.executable,
                str(TOOLS / "analyze_scores.py"),
                f"--scores_file={scores}",
                f"--output_dir={output_dir}",
            ],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 2, done.stderr
        assert done.stderr.strip().splitlines() == [
            f"analyze_scores: error: {tmp_path / 'blocker'} exists and is not a folder"
        ]
    assert (tmp_path / "blocker").read_text() == "a file"
