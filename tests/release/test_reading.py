"""Parallel reading of many runs: order, bounded memory, cross-run checks, bad runs."""

import subprocess
import sys
import threading
import time
import zipfile

import numpy as np
import pytest

from heldout.release import layout as release
from heldout.release import reading
from heldout.release.aux_arrays import AuxArraysError, aux_from_predictions, load_aux_arrays
from heldout.release.reading import InconsistentRunError, SplitSizeCheck, read_runs
from heldout.testing.synthetic import SyntheticSpec, write_synthetic_experiment


@pytest.fixture(scope="module")
def experiment(tmp_path_factory):
    spec = SyntheticSpec(num_train=40, num_test=10, subset_ratios=(0.5,), runs_per_ratio=12)
    return write_synthetic_experiment(tmp_path_factory.mktemp("read") / "exp", spec)


def _write_sized_run(experiment_dir, run_id, num_train, num_test, ratio=0.5):
    rng = np.random.default_rng(run_id)
    aux = aux_from_predictions(
        rng.random(num_train) < 0.5,
        rng.random(num_train) < 0.5,
        rng.random(num_test) < 0.5,
        rng=rng,
    )
    return release.write_run(experiment_dir, ratio, run_id, aux)


def _copy_experiment(experiment, destination):
    import shutil

    shutil.copytree(experiment.path, destination)
    return release.open_experiment(destination)


@pytest.mark.parametrize("workers", [None, 1, 4])
def test_runs_come_back_in_the_order_given_with_their_arrays(experiment, workers):
    runs = list(reversed(experiment.runs))
    got = list(read_runs(runs, workers=workers, max_in_flight=3))
    assert [run for run, _ in got] == runs
    for run, aux in got:
        expected = load_aux_arrays(run.aux_path)
        np.testing.assert_array_equal(aux.train_correctness(), expected.train_correctness())
        assert aux.source == str(run.aux_path)


def test_paths_are_accepted_as_well_as_runs(experiment):
    paths = [str(run.aux_path) for run in experiment.runs[:3]]
    assert [item for item, _ in read_runs(paths)] == paths


def test_at_most_max_in_flight_runs_are_held(experiment, monkeypatch):
    lock = threading.Lock()
    state = {"loaded": 0, "yielded": 0, "most": 0}

    def counting_load(path, **options):
        with lock:
            state["loaded"] += 1
            state["most"] = max(state["most"], state["loaded"] - state["yielded"])
        return load_aux_arrays(path, **options)

    monkeypatch.setattr(reading, "load_aux_arrays", counting_load)
    for _ in read_runs(experiment.runs, workers=4, max_in_flight=2):
        state["yielded"] += 1
    assert state["yielded"] == len(experiment.runs)
    assert state["most"] <= 2


def test_progress_callback_and_bar(experiment, capsys):
    seen = []
    list(read_runs(experiment.runs, progress=lambda done, total: seen.append((done, total))))
    total = len(experiment.runs)
    assert seen == [(done, total) for done in range(1, total + 1)]
    list(read_runs(experiment.runs[:2]))
    assert capsys.readouterr().err == ""  # the library is silent unless asked
    list(read_runs(experiment.runs[:2], progress=True))
    assert "2/2" in capsys.readouterr().err


@pytest.mark.parametrize("num_train, num_test, what", [(41, 10, "N=41"), (40, 11, "N_test=11")])
def test_runs_must_agree_on_split_sizes(experiment, tmp_path, num_train, num_test, what):
    copy = _copy_experiment(experiment, tmp_path / "exp")
    bad = _write_sized_run(copy.path, 99, num_train, num_test)
    copy = release.open_experiment(copy.path)
    with pytest.raises(InconsistentRunError) as caught:
        list(read_runs(copy.runs))
    message = str(caught.value)
    assert message.startswith(str(bad.aux_path))
    assert what in message and str(copy.runs[0].aux_path) in message

    skipped = []
    good = list(read_runs(copy.runs, skip_bad_runs=True, on_bad_run=lambda r, e: skipped.append(r)))
    assert skipped == [bad]
    assert len(good) == len(copy.runs) - 1


def test_known_sizes_catch_a_bad_first_run(experiment):
    check = SplitSizeCheck(num_train=50, num_test=10)
    with pytest.raises(InconsistentRunError, match="the expected sizes"):
        list(read_runs(experiment.runs[:1], size_check=check))


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _pickle(path):
    arrays = dict(np.load(path))
    arrays["index_test"] = np.array(list(arrays["index_test"]), dtype=object)
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def _drop_key(path):
    arrays = dict(np.load(path))
    del arrays["subsample_idx"]
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def _not_a_permutation(path):
    arrays = dict(np.load(path))
    arrays["index_test"][0] = arrays["index_test"][1]
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def _not_a_zip(path):
    path.write_text("not an npz")


