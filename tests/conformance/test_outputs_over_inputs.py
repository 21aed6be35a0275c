"""No command writes over one of its inputs: the same path, a hard link to the same
inode, a symbolic link to it, or a file inside an input experiment's run folders. Each
command is run as a user runs it, in its own process, on a small synthetic experiment;
the refusal comes before any work, in one line naming both files, and the input is
left byte for byte as it was."""

import hashlib
import os

import numpy as np
import pytest
from tool_runs import run_script, run_tool

from heldout._core.inputs_outputs import refuse_output_over_inputs
from heldout.errors import OutputOverInputError


def _digest(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def _refused(done, output, input_path):
    """Exit 2 and one line on stderr naming both."""
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2, done.stdout + done.stderr
    assert len(lines) == 1, done.stderr
    assert str(output) in lines[0] and str(input_path) in lines[0], lines[0]
    assert "refusing to write" in lines[0]


def test_scores_into_a_run_folder_is_refused(scores_experiment):
    aux = scores_experiment.path / "0.7" / "1" / "aux_arrays.npz"
    before = _digest(aux)
    done = run_tool(
        "compute_scores", f"--experiment_dir={scores_experiment.path}", f"--output={aux}"
    )
    _refused(done, aux, scores_experiment.path / "0.7")
    assert _digest(aux) == before


def test_scores_over_a_hard_link_to_a_run_file_is_refused(scores_experiment, tmp_path):
    aux = scores_experiment.path / "0.7" / "1" / "aux_arrays.npz"
    before = _digest(aux)
    linked = tmp_path / "scores.npz"
    os.link(aux, linked)
    done = run_tool(
        "compute_scores", f"--experiment_dir={scores_experiment.path}", f"--output={linked}"
    )
    _refused(done, linked, aux)
    assert _digest(aux) == before and os.path.samefile(aux, linked)


def test_scores_beside_experiment_json_are_still_written(scores_experiment_copy):
    output = scores_experiment_copy.path / "scores.npz"
    done = run_tool(
        "compute_scores", f"--experiment_dir={scores_experiment_copy.path}", f"--output={output}"
    )
    assert done.returncode == 0, done.stderr
    assert output.is_file()


@pytest.fixture
def cscores_file(tmp_path):
    path = tmp_path / "cscores.npz"
    np.savez(path, scores=np.linspace(0, 1, 50), labels=np.arange(50) % 10)
    return path


@pytest.mark.parametrize("how", ["same", "hard link"])
def test_map_order_over_its_scores_file_is_refused(cscores_file, tmp_path, how):
    output = cscores_file
    if how == "hard link":
        output = tmp_path / "mapped.npz"
        os.link(cscores_file, output)
    before = _digest(cscores_file)
    done = run_script(
        "tools/map_order.py",
        f"--scores_file={cscores_file}",
        "--dataset=cifar10",
        f"--data_dir={tmp_path / 'tfds'}",
        f"--output={output}",
    )
    _refused(done, output, cscores_file)
    assert _digest(cscores_file) == before


def test_table_through_a_symbolic_link_to_its_scores_file_is_refused(cscores_file, tmp_path):
    output = tmp_path / "table.csv"
    output.symlink_to(cscores_file)
    before = _digest(cscores_file)
    done = run_script("tools/table.py", f"--scores_file={cscores_file}", f"--output={output}")
    _refused(done, output, cscores_file)
    assert _digest(cscores_file) == before


def test_the_helper_compares_paths_that_do_not_exist_yet(tmp_path):
    refuse_output_over_inputs([tmp_path / "new.npz"], [tmp_path / "old.npz"], [tmp_path / "d"])
    with pytest.raises(OutputOverInputError, match="lies inside the input folder"):
        refuse_output_over_inputs([tmp_path / "d" / "x" / "new.npz"], [], [tmp_path / "d"])
    with pytest.raises(OutputOverInputError, match="is the input"):
        refuse_output_over_inputs([tmp_path / "a" / ".." / "f.npz"], [tmp_path / "f.npz"])


def test_a_data_folder_protects_the_dataset_not_its_neighbours(tmp_path):
    (tmp_path / "cifar10" / "3.0.2").mkdir(parents=True)
    (tmp_path / "scores.npz").write_bytes(b"last time's output")
    data = {"data_dir": tmp_path, "dataset": "cifar10"}
    refuse_output_over_inputs([tmp_path / "scores.npz", tmp_path / "figures"], **data)
    with pytest.raises(OutputOverInputError, match="lies inside the input folder"):
        refuse_output_over_inputs([tmp_path / "cifar10" / "3.0.2" / "x.npz"], **data)
    with pytest.raises(OutputOverInputError, match="is the input"):
        refuse_output_over_inputs([tmp_path], **data)
