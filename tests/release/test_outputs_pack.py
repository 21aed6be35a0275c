"""The packed outputs of a ratio: read as the per-run files read, and only while current."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from release.test_outputs_reading import _experiment

from heldout.errors import OutputsError
from heldout.release import layout as release
from heldout.release import outputs_pack
from heldout.release.outputs import OUTPUTS_FILE
from heldout.release.outputs_reading import read_outputs


def _from_pack(monkeypatch) -> list:
    """Records each read the pack answered."""
    answered = []
    original = outputs_pack.read_packed

    def recording(*args):
        result = original(*args)
        answered.append(result is not None)
        return result

    monkeypatch.setattr("heldout.release.outputs_reading.read_packed", recording)
    return answered


@pytest.mark.parametrize("kind", ["logit_margin", "hinge_margin"])
@pytest.mark.parametrize("split", ["train", "test"])
def test_the_pack_reads_what_the_per_run_files_give(tmp_path, monkeypatch, kind, split):
    root, _ = _experiment(tmp_path / "exp", runs=5)
    expected = read_outputs(root, 0.5, kind=kind, split=split)
    folder = outputs_pack.pack_outputs(root, 0.5)
    assert folder == root / "outputs_pack" / "0.5"
    answered = _from_pack(monkeypatch)
    got = read_outputs(root, 0.5, kind=kind, split=split)
    for a, b in zip(got, expected, strict=True):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)
    subset = read_outputs(root, 0.5, kind=kind, split=split, run_ids=[3, 1])
    assert subset[0].tolist() == [3, 1]
    np.testing.assert_array_equal(subset[2], expected[2][[3, 1]])
    np.testing.assert_array_equal(subset[1], expected[1][[3, 1]])
    assert answered == [True, True]


def test_a_changed_file_sends_the_read_back_to_the_checked_per_run_files(tmp_path, monkeypatch):
    root, _ = _experiment(tmp_path / "exp", runs=4)
    outputs_pack.pack_outputs(root, 0.5)
    planted = root / "0.5" / "1" / OUTPUTS_FILE
    shutil.copyfile(root / "0.5" / "2" / OUTPUTS_FILE, planted)  # another run's outputs
    answered = _from_pack(monkeypatch)
    with pytest.raises(OutputsError, match=rf"^{planted}: "):
        read_outputs(root, 0.5)
    assert answered == [False]


def test_a_touched_file_or_a_broken_record_is_not_trusted(tmp_path, monkeypatch):
    root, _ = _experiment(tmp_path / "exp", runs=3)
    folder = outputs_pack.pack_outputs(root, 0.5)
    expected = read_outputs(root, 0.5)
    aux = root / "0.5" / "0" / "aux_arrays.npz"
    os.utime(aux, ns=(1, 1))
    answered = _from_pack(monkeypatch)
    np.testing.assert_array_equal(read_outputs(root, 0.5)[2], expected[2])
    outputs_pack.pack_outputs(root, 0.5)  # packed again: replaces the pack
    (folder / outputs_pack.RECORD_FILE).write_text("{not json")
    np.testing.assert_array_equal(read_outputs(root, 0.5)[2], expected[2])
    assert answered == [False, False]
    left = sorted(p.name for p in folder.parent.iterdir())
    assert left == [outputs_pack.LOCK_FILE, "0.5"]  # no temporaries left (the lock stays)


def test_a_release_pack_goes_under_the_outputs_dir(tmp_path):
    root, _ = _experiment(tmp_path / "exp", runs=2)
    outs = tmp_path / "outs"
    for run_id in (0, 1):
        (outs / "0.5" / str(run_id)).mkdir(parents=True)
        shutil.move(root / "0.5" / str(run_id) / OUTPUTS_FILE, outs / "0.5" / str(run_id))
    folder = outputs_pack.pack_outputs(root, 0.5, outputs_dir=outs)
    assert folder == outs / "outputs_pack" / "0.5"
    assert not (root / "outputs_pack").exists()


def test_a_pack_of_other_arrays_is_not_used(tmp_path, monkeypatch):
    root, _ = _experiment(tmp_path / "exp", runs=3)
    folder = outputs_pack.pack_outputs(root, 0.5)
    expected = read_outputs(root, 0.5)
    np.save(folder / "logit_margin_test.npy", expected[2].astype(np.float64))  # not float32
    answered = _from_pack(monkeypatch)
    got = read_outputs(root, 0.5)
    assert got[2].dtype == np.float32
    np.testing.assert_array_equal(got[2], expected[2])
    assert answered == [False]


def test_update_pack_packs_a_complete_ratio_once_and_again_when_a_run_changed(tmp_path):
    root, _ = _experiment(tmp_path / "exp", runs=3)
    calls = []
    first = outputs_pack.update_pack(root, 0.5, progress=lambda: calls.append(1))
    assert (first.status, first.runs, first.missing, len(calls)) == ("packed", 3, 0, 3)
    assert first.describe().endswith(f"packed 3 runs into {root / 'outputs_pack' / '0.5'}")
    record = first.folder / outputs_pack.RECORD_FILE
    written = record.stat().st_mtime_ns
    again = outputs_pack.update_pack(root, 0.5, progress=lambda: calls.append(1))
    assert (again.status, len(calls)) == ("current", 3)  # kept, not rewritten
    assert record.stat().st_mtime_ns == written
    os.utime(root / "0.5" / "1" / OUTPUTS_FILE, ns=(1, 1))  # the run written again
    assert outputs_pack.update_pack(root, 0.5).status == "packed"
    assert outputs_pack.update_pack(root, 0.5).status == "current"


def test_update_pack_leaves_an_incomplete_ratio_and_a_killed_packers_leftovers(tmp_path):
    root, _ = _experiment(tmp_path / "exp", runs=3)
    planned = outputs_pack.update_pack(root, 0.5, run_ids=[0, 1, 2, 3])  # run 3 not written
    assert (planned.status, planned.runs, planned.missing) == ("incomplete", 4, 1)
    assert "1 of 4 runs have no outputs file" in planned.describe()
    os.remove(root / "0.5" / "2" / OUTPUTS_FILE)
    assert outputs_pack.update_pack(root, 0.5).status == "incomplete"
    assert not (root / "outputs_pack").exists()
    save = root / "0.5" / "2" / OUTPUTS_FILE
    shutil.copyfile(root / "0.5" / "1" / OUTPUTS_FILE, save)  # another run's: refused
    with pytest.raises(OutputsError, match=rf"^{save}: "):
        outputs_pack.update_pack(root, 0.5)
    assert [p.name for p in (root / "outputs_pack").iterdir()] == [outputs_pack.LOCK_FILE]
    leftover = root / "outputs_pack" / ".0.5-killed.tmp"
    leftover.mkdir()
    shutil.copyfile(root / "0.5" / "0" / OUTPUTS_FILE, save)
    with pytest.raises(OutputsError):
        outputs_pack.update_pack(root, 0.5)
    assert not leftover.exists()  # removed under the packers' lock


def test_a_pack_in_the_experiment_root_is_neither_a_ratio_nor_an_experiment(tmp_path):
    root, _ = _experiment(tmp_path / "exp", runs=3)
    assert outputs_pack.update_pack(root, 0.5).status == "packed"
    experiment = release.open_experiment(root)
    assert list(experiment.subset_ratios) == [0.5]
    assert [run.run_id for run in experiment.runs] == [0, 1, 2]
    assert [found.path for found in release.find_experiments(tmp_path)] == [experiment.path]
    assert [found.path for found in release.find_experiments(root)] == [experiment.path]


def test_two_processes_packing_at_once_take_turns(tmp_path):
    root, _ = _experiment(tmp_path / "exp", runs=4)
    code = (
        "import sys; from heldout.release.outputs_pack import update_pack; "
        "print(update_pack(sys.argv[1], 0.5).status)"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    packers = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(root)], stdout=subprocess.PIPE, text=True, env=env
        )
        for _ in range(2)
    ]
    statuses = sorted(packer.communicate(timeout=120)[0].strip() for packer in packers)
    assert [packer.returncode for packer in packers] == [0, 0]
    assert statuses == ["current", "packed"]  # the second found the first's pack current
    assert sorted(p.name for p in (root / "outputs_pack").iterdir()) == [".lock", "0.5"]
    assert outputs_pack.update_pack(root, 0.5).status == "current"
