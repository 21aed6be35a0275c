"""`heldout privacy` (tools/privacy.py) end to end, in subprocesses, on small experiments whose
training-split margins leak membership by a planted amount."""

import shutil

import numpy as np
import pytest
from tool_runs import run_script

from heldout.testing.synthetic import SyntheticSpec, write_synthetic_experiment

NUM_RUNS, NUM_TRAIN, NUM_TEST = 16, 60, 10


def _leaky_experiment(root, runs=NUM_RUNS, ratio=0.5, seed=0):
    """Two classes, label 1, logits (0, phi): phi is the logit and hinge margin alike and
    correctness is phi > 0. A run's training margin rises by gap[j] where it trained on j."""
    from heldout.release import layout as release
    from heldout.release.aux_arrays import aux_from_predictions
    from heldout.release.outputs import save_run_outputs

    rng = np.random.default_rng(seed)
    gap = np.linspace(0.0, 4.0, NUM_TRAIN)
    base = rng.normal(0.5, 1.0, NUM_TRAIN)
    labels = {"train": np.ones(NUM_TRAIN, np.int64), "test": np.ones(NUM_TEST, np.int64)}
    for run_id in range(runs):
        mask = rng.random(NUM_TRAIN) < ratio
        phi = {
            "train": base + gap * mask + rng.normal(0, 0.5, NUM_TRAIN),
            "test": rng.normal(0, 1, NUM_TEST),
        }
        logits = {s: np.stack([np.zeros_like(v), v], axis=1) for s, v in phi.items()}
        aux = aux_from_predictions(mask, phi["train"] > 0, phi["test"] > 0, rng=rng)
        run = release.write_run(root, ratio, run_id, aux)
        save_run_outputs(run.path, ratio, run_id, aux, logits, labels)
    return root


@pytest.fixture(scope="module")
def experiment(tmp_path_factory):
    return _leaky_experiment(tmp_path_factory.mktemp("privacy") / "leaky")


def privacy(experiment, *args):
    return run_script(
        "tools/privacy.py", f"--experiment_dir={experiment}", "--noprogress", *args, timeout=180
    )


def test_margins_end_to_end_write_scores_evaluation_risk_and_a_figure(experiment, tmp_path):
    out, figure = tmp_path / "privacy.npz", tmp_path / "roc.png"
    done = privacy(experiment, "--targets=4", f"--output={out}", f"--figure={figure}")
    assert done.returncode == 0, done.stderr
    assert "4 target runs of ratio 0.5, each against 15 shadow runs (others)" in done.stdout
    assert "pooled over" in done.stdout and "Spearman rho(privacy_risk, memorization)" in (
        done.stdout
    )
    with np.load(out) as f:
        arrays = {key: f[key] for key in f.files}
    assert arrays["target_run_ids"].shape == (4,)
    for name in ("lira_online", "lira_offline", "loss_threshold"):
        assert arrays[name].shape == (4, NUM_TRAIN) and arrays[name].dtype == np.float64
        low, value, high = (arrays[f"{name}_auc{s}"] for s in ("_ci_low", "", "_ci_high"))
        assert low <= value <= high
        assert arrays[f"{name}_num_members"] + arrays[f"{name}_num_nonmembers"] <= 4 * NUM_TRAIN
    assert arrays["member"].dtype == bool and arrays["member"].shape == (4, NUM_TRAIN)
    assert arrays["lira_online_auc"] > 0.75
    assert arrays["lira_online_auc"] > arrays["loss_threshold_auc"]
    assert arrays["privacy_risk"].shape == (NUM_TRAIN,)
    assert (arrays["privacy_risk_count_in"] + arrays["privacy_risk_count_out"] <= 4).all()
    assert arrays["num_runs"] == NUM_RUNS and str(arrays["statistic"]) == "margin"
    assert '"statistic": "margin"' in str(arrays["provenance"])
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_target_is_never_its_own_shadow_in_the_written_scores(experiment, tmp_path):
    from scipy.stats import norm

    from heldout.release.outputs_reading import read_outputs

    out = tmp_path / "privacy.npz"
    done = privacy(experiment, "--targets=3,", f"--output={out}")
    assert done.returncode == 0, done.stderr
    ids, masks, phi = read_outputs(experiment, 0.5, split="train")
    others = ids != 3
    with np.load(out) as f:
        online = f["lira_online"][0]
    for j in (0, 30, 59):
        inside = phi[others & masks[:, j], j].astype(np.float64)
        outside = phi[others & ~masks[:, j], j].astype(np.float64)
        x = float(phi[ids == 3, j][0])
        expected = norm.logpdf(x, inside.mean(), inside.std()) - norm.logpdf(
            x, outside.mean(), outside.std()
        )
        assert online[j] == pytest.approx(expected, rel=1e-6)