@pytest.mark.parametrize(
    "corrupt, message",
    [
        (_truncate, "cannot read"),
        (_pickle, "pickled object arrays"),
        (_drop_key, "missing keys"),
        (_not_a_permutation, "not a permutation"),
        (_not_a_zip, "not a numpy .npz or .npy file"),
    ],
)
@pytest.mark.parametrize("workers", [None, 3])
def test_a_bad_file_stops_the_read_or_is_skipped(experiment, tmp_path, corrupt, message, workers):
    copy = _copy_experiment(experiment, tmp_path / "exp")
    bad = copy.runs[5]
    corrupt(bad.aux_path)
    with pytest.raises(AuxArraysError, match=message) as caught:
        list(read_runs(copy.runs, workers=workers))
    assert str(caught.value).startswith(str(bad.aux_path))

    reported = []
    good = read_runs(
        copy.runs,
        workers=workers,
        skip_bad_runs=True,
        on_bad_run=lambda run, error: reported.append((run, str(error))),
    )
    assert [run for run, _ in good] == [run for run in copy.runs if run != bad]
    assert len(reported) == 1 and reported[0][0] == bad and str(bad.aux_path) in reported[0][1]


def test_the_calling_thread_asks_the_kernel_for_the_next_files_ahead(experiment, monkeypatch):
    # Each file is advised `readahead` runs before it is read, in order, and read once;
    # the reading happens in this thread (no reader pool is started).
    events = []
    monkeypatch.setattr(reading, "_advise_will_need", lambda path: events.append(("ahead", path)))

    def recording_load(path, **options):
        events.append(("read", path, threading.current_thread() is threading.main_thread()))
        return load_aux_arrays(path, **options)

    monkeypatch.setattr(reading, "load_aux_arrays", recording_load)
    paths = [run.aux_path for run in experiment.runs]
    assert len(list(read_runs(experiment.runs, max_in_flight=3))) == len(paths)
    reads = [event for event in events if event[0] == "read"]
    assert [path for _, path, _ in reads] == paths and all(main for *_, main in reads)
    for position, path in enumerate(paths):
        advised = events.index(("ahead", path))
        assert events.index(("read", path, True)) > advised
        if position >= 3:  # advised 3 runs ahead: after reading run k - 4, before k - 3
            assert events.index(("read", paths[position - 3], True)) > advised
        if position >= 4:
            assert events.index(("read", paths[position - 4], True)) < advised


def test_advice_on_a_missing_file_is_silent_and_the_read_names_it(tmp_path):
    missing = tmp_path / "0.5" / "0" / "aux_arrays.npz"
    reading._advise_will_need(missing)  # a hint only: nothing to say here
    with pytest.raises(AuxArraysError, match="aux_arrays.npz"):
        list(read_runs([missing]))


def test_workers_below_one_are_refused(experiment):
    with pytest.raises(ValueError, match="at least 1"):
        list(read_runs(experiment.runs, workers=0))


def test_stopping_early_cancels_pending_reads(experiment, monkeypatch):
    # One worker, 4 in flight: run 0 is read at once, run 1 then blocks the worker until
    # released, and runs 2 and 3 wait in the pool's queue. Closing the reader must cancel
    # them (never read), submit nothing more, and return once run 1's read ends.
    gate = threading.Event()
    started = []
    submitted = []

    def gated_load(path, **options):
        started.append(path)
        if path != experiment.runs[0].aux_path:
            gate.wait(timeout=30)  # bounded: the test cannot hang here
        return load_aux_arrays(path, **options)

    class RecordingPool(reading.ThreadPoolExecutor):
        def submit(self, *args, **kwargs):
            future = super().submit(*args, **kwargs)
            submitted.append(future)
            return future

    def wait_for(condition):
        deadline = time.monotonic() + 10
        while not condition() and time.monotonic() < deadline:
            time.sleep(0.01)

    monkeypatch.setattr(reading, "load_aux_arrays", gated_load)
    monkeypatch.setattr(reading, "ThreadPoolExecutor", RecordingPool)
    reader = read_runs(experiment.runs, workers=1, max_in_flight=4)
    closer = threading.Thread(target=reader.close)
    try:
        run, _ = next(reader)
        assert run == experiment.runs[0]
        wait_for(lambda: len(started) == 2)  # the worker is inside run 1's read
        closer.start()
        wait_for(lambda: all(future.cancelled() for future in submitted[2:]))
    finally:
        gate.set()
    closer.join(timeout=10)
    assert not closer.is_alive(), "closing the reader hung"
    assert len(submitted) == 4  # nothing submitted after run 0 was handed out
    assert [future.cancelled() for future in submitted] == [False, False, True, True]
    assert started == [experiment.runs[0].aux_path, experiment.runs[1].aux_path]


