"""Reading releases from a hostile or careless disk: `heldout scores` run as a user runs it.

Every case is real files (copies, symlinks, hard links, crafted zip members) and a real
process: a run counted twice, a run in the wrong ratio, a run that would vanish, a tie
called a majority, and files built to crash or exhaust the reader each end in one line
that names the file, never a traceback or silently changed scores.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from tool_runs import REPO

from heldout.testing.synthetic import SyntheticSpec, write_synthetic_experiment

AUX = "aux_arrays.npz"


def _experiment(folder: Path, num_train=120, ratios=(0.3, 0.7), runs=4, seed=0) -> Path:
    spec = SyntheticSpec(
        num_train=num_train, num_test=30, subset_ratios=ratios, runs_per_ratio=runs, seed=seed
    )
    return write_synthetic_experiment(folder, spec).path


def _command(experiment: Path, *flags: str) -> list[str]:
    return [
        sys.executable,
        str(REPO / "tools" / "compute_scores.py"),
        "--noprogress",
        f"--experiment_dir={experiment}",
        f"--output={experiment.parent / 'scores.npz'}",
        *flags,
    ]


# Root reads files whatever their mode: as root, the command runs without the capabilities
# that bypass permission checks, so a mode-000 file is unreadable to it as to anyone.
_SETPRIV = shutil.which("setpriv")
_NO_OVERRIDE = [_SETPRIV or "setpriv", "--bounding-set=-dac_override,-dac_read_search"]


def _scores(experiment: Path, *flags: str, unprivileged: bool = False) -> tuple[int, str, str]:
    """`heldout scores` on `experiment` in a fresh process: (exit status, stderr, stdout)."""
    command = _command(experiment, *flags)
    if unprivileged and os.geteuid() == 0:
        command = _NO_OVERRIDE + command
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    return done.returncode, done.stderr, done.stdout


# Runs a command and, at its exit, writes its own peak resident memory (VmHWM, KiB) to a
# file. VmHWM belongs to the process's memory since exec; the wait4/getrusage figure would
# start from the parent's resident size at fork, which a long test session inflates.
_PEAK_WRAPPER = """
import atexit, runpy, sys
peak_file, script = sys.argv[1], sys.argv[2]
def _write_peak():
    with open("/proc/self/status") as status:
        peak = next(line.split()[1] for line in status if line.startswith("VmHWM:"))
    with open(peak_file, "w") as out:
        out.write(peak)
atexit.register(_write_peak)
sys.argv = sys.argv[2:]
runpy.run_path(script, run_name="__main__")
"""


def _scores_with_peak_memory(experiment: Path) -> tuple[int, str, int]:
    """As `_scores`, with the command's own peak resident memory in bytes."""
    peak_file = experiment.parent / "peak-kib.txt"
    command = _command(experiment)
    done = subprocess.run(
        [command[0], "-c", _PEAK_WRAPPER, str(peak_file), *command[1:]],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        timeout=300,
    )
    return done.returncode, done.stderr, int(peak_file.read_text()) * 1024


def _refused(code: int, err: str, out: str = "", *named: object) -> str:
    """Asserts one error line, no traceback, naming each of `named`; returns the line."""
    assert code != 0, err
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "error:" in lines[0], err
    for name in named:
        assert str(name) in lines[0], (name, err)
    return lines[0]


# ---------------------------------------------------------------- the same run twice


@pytest.mark.parametrize("how", ["copy", "symlink"])
def test_two_folders_of_one_ratio_are_refused(tmp_path, how):
    experiment = _experiment(tmp_path / "e")
    if how == "copy":
        shutil.copytree(experiment / "0.7", experiment / "0.70")
    else:
        (experiment / "0.70").symlink_to("0.7")
    line = _refused(*_scores(experiment), experiment / "0.7", experiment / "0.70")
    assert "subset ratio 0.7" in line


@pytest.mark.parametrize("alias", ["03", "003"])
def test_two_folders_of_one_run_id_are_refused(tmp_path, alias):
    experiment = _experiment(tmp_path / "e")
    shutil.copytree(experiment / "0.7" / "3", experiment / "0.7" / alias)
    line = _refused(*_scores(experiment), experiment / "0.7" / "3", experiment / "0.7" / alias)
    assert "run 3" in line


def _link_run_folder(experiment: Path) -> tuple[Path, Path]:
    (experiment / "0.7" / "9").symlink_to("2")
    return experiment / "0.7" / "2", experiment / "0.7" / "9"


def _hard_link_file(experiment: Path) -> tuple[Path, Path]:
    (experiment / "0.7" / "9").mkdir()
    os.link(experiment / "0.7" / "2" / AUX, experiment / "0.7" / "9" / AUX)
    return experiment / "0.7" / "2" / AUX, experiment / "0.7" / "9" / AUX


