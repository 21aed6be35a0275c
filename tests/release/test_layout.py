"""Walking the release layout and writing runs into it."""

import numpy as np
import pytest

from heldout.release import layout as release
from heldout.release.aux_arrays import aux_from_predictions


def _aux(num_train=12, num_test=5, seed=0):
    rng = np.random.default_rng(seed)
    return aux_from_predictions(
        rng.random(num_train) < 0.5, rng.random(num_train) < 0.5, rng.random(num_test) < 0.5, rng
    )


def _make_experiment(root, name="cifar10-inception", ratios=(0.1, 0.7), runs=3):
    exp = root / name
    for ratio in ratios:
        for run_id in range(runs):
            release.write_run(exp, ratio, run_id, _aux(seed=run_id))
    return exp


def test_walks_ratios_and_runs_and_ignores_unrelated_files(tmp_path):
    exp = _make_experiment(tmp_path)
    (exp / "README.txt").write_text("hello")
    (exp / "0.7" / "notes").mkdir()
    (exp / "0.7" / "17").mkdir()  # a run folder without aux arrays is not a run
    (exp / "scores").mkdir()
    experiment = release.open_experiment(exp)
    assert experiment.subset_ratios == (0.1, 0.7)
    assert [r.run_id for r in experiment.runs_at(0.7)] == [0, 1, 2]
    assert all(not r.has_checkpoint for r in experiment.runs)
    run = experiment.run(0.7, 2)
    assert run.path == exp / "0.7" / "2"
    np.testing.assert_array_equal(run.load_aux().train_mask(), _aux(seed=2).train_mask())


def test_meta_comes_from_the_registry_by_folder_name(tmp_path):
    experiment = release.open_experiment(_make_experiment(tmp_path))
    assert experiment.meta.arch == "small_inception"
    assert experiment.meta.num_classes == 10
    assert experiment.meta.dataset == "cifar10:3.0.2"


def test_meta_file_wins_and_round_trips(tmp_path):
    exp = _make_experiment(tmp_path, name="mine")
    meta = release.ExperimentMeta(
        name="mine",
        arch="mlp",
        num_classes=10,
        dataset="fashion_mnist_idx",
        index_order="idx",
        image_shape=(28, 28, 1),
        extra={"seed": 3},
    )
    release.write_experiment_meta(exp, meta)
    assert release.open_experiment(exp).meta == meta
    (exp / release.EXPERIMENT_META_FILE).write_text("{broken")
    with pytest.raises(release.ReleaseLayoutError, match="experiment.json: not valid JSON"):
        release.open_experiment(exp)


def test_unknown_experiment_has_empty_meta(tmp_path):
    experiment = release.open_experiment(_make_experiment(tmp_path, name="other"))
    assert experiment.meta == release.ExperimentMeta(name="other")


def test_find_experiments_under_a_root_with_several(tmp_path):
    _make_experiment(tmp_path, "cifar10-inception")
    _make_experiment(tmp_path, "cifar100-inception", ratios=(0.5,), runs=1)
    (tmp_path / "downloads").mkdir()
    names = [e.name for e in release.find_experiments(tmp_path)]
    assert names == ["cifar10-inception", "cifar100-inception"]
    # An experiment folder given directly is found as itself.
    assert [e.name for e in release.find_experiments(tmp_path / "cifar10-inception")] == [
        "cifar10-inception"
    ]


def test_empty_or_missing_experiment_is_a_clear_error(tmp_path):
    with pytest.raises(release.ReleaseLayoutError, match="no runs found"):
        release.open_experiment(tmp_path)
    with pytest.raises(release.ReleaseLayoutError, match="not a folder"):
        release.open_experiment(tmp_path / "nope")


def test_missing_run_names_the_ratios(tmp_path):
    experiment = release.open_experiment(_make_experiment(tmp_path))
    with pytest.raises(release.ReleaseLayoutError, match=r"no run 9 at subset ratio 0.7"):
        experiment.run(0.7, 9)


def test_open_run_from_run_or_checkpoints_folder(tmp_path):
    exp = _make_experiment(tmp_path)
    run = release.open_run(exp / "0.1" / "1" / "checkpoints")
    assert (run.subset_ratio, run.run_id) == (0.1, 1)
    with pytest.raises(release.ReleaseLayoutError, match="not a run folder"):
        release.open_run(exp / "0.1")


def test_write_run_with_checkpoint_and_refuses_to_replace(tmp_path):
    def write_checkpoint(folder):
        (folder / "ckpt-3.index").write_bytes(b"x")

    run = release.write_run(tmp_path / "e", 0.5, 4, _aux(), write_checkpoint)
    assert run.has_checkpoint
    assert sorted(p.name for p in (tmp_path / "e" / "0.5").iterdir()) == ["4"]
    with pytest.raises(FileExistsError, match="already exists"):
        release.write_run(tmp_path / "e", 0.5, 4, _aux())


