"""`heldout attribution` (tools/attribution.py) end to end on a synthetic experiment."""

import numpy as np
import pytest
from margin_experiment import write_margin_experiment
from tool_runs import run_script

from heldout.testing.synthetic import SyntheticSpec, planted_structure, write_synthetic_experiment

SPEC = SyntheticSpec(
    num_train=80,
    num_test=30,
    subset_ratios=(0.5,),
    runs_per_ratio=80,
    atypical_fraction=0.25,
    num_influence_pairs=12,
    seed=3,
)


@pytest.fixture(scope="module")
def experiment(tmp_path_factory):
    folder = tmp_path_factory.mktemp("attribution") / "synthetic"
    write_synthetic_experiment(folder, SPEC)
    return folder


def planted_tau() -> np.ndarray:
    truth = planted_structure(SPEC)
    tau = np.zeros((SPEC.num_test, SPEC.num_train), np.float32)
    tau[truth.pair_test, truth.pair_train] = truth.expected_pair_influence
    return tau


def attribution(experiment, *args):
    return run_script("tools/attribution.py", f"--experiment_dir={experiment}", *args, timeout=120)


def test_planted_attribution_scores_high_and_baselines_are_printed(experiment, tmp_path):
    np.save(tmp_path / "tau.npy", planted_tau())
    out = tmp_path / "lds.npz"
    done = attribution(
        experiment,
        f"--attribution={tmp_path / 'tau.npy'}",
        "--evaluation_runs=0.5",
        "--output_kind=correctness",
        f"--output={out}",
    )
    assert done.returncode == 0, done.stderr
    assert "dense, test_by_train" in done.stdout
    assert "noisier variant" in done.stdout
    lines = done.stdout.splitlines()
    assert any(line.startswith("random") for line in lines)
    assert any(line.startswith("holdout influence (binary, 40 runs)") for line in lines)
    with np.load(out) as f:
        lds = {key: f[key] for key in f.files}
    assert lds["lds"] >= 0.5 and lds["lds_ci_low"] <= lds["lds"] <= lds["lds_ci_high"]
    assert lds["num_test"] == 12  # only the planted test examples have a non-constant tau
    assert lds["lds_per_test"].shape == (30,) and np.isnan(lds["lds_per_test"]).sum() == 18
    assert len(lds["evaluation_run_ids"]) == 40 and lds["num_runs"] == 40
    assert not set(lds["evaluation_run_ids"]) & set(lds["estimation_run_ids"])
    random_lds = lds["baseline_lds"][list(lds["baseline_names"]).index("random")]
    assert abs(random_lds) < 0.1
    assert '"orientation": "test_by_train"' in str(lds["provenance"])


def test_traks_orientation_and_topk_scores_files_are_read(experiment, tmp_path):
    tau = planted_tau()
    np.save(tmp_path / "trak.npy", tau.T)
    index = np.argsort(-tau, axis=1, kind="stable")[:, :2]
    np.savez(
        tmp_path / "topk.npz",
        influence_topk_index=index,
        influence_topk_value=np.take_along_axis(tau, index, axis=1),
    )
    results, printed = {}, {}
    for name in ("trak.npy", "topk.npz"):
        out = tmp_path / f"{name}.lds.npz"
        done = attribution(experiment, f"--attribution={tmp_path / name}", f"--output={out}")
        assert done.returncode == 0, done.stderr
        printed[name] = done.stdout
        with np.load(out) as f:
            results[name] = f["lds_per_test"]
    assert "dense, train_by_test" in printed["trak.npy"]
    assert "top-k, test_by_train" in printed["topk.npz"]
    np.testing.assert_allclose(results["trak.npy"], results["topk.npz"], equal_nan=True)