def _symlink_file(experiment: Path) -> tuple[Path, Path]:
    (experiment / "0.3" / "9").mkdir()
    (experiment / "0.3" / "9" / AUX).symlink_to(experiment / "0.3" / "1" / AUX)
    return experiment / "0.3" / "1" / AUX, experiment / "0.3" / "9" / AUX


def _link_ratio_folder(experiment: Path) -> tuple[Path, Path]:
    (experiment / "0.5").symlink_to("0.3")  # another ratio's name, the same runs
    return experiment / "0.3", experiment / "0.5"


@pytest.mark.parametrize(
    "link", [_link_run_folder, _hard_link_file, _symlink_file, _link_ratio_folder]
)
def test_a_run_reached_twice_through_links_is_refused(tmp_path, link):
    experiment = _experiment(tmp_path / "e")
    first, second = link(experiment)
    _refused(*_scores(experiment), first, second)


# ---------------------------------------------------------------- a run in the wrong ratio


def test_a_run_copied_into_another_ratio_is_refused_or_set_aside(tmp_path):
    experiment = _experiment(tmp_path / "e")
    shutil.copytree(experiment / "0.3" / "1", experiment / "0.7" / "9")
    aux = experiment / "0.7" / "9" / AUX
    line = _refused(*_scores(experiment), aux, "subset ratio 0.7")
    assert "36 of 120" in line and "0.3" in line
    code, err, _ = _scores(experiment, "--skip_bad_runs")
    assert code == 0, err
    assert f"skipping bad run: {aux}" in err


def test_paths_with_their_ratios_are_checked_too(tmp_path):
    # As the Dask fan-out reads them: paths, each with the ratio of its folder.
    from heldout.errors import AuxArraysError
    from heldout.release.reading import read_runs

    experiment = _experiment(tmp_path / "e")
    paths = [experiment / "0.3" / "0" / AUX, experiment / "0.7" / "0" / AUX]
    assert len(list(read_runs(paths, ratios=[0.3, 0.7]))) == 2
    with pytest.raises(
        AuxArraysError, match=r"\(fraction 0\.3\), but its folder is subset ratio 0\.7"
    ):
        list(read_runs(paths, ratios=[0.7, 0.7]))


# ---------------------------------------------------------------- runs that vanished


def _missing(run: Path) -> Path:
    (run / AUX).unlink()
    (run / "checkpoints").mkdir()  # a run folder with something in it, but no aux arrays
    return run / AUX


def _a_folder(run: Path) -> Path:
    (run / AUX).unlink()
    (run / AUX).mkdir()
    return run / AUX


def _dangling_link(run: Path) -> Path:
    shutil.rmtree(run)
    run.symlink_to("no-such-run")
    return run / AUX


def _a_fifo(run: Path) -> Path:
    (run / AUX).unlink()
    os.mkfifo(run / AUX)  # opened without care, a read would wait forever
    return run / AUX


def _a_device(run: Path) -> Path:
    (run / AUX).unlink()
    (run / AUX).symlink_to("/dev/zero")  # endless bytes
    return run / AUX


def _unreadable_file(run: Path) -> Path:
    (run / AUX).chmod(0)
    return run / AUX


def _unreadable_folder(run: Path) -> Path:
    run.chmod(0)
    return run / AUX


@pytest.mark.parametrize(
    "damage",
    [_missing, _a_folder, _dangling_link, _a_fifo, _a_device, _unreadable_file, _unreadable_folder],
)
def test_a_run_whose_file_cannot_be_read_is_named_not_dropped(tmp_path, damage):
    unprivileged = damage in (_unreadable_file, _unreadable_folder)
    if unprivileged and os.geteuid() == 0 and _SETPRIV is None:
        pytest.skip("root reads files whatever their mode, and setpriv is missing")
    experiment = _experiment(tmp_path / "e")
    run = experiment / "0.7" / "2"
    try:
        aux = damage(run)
        _refused(*_scores(experiment, unprivileged=unprivileged), aux)
        code, err, out = _scores(experiment, "--skip_bad_runs", unprivileged=unprivileged)
        assert code == 0, err
        assert f"skipping bad run: {aux}" in err  # set aside by name
        assert "skipped bad runs: 1" in out
    finally:
        if not run.is_symlink():
            run.chmod(0o755)


def test_an_empty_run_folder_is_nothing_to_drop(tmp_path):
    experiment = _experiment(tmp_path / "e")
    (experiment / "0.7" / "17").mkdir()
    code, err, _ = _scores(experiment)
    assert code == 0, err


# ---------------------------------------------------------------- a tie is no majority