def test_failed_write_leaves_no_run_folder(tmp_path):
    def broken_checkpoint(folder):
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        release.write_run(tmp_path / "e", 0.5, 0, _aux(), broken_checkpoint)
    assert list((tmp_path / "e" / "0.5").iterdir()) == []


def test_ratio_dir_names():
    assert release.ratio_dir_name(0.7) == "0.7"
    assert release.ratio_dir_name(0.25) == "0.25"
    with pytest.raises(ValueError, match="subset ratio"):
        release.ratio_dir_name(1.5)


def test_default_experiment_dir_follows_heldout_home(tmp_path, monkeypatch):
    monkeypatch.setenv("HELDOUT_HOME", str(tmp_path))
    assert release.default_experiment_dir() == tmp_path / "experiments" / "fashion_mnist-mlp"


@pytest.mark.parametrize(
    "text, message",
    [
        ("[1, 2]", "expected a JSON object at the top level, got list"),
        ('"cifar"', "expected a JSON object at the top level, got str"),
        ('{"num_classes": "ten"}', "'num_classes' must be int"),
        ('{"num_classes": true}', "'num_classes' must be int"),
        ('{"image_shape": 32}', "'image_shape' must be list or tuple"),
        ('{"image_shape": [32, 32]}', "'image_shape' must be three positive integers"),
        ('{"extra": [1]}', "'extra' must be dict"),
        ('{"num_train": -5}', "'num_train' must be positive"),
        ("{not json", "not valid JSON"),
    ],
)
def test_malformed_meta_file_is_a_clear_error_naming_it(tmp_path, text, message):
    exp = _make_experiment(tmp_path, name="mine")
    (exp / release.EXPERIMENT_META_FILE).write_text(text)
    with pytest.raises(release.ExperimentMetaError, match=message) as caught:
        release.open_experiment(exp)
    assert str(exp / release.EXPERIMENT_META_FILE) in str(caught.value)


def test_folders_named_with_non_ascii_digits_are_not_runs_or_ratios(tmp_path):
    # `str.isdigit` accepts "²" and `float` accepts Arabic-Indic digits: neither names a run.
    exp = _make_experiment(tmp_path, ratios=(0.7,), runs=1)
    for name in ("²", "٣"):
        (exp / "0.7" / name).mkdir()
        (exp / "0.7" / name / release.AUX_ARRAYS_FILE).write_bytes(b"")
    (exp / "٠.٥").mkdir()
    experiment = release.open_experiment(exp)
    assert [run.run_id for run in experiment.runs] == [0]
    assert experiment.subset_ratios == (0.7,)
    with pytest.raises(release.ReleaseLayoutError, match="not a run folder"):
        release.open_run(exp / "0.7" / "²")


def test_written_runs_get_the_umask_modes_not_private_ones(tmp_path):
    import os

    old = os.umask(0o022)
    try:
        exp = _make_experiment(tmp_path, ratios=(0.7,), runs=1)
        release.write_run(
            exp, 0.7, 1, _aux(), write_checkpoint=lambda d: (d / "ckpt-1.index").write_text("x")
        )
        release.write_experiment_meta(exp, release.ExperimentMeta(name="x"))
    finally:
        os.umask(old)
    for path in [exp, *exp.rglob("*")]:
        mode = path.stat().st_mode & 0o777
        assert mode == (0o755 if path.is_dir() else 0o644), (path, oct(mode))


def test_released_experiments_know_their_split_sizes(tmp_path):
    meta = release.read_experiment_meta(tmp_path / "imagenet-resnet50")
    assert (meta.num_train, meta.num_test) == (1_281_167, 50_000)
    assert release.read_experiment_meta(tmp_path / "cifar10-inception").num_train == 50_000


def test_repr_of_an_experiment_is_one_short_line(tmp_path):
    exp = release.open_experiment(_make_experiment(tmp_path, ratios=(0.1, 0.7), runs=3))
    release.write_run(exp.path, 0.3, 0, _aux())
    text = repr(release.open_experiment(exp.path))
    assert text == (
        f"Experiment({str(exp.path)!r}, dataset='cifar10:3.0.2', "
        "ratios=[0.1: 3 runs, 0.3: 1 run, 0.7: 3 runs])"
    )
    many = _make_experiment(tmp_path, name="many", ratios=(0.5,), runs=200)
    assert "\n" not in repr(release.open_experiment(many))
    assert len(repr(release.open_experiment(many))) < 200