def test_correctness_from_the_aux_arrays_alone_is_labelled_weaker(tmp_path):
    spec = SyntheticSpec(num_train=40, num_test=10, subset_ratios=(0.5,), runs_per_ratio=12)
    write_synthetic_experiment(tmp_path / "e", spec)
    out = tmp_path / "p.npz"
    done = privacy(tmp_path / "e", "--statistic=correctness", "--targets=3", f"--output={out}")
    assert done.returncode == 0, done.stderr
    assert "the weaker variant" in done.stdout
    with np.load(out) as f:
        assert str(f["statistic"]) == "correctness" and f["lira_online"].shape == (3, 40)


def _assert_refused(done, tmp_path, *needles):
    assert done.returncode != 0
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, done.stderr
    for needle in needles:
        assert needle in done.stderr, done.stderr
    assert not list(tmp_path.glob("out*")), "something was written"


def test_outputs_that_do_not_match_the_aux_arrays_are_refused(experiment, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(experiment, copy)
    shutil.copy(copy / "0.5" / "1" / "outputs.npz", copy / "0.5" / "0" / "outputs.npz")
    done = privacy(copy, f"--output={tmp_path / 'out.npz'}", f"--figure={tmp_path / 'out.png'}")
    _assert_refused(done, tmp_path, str(copy / "0.5" / "0" / "outputs.npz"), "another checkpoint")


def test_too_few_runs_for_min_shadows_are_refused(experiment, tmp_path):
    done = privacy(experiment, "--min_shadows=9", f"--output={tmp_path / 'out.npz'}")
    _assert_refused(done, tmp_path, "ratio 0.5 has 16 runs, fewer than the 18")


def test_more_targets_than_runs_are_refused(experiment, tmp_path):
    done = privacy(experiment, "--targets=17", f"--output={tmp_path / 'out.npz'}")
    _assert_refused(done, tmp_path, "--targets=17", "the ratio has 16 runs")


def test_shadows_too_few_everywhere_give_nan_counted_not_a_crash(experiment, tmp_path):
    out, figure = tmp_path / "p.npz", tmp_path / "roc.png"
    done = privacy(
        experiment, "--min_shadows=8", "--targets=2", f"--output={out}", f"--figure={figure}"
    )
    assert done.returncode == 0, done.stderr
    with np.load(out) as f:
        assert f["lira_online_num_undefined"] == 2 * NUM_TRAIN
        assert np.isnan(f["lira_online"]).all() and np.isnan(f["lira_online_auc"])
    assert figure.exists()


def test_the_default_targets_are_capped_at_the_runs_of_the_ratio(tmp_path):
    spec = SyntheticSpec(num_train=30, num_test=10, subset_ratios=(0.5,), runs_per_ratio=10)
    write_synthetic_experiment(tmp_path / "e", spec)
    done = privacy(tmp_path / "e", "--statistic=correctness", f"--output={tmp_path / 'p.npz'}")
    assert done.returncode == 0, done.stderr
    assert "10 target runs of ratio 0.5, each against 9 shadow runs (others)" in done.stdout


def test_non_target_shadows_are_one_set_for_every_target(experiment, tmp_path):
    from scipy.stats import norm

    from heldout.release.outputs_reading import read_outputs

    out = tmp_path / "p.npz"
    done = privacy(experiment, "--targets=3,7", "--shadows=non_targets", f"--output={out}")
    assert done.returncode == 0, done.stderr
    assert "each against 14 shadow runs (non_targets)" in done.stdout
    ids, masks, phi = read_outputs(experiment, 0.5, split="train")
    shadows = (ids != 3) & (ids != 7)
    with np.load(out) as f:
        online, member = f["lira_online"], f["member"]
        assert str(f["shadows"]) == "non_targets" and f["num_shadows"] == 14
    for row, target in enumerate((3, 7)):
        for j in (0, 59):
            inside = phi[shadows & masks[:, j], j].astype(np.float64)
            outside = phi[shadows & ~masks[:, j], j].astype(np.float64)
            x = float(phi[ids == target, j][0])
            expected = norm.logpdf(x, inside.mean(), inside.std()) - norm.logpdf(
                x, outside.mean(), outside.std()
            )
            assert online[row, j] == pytest.approx(expected, rel=1e-6)
            assert member[row, j] == masks[ids == target, j][0]
    done = privacy(
        experiment, "--targets=10", "--shadows=non_targets", f"--output={tmp_path / 'out.npz'}"
    )
    _assert_refused(done, tmp_path, "6 runs of ratio 0.5 are no target, fewer than the 8")
