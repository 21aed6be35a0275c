"""The published score formats: loaders on the real files, our writers' round trips,
class-wise influence from runs against the dense engine, and the refusals."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest
from tool_runs import run_script

import heldout.published as published
from heldout.published import PublishedFileError
from heldout.release.aux_arrays import aux_from_predictions
from heldout.scores.classwise import ClasswiseInfluenceAccumulator
from heldout.scores.influence import compute_influence

ROOT = Path(__file__).resolve().parents[2]
SHARED_DATA = ROOT.parent / "shared" / "data"


def _shared(name: str) -> Path:
    path = SHARED_DATA / name
    if not path.is_file():
        pytest.skip(f"the published file {name} is not in {SHARED_DATA}")
    return path


# ------------------------------------------------------------------ the real files


@pytest.mark.parametrize(
    "name, classes",
    [("cifar10-cscores-orig-order.npz", 10), ("cifar100-cscores-orig-order.npz", 100)],
)
def test_published_cifar_cscores(name, classes):
    record = published.load_cscores(_shared(name))
    assert len(record) == 50_000 and record.scores.dtype == np.float64
    assert np.unique(record.labels).size == classes
    assert np.bincount(record.labels).tolist() == [50_000 // classes] * classes
    assert record.filenames is None and record.provenance is None


def test_published_mnist_cscores():
    record = published.load_cscores(_shared("mnist-cscores.npy"))
    assert len(record) == 60_000 and record.labels is None
    assert 0.0 <= record.scores.min() and record.scores.max() <= 1.0


@pytest.mark.parametrize(
    "name, count",
    [
        ("cifar100_high_infl_pairs_infl0.15_mem0.25.npz", 1015),
        ("imagenet_high_infl_pairs_infl0.15_mem0.25.npz", 1641),
    ],
)
def test_published_pairs(name, count):
    pairs = published.load_influence_pairs(_shared(name))
    assert len(pairs) == count
    assert np.all(pairs.influence >= 0.15) and np.all(pairs.memorization >= 0.25)
    assert published.thresholds_in_name(name) == (0.15, 0.25)
    assert np.unique(pairs.keys()).size == count  # no pair twice


def test_published_pairs_renamed_to_stricter_thresholds_are_refused(tmp_path):
    source = _shared("cifar100_high_infl_pairs_infl0.15_mem0.25.npz")
    renamed = tmp_path / "cifar100_high_infl_pairs_infl0.3_mem0.25.npz"
    renamed.write_bytes(source.read_bytes())
    with pytest.raises(
        PublishedFileError, match=r"pairs lie below the thresholds influence >= 0.3"
    ):
        published.load_influence_pairs(renamed)
    assert len(published.load_influence_pairs(renamed, check_name=False)) == 1015


# --------------------------------------------------------------------- C-scores


def test_cscores_round_trip_with_filenames_and_provenance(tmp_path):
    rng = np.random.default_rng(0)
    scores, labels = rng.random(30), rng.integers(0, 5, 30)
    names = np.array([f"n{k:08d}_{k}.JPEG" for k in range(30)])
    path = tmp_path / "ours.npz"
    published.save_cscores(path, scores, labels, names, provenance={"from": "test"})
    assert published.pickled_members(path) == []  # file names stored without pickle
    back = published.load_cscores(path)
    np.testing.assert_array_equal(back.scores, scores)
    np.testing.assert_array_equal(back.labels, labels)
    np.testing.assert_array_equal(back.filenames, names)
    assert back.provenance == {"from": "test"}
    npy = tmp_path / "mnist-like.npy"
    published.save_cscores(npy, scores, None)
    np.testing.assert_array_equal(published.load_cscores(npy).scores, scores)


def test_imagenet_style_file_needs_allow_pickle(tmp_path):
    """The published ImageNet file stores `filenames` as a pickled object array."""
    path = tmp_path / "imagenet-cscores-with-filename.npz"
    names = np.array(["n01440764_10026.JPEG", "n01440764_10027.JPEG"], dtype=object)
    np.savez(path, labels=np.array([0, 0]), scores=np.array([0.5, 0.9]), filenames=names)
    with pytest.raises(
        PublishedFileError, match="filenames is an object array .*allow_pickle=True"
    ):
        published.load_cscores(path)
    record = published.load_cscores(path, allow_pickle=True)
    assert record.filenames.tolist() == names.tolist() and record.filenames.dtype.kind == "U"


@pytest.mark.parametrize(
    "arrays, message",
    [
        ({"scores": np.zeros((2, 2))}, "scores must be a 1-D array of numbers"),
        (
            {"scores": np.zeros(3), "labels": np.zeros(4, np.int64)},
            "labels must be integers shaped",
        ),
        ({"scores": np.zeros(2), "labels": np.array([0, -1])}, "outside 0 or more"),
        ({"labels": np.zeros(2, np.int64)}, "no `scores` array"),
    ],
)
def test_cscore_files_with_wrong_shapes(tmp_path, arrays, message):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(PublishedFileError, match=f"bad.npz: .*{message}"):
        published.load_cscores(path)


# ------------------------------------------------------------------------ pairs


def test_pairs_round_trip_and_selection_from_dense_and_topk(tmp_path):
    influence = np.array([[0.2, 0.1, 0.5], [0.16, np.nan, 0.15]], np.float32)  # [test, train]
    memorization = np.array([0.3, 0.9, 0.2])
    dense = published.select_pairs_dense(influence, memorization)
    # train 2 is not memorized enough (0.2 < 0.25); train 1's influences are too small.
    assert sorted(zip(dense.train_index.tolist(), dense.test_index.tolist(), strict=True)) == [
        (0, 0),
        (0, 1),
    ]
    path = tmp_path / published.pairs_file_name("tiny", 0.15, 0.25)
    assert path.name == "tiny_high_infl_pairs_infl0.15_mem0.25.npz"
    published.save_influence_pairs(path, dense, {"k": 1})
    back = published.load_influence_pairs(path)
    for key in ("train_index", "test_index", "influence", "memorization"):
        np.testing.assert_array_equal(getattr(back, key), getattr(dense, key))
    assert back.provenance == {"k": 1}

    topk_index = np.array([[2, 0], [0, 2]])
    topk_value = np.array([[0.5, 0.2], [0.16, 0.15]])
    pairs, saturated = published.select_pairs_topk(topk_index, topk_value, memorization)
    assert np.array_equal(np.sort(pairs.keys()), np.sort(dense.keys()))
    assert saturated == 2  # both rows' last value passes 0.15: k may be too small


def test_repeated_pairs_are_refused(tmp_path):
    path = tmp_path / "twice.npz"
    np.savez(path, tr_idx=[1, 1], tt_idx=[2, 2], infl=[0.2, 0.3], mem=[0.5, 0.5])
    with pytest.raises(PublishedFileError, match="twice.npz: 1 .* occur more than once"):
        published.load_influence_pairs(path)


# ---------------------------------------------------------------- class-wise influence


def _runs(num_runs: int, train_labels, test_labels, seed: int = 0):
    """Runs whose correctness depends on the class and on which examples were trained."""
    rng = np.random.default_rng(seed)
    n_train, n_test = len(train_labels), len(test_labels)
    runs = []
    for _ in range(num_runs):
        mask = rng.random(n_train) < 0.7
        train_correct = mask | (rng.random(n_train) < 0.4)
        # A test example is right more often when training examples of its class were in.
        share = np.bincount(train_labels, weights=mask, minlength=3) / np.bincount(train_labels)
        test_correct = rng.random(n_test) < share[test_labels]
        runs.append(aux_from_predictions(mask, train_correct, test_correct, rng=rng))
    return runs


def test_classwise_blocks_equal_the_dense_matrix_and_round_trip(tmp_path):
    rng = np.random.default_rng(1)
    train_labels, test_labels = rng.integers(0, 3, 45), rng.integers(0, 3, 17)
    runs = _runs(40, train_labels, test_labels)
    dense = compute_influence(runs).matrix  # [N_test, N_train]
    accumulator = ClasswiseInfluenceAccumulator(train_labels, test_labels)
    for aux in runs:
        accumulator.add(aux)
    blocks = list(accumulator.blocks())
    assert [b.label for b in blocks] == [0, 1, 2]
    for block in blocks:
        assert np.all(train_labels[block.train_index] == block.label)
        expected = dense[np.ix_(block.test_index, block.train_index)].T  # rows: training
        np.testing.assert_allclose(block.matrix, expected, rtol=1e-6, atol=1e-7)
    memorization = accumulator.memorization()
    in_runs = np.array([aux.train_mask() for aux in runs])
    correct = np.array([aux.train_correctness() for aux in runs])
    expected_mem = (correct & in_runs).sum(0) / in_runs.sum(0) - (correct & ~in_runs).sum(0) / (
        ~in_runs
    ).sum(0)
    np.testing.assert_allclose(memorization, expected_mem)

    path = tmp_path / "tiny_infl_matrix.npz"
    written = published.save_classwise_influence(
        path, iter(blocks), train_labels, test_labels, memorization, {"runs": 40}
    )
    assert written == 3
    back = published.load_classwise_influence(path)
    np.testing.assert_array_equal(back.train_labels, train_labels)
    np.testing.assert_array_equal(back.train_memorization, memorization)
    for block in blocks:
        again = back.blocks[block.label]
        np.testing.assert_array_equal(again.matrix, block.matrix)
        np.testing.assert_array_equal(again.train_index, block.train_index)
        np.testing.assert_array_equal(again.test_index, block.test_index)
    assert back.provenance == {"runs": 40}

    # Same-class pairs from the class-wise file equal those of the dense matrix restricted
    # to same-class cells.
    same_class = train_labels[None, :] == test_labels[:, None]
    from_dense = published.select_pairs_dense(
        np.where(same_class, dense, np.nan), memorization, 0.05, 0.0
    )
    from_blocks = back.select_pairs(0.05, 0.0)
    assert len(from_blocks) > 0
    np.testing.assert_array_equal(np.sort(from_blocks.keys()), np.sort(from_dense.keys()))

    # Published as parts (ImageNet's .bin files): the joined parts read the same.
    data = path.read_bytes()
    parts = [tmp_path / f"part{k}.bin" for k in range(3)]
    for k, part in enumerate(parts):
        part.write_bytes(data[k * len(data) // 3 : (k + 1) * len(data) // 3])
    joined = published.load_classwise_influence(parts, tmp_dir=tmp_path)
    np.testing.assert_array_equal(joined.blocks[2].matrix, back.blocks[2].matrix)
    assert not list(tmp_path.glob("heldout-parts-*"))  # the joined copy is removed


def _classwise_arrays():
    return {
        "tr_labels": np.array([0, 1, 0, 1]),
        "tt_labels": np.array([1, 0]),
        "tr_mem": np.zeros(4),
        "infl_matrix_class0": np.zeros((2, 1)),
        "tr_classidx_0": np.array([0, 2]),
        "tt_classidx_0": np.array([1]),
        "infl_matrix_class1": np.zeros((2, 1)),
        "tr_classidx_1": np.array([1, 3]),
        "tt_classidx_1": np.array([0]),
    }


@pytest.mark.parametrize(
    "change, message",
    [
        ({"tr_classidx_0": np.array([1, 2])}, "labels disagree"),  # another order
        ({"tt_labels": np.array([0, 1])}, "labels disagree"),
        ({"infl_matrix_class1": np.zeros((1, 2))}, r"must be a real \[n_train_K, n_test_K\]"),
        ({"tr_mem": np.zeros(3)}, "tr_mem has 3 entries, tr_labels 4"),
        ({"tr_classidx_1": np.array([1, 7])}, "outside 0..3"),
        ({"tt_classidx_1": None}, r"classes \[1\] lack one of"),
    ],
)
def test_classwise_refusals(tmp_path, change, message):
    arrays = {**_classwise_arrays(), **change}
    path = tmp_path / "bad_infl_matrix.npz"
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
    with pytest.raises(PublishedFileError, match=message):
        published.load_classwise_influence(path)


def test_classwise_writer_refuses_a_block_that_does_not_fit_the_labels(tmp_path):
    from heldout.published import ClassBlock

    block = ClassBlock(0, np.array([1]), np.array([0]), np.zeros((1, 1)))  # train 1 is class 1
    path = tmp_path / "out.npz"
    with pytest.raises(PublishedFileError, match="labels disagree"):
        published.save_classwise_influence(
            path, [block], np.array([0, 1]), np.array([0]), np.zeros(2)
        )
    assert not path.exists()  # atomic: nothing half-written


def test_describe_recognizes_each_format(tmp_path):
    np.savez(tmp_path / "c.npz", scores=np.zeros(2), labels=np.zeros(2, np.int64))
    np.savez(tmp_path / "p.npz", tr_idx=[0], tt_idx=[0], infl=[0.2], mem=[0.3])
    np.savez(tmp_path / "m.npz", **_classwise_arrays())
    kinds = [published.describe(tmp_path / f"{n}.npz")[0] for n in "cpm"]
    assert kinds == ["cscores", "pairs", "classwise"]
    with zipfile.ZipFile(tmp_path / "m.npz") as archive:
        assert "tr_mem.npy" in archive.namelist()


# -------------------------------------------------------------------- command line


def _cli(*args):
    return run_script("tools/published_scores.py", *args)


def _export(kind: str, output, *args):
    """`--export=<kind> args... --output=<output>`, which must succeed."""
    result = _cli(f"--export={kind}", *args, f"--output={output}")
    assert result.returncode == 0, result.stderr
    return result


def test_cli_inspects_the_published_pairs():
    path = _shared("cifar100_high_infl_pairs_infl0.15_mem0.25.npz")
    result = _cli(f"--inspect={path}")
    assert result.returncode == 0, result.stderr
    assert "1015 high-influence pairs over 964 training and 888 test examples" in result.stdout
    assert "every pair meets the thresholds of its name" in result.stdout


def test_cli_exports_pairs_and_cscores_that_load_back(tmp_path):
    rng = np.random.default_rng(0)
    influence = rng.random((6, 20)).astype(np.float32) * 0.4
    memorization = rng.random(20)
    cscore = rng.random(20)
    scores = tmp_path / "scores.npz"
    np.savez(
        scores,
        influence=influence,
        memorization=memorization,
        cscore=cscore,
        influence_num_runs=np.int64(12),
    )
    labels = tmp_path / "labels.npz"
    np.savez(labels, tr_labels=rng.integers(0, 3, 20), tt_labels=rng.integers(0, 3, 6))
    pairs_out = tmp_path / "tiny_high_infl_pairs_infl0.15_mem0.25.npz"
    result = _export("pairs", pairs_out, f"--scores_file={scores}")
    expected = published.select_pairs_dense(influence, memorization)
    assert f"wrote {len(expected)} pairs" in result.stdout and "from 12 runs" in result.stdout
    back = published.load_influence_pairs(pairs_out)
    np.testing.assert_array_equal(back.keys(), expected.keys())
    assert back.provenance["scores"]["path"] == str(scores)

    cscores_out = tmp_path / "tiny-cscores.npz"
    _export("cscores", cscores_out, f"--scores_file={scores}", f"--labels={labels}")
    record = published.load_cscores(cscores_out)
    np.testing.assert_array_equal(record.scores, cscore)
    assert record.provenance["order"] == "tfds"


def test_cli_errors_are_one_line(tmp_path):
    pickled = tmp_path / "imagenet-cscores-with-filename.npz"
    np.savez(pickled, labels=[0], scores=[0.5], filenames=np.array(["a"], dtype=object))
    result = _cli(f"--inspect={pickled}")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"published_scores: error: {pickled}: filenames is an object array that numpy can only "
        "read by unpickling, which can run code from the file; pass allow_pickle=True only "
        "for a file you trust, e.g. the one downloaded from the paper's website"
    ]
    assert _cli(f"--inspect={pickled}", "--allow_pickle").returncode == 0
    result = _cli("--export=pairs", f"--output={tmp_path / 'x.npz'}")
    assert result.returncode == 2 and "needs --scores_file or --classwise_file" in result.stderr


def test_cli_exports_classwise_influence_from_runs(tmp_path):
    from heldout.testing.synthetic import SyntheticSpec, write_synthetic_experiment

    spec = SyntheticSpec(num_train=60, num_test=20, subset_ratios=(0.7,), runs_per_ratio=30)
    experiment = write_synthetic_experiment(tmp_path / "synthetic", spec)
    rng = np.random.default_rng(3)
    labels = tmp_path / "labels.npz"
    train_labels, test_labels = rng.integers(0, 4, 60), rng.integers(0, 4, 20)
    np.savez(labels, tr_labels=train_labels, tt_labels=test_labels)
    out = tmp_path / "synthetic_infl_matrix.npz"
    result = _export("classwise", out, f"--experiment_dir={experiment.path}", f"--labels={labels}")
    assert "class-wise influence of 4 classes (60 training, 20 test examples) from 30 runs" in (
        result.stdout
    )
    back = published.load_classwise_influence(out)
    dense = compute_influence([run.load_aux() for run in experiment.runs]).matrix
    for block in back.blocks.values():
        expected = dense[np.ix_(block.test_index, block.train_index)].T
        np.testing.assert_allclose(block.matrix, expected, rtol=1e-6, atol=1e-7)
    assert back.provenance["num_runs"] == 30 and back.provenance["subset_ratio"] == 0.7
    assert _cli(f"--inspect={out}").stdout.startswith(f"{out}: class-wise influence of 4")
