"""The privacy pass read on a real 2-process Dask LocalCluster gives the scores of one pass:
counts and correctness exactly, margin sums up to float64 rounding (tolerance stated)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from cli.test_privacy import NUM_RUNS, NUM_TRAIN, _leaky_experiment
from tool_runs import run_script

pytest.importorskip("distributed", reason="the fan-out needs Dask's distributed")

from heldout.errors import OutputsError, UsageError  # noqa: E402
from heldout.release.layout import open_experiment  # noqa: E402
from heldout.scores.privacy import fanout  # noqa: E402
from heldout.scores.privacy.audit import ATTACKS, compute_privacy  # noqa: E402
from heldout.scores.privacy.reading import iter_run_statistics  # noqa: E402
from heldout.scores.privacy.shadows import ShadowSums  # noqa: E402

# Margin sums added in another order differ from one pass by float64 rounding only.
RTOL, ATOL = 1e-9, 1e-9
TARGETS = (0, 5, 11, 15)


@pytest.fixture(scope="module")
def experiment(tmp_path_factory):
    return _leaky_experiment(tmp_path_factory.mktemp("privacy-fanout") / "leaky")


def _both(experiment_dir, address, statistic, shadows, runs_per_share):
    experiment = open_experiment(experiment_dir)
    runs = experiment.runs_at(0.5)
    keywords = dict(statistic=statistic, shadows=shadows, bootstrap_samples=50)
    one = compute_privacy(iter_run_statistics(experiment, runs, statistic), TARGETS, **keywords)
    read = fanout.read_shadow_pass_on_cluster(
        experiment, runs, TARGETS, statistic, scheduler=address, runs_per_share=runs_per_share
    )
    return one, compute_privacy(read, TARGETS, **keywords)


def _assert_same(one, ours, exact):
    same = (
        (lambda a, b: np.array_equal(a, b, equal_nan=True))
        if exact
        else (lambda a, b: np.allclose(a, b, rtol=RTOL, atol=ATOL, equal_nan=True))
    )
    assert np.array_equal(one.attacks.target_run_ids, ours.attacks.target_run_ids)
    assert np.array_equal(one.attacks.member, ours.attacks.member)
    assert one.attacks.num_runs == ours.attacks.num_runs == NUM_RUNS
    assert one.attacks.num_undefined == ours.attacks.num_undefined
    for name in ATTACKS:
        assert same(one.attacks.scores[name], ours.attacks.scores[name]), name
        for key, value in one.evaluations[name].values.items():
            assert same(value, ours.evaluations[name].values[key]), (name, key)
    assert same(one.privacy_risk, ours.privacy_risk)
    assert np.array_equal(one.risk_count_in, ours.risk_count_in)
    for key, value in one.correlations.items():  # counts of the aux arrays: exact
        assert same(value.rho, ours.correlations[key].rho), key


def test_cluster_pass_equals_one_pass(experiment, dask_cluster):
    address = dask_cluster.scheduler_address
    for shadows in ("others", "non_targets"):
        one, ours = _both(experiment, address, "margin", shadows, runs_per_share=3)
        _assert_same(one, ours, exact=False)
    # 0/1 correctness: every shifted value and sum is an integer, so any order is exact.
    one, ours = _both(experiment, address, "correctness", "others", runs_per_share=5)
    _assert_same(one, ours, exact=True)


def test_a_bad_run_on_a_worker_is_its_one_line_error(experiment, dask_cluster, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(experiment, copy)
    bad = copy / "0.5" / "9" / "outputs.npz"
    shutil.copy(copy / "0.5" / "1" / "outputs.npz", bad)  # another run's identity
    opened = open_experiment(copy)
    with pytest.raises(OutputsError, match=str(bad)):
        fanout.read_shadow_pass_on_cluster(
            opened,
            opened.runs_at(0.5),
            TARGETS,
            scheduler=dask_cluster.scheduler_address,
            runs_per_share=4,
        )


def test_shares_merge_in_any_tree_and_other_shifts_are_refused(experiment):
    opened = open_experiment(experiment)
    runs = opened.runs_at(0.5)
    parts = [
        fanout.read_shadow_share(opened, first, runs[first : first + 3], runs[0])
        for first in range(0, len(runs), 3)
    ]
    left = parts[0]
    for part in parts[1:]:
        left = fanout.add_shadow_partials(left, part)
    right = parts[-1]
    for part in reversed(parts[:-1]):
        right = fanout.add_shadow_partials(part, right)
    whole = ShadowSums(NUM_TRAIN)
    for run in iter_run_statistics(opened, runs):
        whole.add(run.mask, run.statistic)
    for merged in (left.sums, right.sums):
        assert merged.num_runs == whole.num_runs and np.array_equal(merged.shift, whole.shift)
        assert np.array_equal(merged.count_in, whole.count_in)
        for name in ("sum_in", "squares_in", "sum_all", "squares_all"):
            np.testing.assert_allclose(getattr(merged, name), getattr(whole, name), 1e-12, 1e-12)
    other = fanout.read_shadow_share(opened, 3, runs[3:6], runs[1])
    with pytest.raises(UsageError, match="shifted by different runs"):
        parts[0].sums.merge(other.sums)


def test_privacy_command_on_a_local_cluster_writes_the_same_scores(experiment, tmp_path):
    outputs = {}
    for scheduler in ("none", "local"):
        out = tmp_path / f"{scheduler}.npz"
        done = run_script(
            "tools/privacy.py",
            f"--experiment_dir={experiment}",
            "--noprogress",
            "--targets=4",
            f"--output={out}",
            f"--scheduler={scheduler}",
            "--dask_workers=2",
            timeout=300,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        assert "Traceback" not in done.stderr
        with np.load(out) as f:
            outputs[scheduler] = {key: f[key] for key in f.files if key != "provenance"}
    assert outputs["none"].keys() == outputs["local"].keys()
    for key, value in outputs["none"].items():
        got = outputs["local"][key]
        if value.dtype.kind == "f":
            np.testing.assert_allclose(got, value, RTOL, ATOL, err_msg=key)
        else:
            assert np.array_equal(got, value), key


def test_a_bad_run_read_by_a_local_cluster_is_the_commands_one_line(experiment, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(experiment, copy)
    bad = copy / "0.5" / "9" / "outputs.npz"  # no target: read on a worker
    shutil.copy(copy / "0.5" / "1" / "outputs.npz", bad)
    out = tmp_path / "out.npz"
    done = run_script(
        "tools/privacy.py",
        f"--experiment_dir={copy}",
        "--noprogress",
        "--targets=0,1",
        f"--output={out}",
        "--scheduler=local",
        "--dask_workers=2",
        timeout=300,
    )
    assert done.returncode != 0
    assert done.stderr.count("\n") == 1, done.stderr[-3000:]
    assert str(bad) in done.stderr and "another checkpoint" in done.stderr, done.stderr
    assert not out.exists()
