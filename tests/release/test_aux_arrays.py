"""Every rule of the aux_arrays format, and the index-order views built on it."""

import io
import zipfile

import numpy as np
import pytest

from heldout.release import aux_arrays
from heldout.release.aux_arrays import (
    REQUIRED_KEYS,
    AuxArraysError,
    aux_from_predictions,
    load_aux_arrays,
    save_aux_arrays,
    validate,
)


def _valid_arrays(num_train=10, num_test=6, seed=0):
    rng = np.random.default_rng(seed)
    mask = np.zeros(num_train, bool)
    mask[rng.choice(num_train, num_train // 2, replace=False)] = True
    aux = aux_from_predictions(
        mask, rng.random(num_train) < 0.5, rng.random(num_test) < 0.5, rng=rng
    )
    return aux.as_dict()


def _write(path, arrays):
    np.savez(path, **arrays)
    return path


def test_round_trip_and_index_order_views(tmp_path):
    rng = np.random.default_rng(1)
    mask = rng.random(20) < 0.6
    correct_train = rng.random(20) < 0.5
    correct_test = rng.random(7) < 0.5
    aux = aux_from_predictions(mask, correct_train, correct_test, rng=rng)
    # The evaluation order is shuffled, yet the views come back in index order.
    assert not np.array_equal(aux.index_test, np.arange(7))
    path = tmp_path / "aux_arrays.npz"
    save_aux_arrays(path, aux)
    loaded = load_aux_arrays(path)
    assert loaded.source == str(path)
    np.testing.assert_array_equal(loaded.train_mask(), mask)
    np.testing.assert_array_equal(loaded.train_correctness(), correct_train)
    np.testing.assert_array_equal(loaded.test_correctness(), correct_test)
    assert (loaded.num_train, loaded.num_test) == (20, 7)
    assert loaded.index_train.dtype == np.int64
    assert loaded.correctness_train.dtype == np.bool_


def test_integer_correctness_is_accepted_as_bool(tmp_path):
    arrays = _valid_arrays()
    arrays["correctness_test"] = arrays["correctness_test"].astype(np.int32)
    aux = load_aux_arrays(_write(tmp_path / "a.npz", arrays))
    assert aux.correctness_test.dtype == np.bool_


@pytest.mark.parametrize("key", REQUIRED_KEYS)
def test_missing_key_is_named(tmp_path, key):
    arrays = _valid_arrays()
    del arrays[key]
    path = _write(tmp_path / "a.npz", arrays)
    with pytest.raises(AuxArraysError, match=rf"{tmp_path}.*missing keys \['{key}'\]"):
        load_aux_arrays(path)


def test_extra_key_is_named(tmp_path):
    arrays = _valid_arrays()
    arrays["logits"] = np.zeros(3)
    with pytest.raises(AuxArraysError, match=r"unexpected keys \['logits'\]"):
        load_aux_arrays(_write(tmp_path / "a.npz", arrays))


@pytest.mark.parametrize(
    "key,values,message",
    [
        ("correctness_train", "float", "dtype float64; expected bool"),
        ("correctness_test", "twos", "integers other than 0 and 1"),
        ("index_test", "float", "index_test has dtype float64; expected integers"),
        ("index_train", "2d", "must be 1-D"),
    ],
)
def test_wrong_dtype_or_shape(tmp_path, key, values, message):
    arrays = _valid_arrays()
    if values == "float":
        arrays[key] = arrays[key].astype(np.float64)
    elif values == "twos":
        arrays[key] = np.full(arrays[key].shape, 2, np.int64)
    else:
        arrays[key] = arrays[key].reshape(1, -1)
    with pytest.raises(AuxArraysError, match=message):
        load_aux_arrays(_write(tmp_path / "a.npz", arrays))


def test_correctness_length_must_match_index(tmp_path):
    arrays = _valid_arrays()
    arrays["correctness_removed"] = arrays["correctness_removed"][:-1]
    with pytest.raises(AuxArraysError, match="correctness_removed has 4 entries but index_removed"):
        load_aux_arrays(_write(tmp_path / "a.npz", arrays))


def test_train_and_removed_must_be_a_permutation(tmp_path):
    arrays = _valid_arrays()
    arrays["index_removed"] = arrays["index_removed"].copy()
    arrays["index_removed"][0] = arrays["index_train"][0]  # one example in both
    with pytest.raises(AuxArraysError, match="index_train ∪ index_removed is not a permutation"):
        load_aux_arrays(_write(tmp_path / "a.npz", arrays))


def test_index_out_of_range(tmp_path):
    arrays = _valid_arrays()
    arrays["index_test"] = arrays["index_test"] + 100
    with pytest.raises(AuxArraysError, match="index_test is not a permutation of 0..5"):
        load_aux_arrays(_write(tmp_path / "a.npz", arrays))


def test_subsample_idx_must_match_index_train(tmp_path):
    arrays = _valid_arrays()
    arrays["subsample_idx"] = arrays["index_removed"]
    with pytest.raises(AuxArraysError, match="subsample_idx .* does not hold the same examples"):
        load_aux_arrays(_write(tmp_path / "a.npz", arrays))


def test_pickled_object_arrays_are_refused(tmp_path):
    arrays = _valid_arrays()
    arrays["index_test"] = np.array([object()] * 6, dtype=object)
    path = tmp_path / "a.npz"
    np.savez(path, **arrays)
    with pytest.raises(AuxArraysError, match="pickled object arrays, which are refused"):
        load_aux_arrays(path)


def test_truncated_file(tmp_path):
    path = _write(tmp_path / "a.npz", _valid_arrays())
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(AuxArraysError, match=rf"{path}: cannot read"):
        load_aux_arrays(path)


def test_missing_file(tmp_path):
    with pytest.raises(AuxArraysError, match="file not found"):
        load_aux_arrays(tmp_path / "nope.npz")


def test_save_is_atomic_and_leaves_no_temporary(tmp_path):
    aux = validate(_valid_arrays())
    save_aux_arrays(tmp_path / "aux_arrays.npz", aux)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["aux_arrays.npz"]
    with zipfile.ZipFile(io.BytesIO((tmp_path / "aux_arrays.npz").read_bytes())) as z:
        assert sorted(z.namelist()) == sorted(f"{key}.npy" for key in REQUIRED_KEYS)


def test_aux_from_predictions_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="full training split"):
        aux_from_predictions(np.ones(5, bool), np.ones(4, bool), np.ones(3, bool))


# --- reading without zipfile's copies, validating without sorting --------------------------


def test_compressed_runs_are_read_through_the_one_loader(tmp_path):
    np.savez_compressed(tmp_path / "run.npz", **_valid_arrays())
    assert load_aux_arrays(tmp_path / "run.npz").num_train == 10


def test_a_flipped_bit_in_an_array_is_caught_by_the_crc(tmp_path):
    path = _write(tmp_path / "a.npz", _valid_arrays())
    data = bytearray(path.read_bytes())
    start = data.index(b"correctness_test.npy")
    header = data.index(b"\x93NUMPY", start)
    data[header + 128] ^= 1  # the first correctness byte: still a valid bool array
    path.write_bytes(bytes(data))
    with pytest.raises(AuxArraysError, match=rf"{path}: cannot read.*CRC"):
        load_aux_arrays(path)


def test_validation_never_sorts(tmp_path, monkeypatch):
    arrays = _valid_arrays(num_train=1000, num_test=300)
    path = _write(tmp_path / "a.npz", arrays)

    def no_sorting(*args, **kwargs):
        raise AssertionError("validation sorted an array")

    for name in ("sort", "argsort", "unique", "lexsort"):
        monkeypatch.setattr(np, name, no_sorting)
    aux = load_aux_arrays(path)
    monkeypatch.undo()
    assert (aux.num_train, aux.num_test) == (1000, 300)
    for key, expected in arrays.items():  # validated and returned whole, not just accepted
        np.testing.assert_array_equal(getattr(aux, key), expected, err_msg=key)


@pytest.mark.parametrize(
    "change, message",
    [
        # Sizes still add up to N; one example twice in index_train, another missing.
        (lambda a: a["index_train"].__setitem__(1, a["index_train"][0]), "repeated"),
        (lambda a: a["index_removed"].__setitem__(0, -1), r"values range -1\.\."),
        (lambda a: a["index_test"].__setitem__(0, a["index_test"][1]), "index_test is not"),
        (lambda a: a["subsample_idx"].__setitem__(1, a["subsample_idx"][0]), "subsample_idx"),
        (lambda a: a["subsample_idx"].__setitem__(0, 10), "subsample_idx"),
        (lambda a: a["subsample_idx"].__setitem__(0, -1), "subsample_idx"),
        (lambda a: a["index_train"].__setitem__(0, 10), r"values range .*\.\.10"),
        (lambda a: a["index_test"].__setitem__(0, -6), "index_test is not"),
    ],
)
def test_linear_checks_catch_repeats_gaps_and_wraparound(tmp_path, checks, change, message):
    arrays = {key: value.copy() for key, value in _valid_arrays().items()}
    change(arrays)
    with pytest.raises(AuxArraysError, match=message):
        load_aux_arrays(_write(tmp_path / "a.npz", arrays))


@pytest.fixture(params=["numpy", "compiled"])
def checks(request, monkeypatch):
    """Runs a test with the numpy checks, and again with the compiled ones (numba)."""
    if request.param == "compiled":
        aux_kernels = pytest.importorskip(
            "heldout.release.aux_kernels", reason="numba not installed"
        )
        aux_kernels.warm_up()
        monkeypatch.setattr(aux_arrays, "_compiled", aux_kernels)
    else:
        monkeypatch.setattr(aux_arrays, "_compiled", None)
    return request.param


@pytest.mark.parametrize("seed", range(3))
def test_compiled_and_numpy_checks_give_the_same_views(seed, monkeypatch):
    from heldout.release import aux_kernels

    arrays = _valid_arrays(num_train=301, num_test=77, seed=seed)
    monkeypatch.setattr(aux_arrays, "_compiled", None)
    by_numpy = validate(arrays)
    aux_kernels.warm_up()
    monkeypatch.setattr(aux_arrays, "_compiled", aux_kernels)
    by_kernels = validate(arrays)
    for view in ("train_mask", "train_correctness", "test_correctness"):
        np.testing.assert_array_equal(getattr(by_kernels, view)(), getattr(by_numpy, view)())


def test_index_order_views_are_built_once_and_read_only(tmp_path):
    arrays = _valid_arrays()
    aux = load_aux_arrays(_write(tmp_path / "a.npz", arrays))
    assert aux.train_mask() is aux.train_mask()
    for view in (aux.train_mask(), aux.train_correctness(), aux.test_correctness()):
        assert not view.flags.writeable and view.dtype == np.bool_
        assert set(np.unique(view.view(np.uint8))) <= {0, 1}  # proper bools
    expected = aux_from_predictions(
        aux.train_mask(), aux.train_correctness(), aux.test_correctness()
    )
    rebuilt = validate(expected.as_dict())
    np.testing.assert_array_equal(rebuilt.train_mask(), aux.train_mask())
    # Arrays of the right dtype are taken as they are, not copied.
    validated = validate(arrays)
    assert validated.index_train is arrays["index_train"]


def test_non_canonical_bool_bytes_read_as_true(tmp_path, checks):
    arrays = _valid_arrays()
    raw = arrays["correctness_test"].view(np.uint8).copy()
    raw[raw == 1] = 7  # a bool array whose True bytes are not 1
    arrays["correctness_test"] = raw.view(np.bool_)
    aux = validate(arrays)
    expected = np.zeros(aux.num_test, bool)
    expected[arrays["index_test"]] = raw != 0
    np.testing.assert_array_equal(aux.test_correctness().view(np.uint8), expected)


def test_replace_does_not_carry_stale_views():
    import dataclasses

    aux = validate(_valid_arrays())
    flipped = dataclasses.replace(aux, correctness_test=~aux.correctness_test)
    np.testing.assert_array_equal(flipped.test_correctness(), ~aux.test_correctness())