def test_runs_split_evenly_on_their_sizes_are_an_error_naming_both(tmp_path):
    experiment = _experiment(tmp_path / "e", ratios=(0.7,), runs=2)
    other = _experiment(tmp_path / "other", num_train=100, ratios=(0.7,), runs=2, seed=1)
    for run_id in ("0", "1"):
        shutil.copytree(other / "0.7" / run_id, experiment / "0.7" / str(int(run_id) + 2))
    (experiment / "experiment.json").unlink()  # nothing declares the sizes
    line = _refused(*_scores(experiment, "--skip_bad_runs"), "N=120", "N=100")
    assert "majority" in line and "2 runs" in line
    assert "of 4" not in line


# ---------------------------------------------------------------- files built to hurt


def _npy_header(shape: tuple[int, ...], descr: str = "<i8") -> bytes:
    header = {"descr": descr, "fortran_order": False, "shape": shape}
    return np.lib.format._wrap_header(repr(header), (1, 0))  # magic, length, padded dict


def _replace_member(aux: Path, name: str, write) -> None:
    """Rewrites `aux` with member `name` written by `write(archive)` and the rest kept."""
    with zipfile.ZipFile(aux) as source:
        kept = {info.filename: source.read(info) for info in source.infolist()}
    with zipfile.ZipFile(aux, "w") as archive:
        for member, data in kept.items():
            if member != name:
                archive.writestr(member, data)
        write(archive)


def test_a_header_declaring_a_trillion_elements_is_refused_before_allocating(tmp_path):
    experiment = _experiment(tmp_path / "e")
    aux = experiment / "0.7" / "1" / AUX
    _replace_member(
        aux,
        "index_train.npy",
        lambda archive: archive.writestr("index_train.npy", _npy_header((10**12,)) + bytes(800)),
    )
    line = _refused(*_scores(experiment), aux)
    assert "index_train.npy declares shape (1000000000000,)" in line


def test_a_compressed_member_inflating_far_past_the_split_sizes_is_refused_first(tmp_path):
    experiment = _experiment(tmp_path / "e")
    aux = experiment / "0.7" / "1" / AUX
    declared = 400 << 20  # 400 MiB of zeros in well under 1 MiB

    def bomb(archive):
        info = zipfile.ZipInfo("index_train.npy")
        info.compress_type = zipfile.ZIP_DEFLATED
        with archive.open(info, "w") as member:
            member.write(_npy_header((declared // 8,)))
            chunk = bytes(8 << 20)
            for _ in range(declared // len(chunk)):
                member.write(chunk)

    _replace_member(aux, "index_train.npy", bomb)
    assert aux.stat().st_size < 1 << 20
    code, err, peak = _scores_with_peak_memory(experiment)
    line = _refused(code, err, "", aux)
    assert "index_train.npy declares" in line and "uncompressed" in line
    assert peak < declared // 2, peak  # never inflated


@pytest.mark.parametrize(
    "text, problem",
    [
        ('{"num_train": 1' + "0" * 5000 + "}", "not valid JSON"),
        ('{"extra": ' + "[" * 100_000 + "]" * 100_000 + "}", "levels deep"),
        (" " * (17 << 20), "larger than"),
    ],
)
def test_a_hostile_experiment_json_is_one_line(tmp_path, text, problem):
    experiment = _experiment(tmp_path / "e")
    (experiment / "experiment.json").write_text(text)
    line = _refused(*_scores(experiment), experiment / "experiment.json")
    assert problem in line


def test_an_experiment_json_that_is_a_fifo_is_refused_not_waited_on(tmp_path):
    experiment = _experiment(tmp_path / "e")
    (experiment / "experiment.json").unlink()
    os.mkfifo(experiment / "experiment.json")
    line = _refused(*_scores(experiment), experiment / "experiment.json")
    assert "not a regular file" in line


# ---------------------------------------------------------------- messages that mislead


def test_random_bytes_starting_with_pk_are_not_called_pickles(tmp_path):
    experiment = _experiment(tmp_path / "e")
    aux = experiment / "0.7" / "1" / AUX
    aux.write_bytes(b"PK" + np.random.default_rng(0).bytes(2000))
    line = _refused(*_scores(experiment), aux)
    assert "not a valid .npz (zip) file" in line and "pickled" not in line


def test_an_index_beyond_int64_is_reported_as_it_is(tmp_path):
    experiment = _experiment(tmp_path / "e")
    aux = experiment / "0.7" / "1" / AUX
    with np.load(aux) as npz:
        arrays = dict(npz)
    index = arrays["index_test"].astype(np.uint64)
    index[0] = np.iinfo(np.uint64).max
    arrays["index_test"] = index
    np.savez(aux, **arrays)
    line = _refused(*_scores(experiment), aux)
    assert "18446744073709551615" in line and "range -1" not in line