@pytest.mark.parametrize(
    "modules, never_loaded",
    [
        (
            "heldout.scores.experiment, heldout.release.reading, heldout.scores.influence, "
            "heldout.testing.synthetic",
            ["tensorflow"],
        ),
        # numba is loaded when the popcount backend is chosen, TensorFlow for tf-gpu: a small
        # experiment (or --backend=numpy) never pays their start-up.
        (
            "heldout.scores.experiment, heldout.scores.influence, heldout.scores.backends.tf_gpu, "
            "heldout.cli.compute_scores",
            ["numba", "tensorflow"],
        ),
    ],
    ids=["reading-and-scores", "backends-and-cli"],
)
def test_importing_the_score_modules_loads_no_heavy_library(modules, never_loaded):
    code = f"import sys, {modules}; print(sorted(set({never_loaded!r}) & set(sys.modules)))"
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == "[]", f"{modules} imported {completed.stdout.strip()}"


def test_zip_member_corruption_is_reported_with_the_file(experiment, tmp_path):
    copy = _copy_experiment(experiment, tmp_path / "exp")
    bad = copy.runs[0]
    with zipfile.ZipFile(bad.aux_path, "w") as archive:  # a valid zip, wrong content
        archive.writestr("correctness_train.npy", b"garbage")
    with pytest.raises(AuxArraysError) as caught:
        list(read_runs(copy.runs))
    assert str(caught.value).startswith(str(bad.aux_path))


def test_skipping_bad_runs_keeps_the_majority_not_the_first_run(experiment, tmp_path):
    # An odd run that sorts first: today it set the sizes and every good run was skipped.
    copy = _copy_experiment(experiment, tmp_path / "exp")
    odd = release.write_run(copy.path, 0.1, 0, _odd_aux())
    copy = release.open_experiment(copy.path)
    assert copy.runs[0] == odd
    skipped = []
    good = list(read_runs(copy.runs, skip_bad_runs=True, on_bad_run=lambda r, e: skipped.append(e)))
    assert len(good) == len(copy.runs) - 1
    assert len(skipped) == 1 and str(skipped[0]).startswith(str(odd.aux_path))
    assert "the majority of the runs (12 of 13 readable runs)" in str(skipped[0])


def _odd_aux():
    rng = np.random.default_rng(5)
    return aux_from_predictions(rng.random(7) < 0.5, rng.random(7) < 0.5, rng.random(3) < 0.5)


def test_split_sizes_come_from_the_headers(experiment, tmp_path):
    assert reading.split_sizes_of(experiment.runs[0].aux_path) == (40, 10)
    (tmp_path / "bad.npz").write_bytes(b"junk")
    assert reading.split_sizes_of(tmp_path / "bad.npz") is None


def test_runs_written_in_other_npz_flavours_read_the_same(experiment, tmp_path):
    # The direct reader takes np.savez files; compressed files and other index dtypes go
    # through the general loader, with the same result.
    copy = _copy_experiment(experiment, tmp_path / "exp")
    expected = load_aux_arrays(copy.runs[0].aux_path)
    arrays = expected.as_dict()
    np.savez_compressed(copy.runs[0].aux_path, **arrays)
    np.savez(copy.runs[1].aux_path, **{k: v.astype(np.int32) for k, v in arrays.items()})
    got = [aux for _, aux in read_runs(copy.runs[:2])]
    for aux in got:
        np.testing.assert_array_equal(aux.train_mask(), expected.train_mask())
        np.testing.assert_array_equal(aux.train_correctness(), expected.train_correctness())
        np.testing.assert_array_equal(aux.test_correctness(), expected.test_correctness())


def test_the_cyclic_collector_is_off_while_reading_and_restored_after(experiment):
    import gc

    states = [gc.isenabled()]
    for _run, _aux in read_runs(experiment.runs, workers=2):
        states.append(gc.isenabled())
    states.append(gc.isenabled())
    assert states[0] and not any(states[1:-1]) and states[-1]
    gc.disable()  # a caller that had it off keeps it off
    try:
        list(read_runs(experiment.runs[:2]))
        assert not gc.isenabled()
    finally:
        gc.enable()
    reader = read_runs(experiment.runs)
    next(reader)
    reader.close()  # left early: restored too
    assert gc.isenabled()