@pytest.mark.parametrize(
    "tau, message",
    [
        (np.full((SPEC.num_test, SPEC.num_train), np.nan, np.float32), "NaN"),
        (np.zeros((SPEC.num_test, SPEC.num_train + 1), np.float32), "does not fit"),
    ],
)
def test_bad_attribution_is_one_line_naming_the_file_and_nothing_is_written(
    experiment, tmp_path, tau, message
):
    np.save(tmp_path / "bad.npy", tau)
    out = tmp_path / "lds.npz"
    done = attribution(experiment, f"--attribution={tmp_path / 'bad.npy'}", f"--output={out}")
    assert done.returncode != 0
    assert message in done.stderr and str(tmp_path / "bad.npy") in done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["bad.npy"]


def test_margins_without_outputs_files_and_output_over_input_are_refused(experiment, tmp_path):
    np.save(tmp_path / "tau.npy", planted_tau())
    done = attribution(
        experiment,
        f"--attribution={tmp_path / 'tau.npy'}",
        "--output_kind=margin",
        f"--output={tmp_path / 'lds.npz'}",
    )
    assert done.returncode != 0 and "outputs.npz" in done.stderr
    assert done.stderr.count("\n") == 1
    np.savez(tmp_path / "tau.npz", tau=planted_tau())
    done = attribution(
        experiment, f"--attribution={tmp_path / 'tau.npz'}", f"--output={tmp_path / 'tau.npz'}"
    )
    assert done.returncode != 0 and "tau.npz" in done.stderr
    with np.load(tmp_path / "tau.npz") as f:
        np.testing.assert_array_equal(f["tau"], planted_tau())


def test_overlapping_run_ids_are_refused(experiment, tmp_path):
    np.save(tmp_path / "tau.npy", planted_tau())
    done = attribution(
        experiment,
        f"--attribution={tmp_path / 'tau.npy'}",
        "--estimation_runs=0-10",
        "--evaluation_runs=10-20",
        f"--output={tmp_path / 'lds.npz'}",
    )
    assert done.returncode != 0 and "share run ids [10]" in done.stderr


def test_an_experiment_without_the_default_ratio_needs_subset_ratio(tmp_path):
    spec = SyntheticSpec(num_train=40, num_test=10, subset_ratios=(0.3,), runs_per_ratio=6)
    write_synthetic_experiment(tmp_path / "e", spec)
    np.save(tmp_path / "tau.npy", np.ones((10, 40), np.float32))
    common = (f"--attribution={tmp_path / 'tau.npy'}", f"--output={tmp_path / 'lds.npz'}")
    done = attribution(tmp_path / "e", *common)
    assert done.returncode != 0 and "no 0.5 ratio; give --subset_ratio" in done.stderr
    assert not (tmp_path / "lds.npz").exists()
    done = attribution(tmp_path / "e", *common, "--subset_ratio=0.3")
    assert done.returncode == 0, done.stderr
    assert "3 estimation and 3 evaluation runs of ratio 0.3" in done.stdout


def test_margins_from_outputs_files_score_a_planted_datamodel(tmp_path):
    rng = np.random.default_rng(1)
    tau = (rng.random((20, 60)) < 0.1) * rng.uniform(0.2, 1.0, (20, 60))
    tau[:, 0] = 0.5  # every test example depends on something
    experiment = write_margin_experiment(tmp_path / "exp", tau.astype(np.float32), runs=200)
    np.save(tmp_path / "tau.npy", tau.astype(np.float32))
    out = tmp_path / "lds.npz"
    done = attribution(
        experiment,
        f"--attribution={tmp_path / 'tau.npy'}",
        "--output_kind=margin",
        "--evaluation_runs=0.5",
        f"--output={out}",
    )
    assert done.returncode == 0, done.stderr
    with np.load(out) as f:
        assert f["lds"] >= 0.9 and f["num_test"] == 20 and f["num_runs"] == 100
    lines = done.stdout.splitlines()
    assert any(line.startswith("holdout influence (margin") for line in lines), done.stdout
    assert "noisier variant" not in done.stdout
