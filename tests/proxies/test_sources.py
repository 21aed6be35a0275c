"""The proxy sources: recorded in the file, never compared silently with another."""

from __future__ import annotations

import numpy as np
import pytest

from heldout.errors import UsageError
from heldout.proxies import compute


def test_a_file_records_its_source_and_old_files_read_as_inference_sync():
    assert compute.proxy_source_of({"proxy_source": np.asarray("inference")}, "p.npz") == (
        "inference"
    )
    assert compute.proxy_source_of({"cbtl": np.zeros(3)}, "old.npz") == "inference_sync"
    with pytest.raises(UsageError, match="new.npz: unknown proxy_source 'free'"):
        compute.proxy_source_of({"proxy_source": np.asarray("free")}, "new.npz")


def test_proxies_of_two_sources_are_refused_unless_asked():
    with pytest.raises(UsageError, match="ref.npz was made with proxy_source=inference_sync"):
        compute.check_same_source("training_passes", "inference_sync", "ref.npz")
    compute.check_same_source("training_passes", "inference", "ref.npz", allow_mismatch=True)
    compute.check_same_source("inference", "inference_sync", "ref.npz")  # one statistic
    compute.check_same_source("training_passes", "training_passes", "ref.npz")


def test_proxy_options_record_and_check_the_source():
    assert compute.ProxyOptions().proxy_source == "training_passes"
    assert compute.ProxyOptions(proxy_source="inference").as_json()["proxy_source"] == ("inference")
    with pytest.raises(UsageError, match="unknown proxy_source 'free'"):
        compute.ProxyOptions(proxy_source="free")


@pytest.fixture(scope="module")
def fashion_slice(tmp_path_factory) -> str:
    from training_slice import write_fashion_slice

    return write_fashion_slice(tmp_path_factory.mktemp("fashion"), 400, 50)


def _proxies(data_dir: str, source: str):
    from heldout.training.recipe import Recipe

    recipe = Recipe(data_dir=data_dir, epochs=3, batch_size=64, mlp_hidden_sizes=(32, 16), seed=5)
    options = compute.ProxyOptions(
        recipe=recipe,
        num_seeds=2,
        proxies=("learning_speed", "confidence", "kde_hidden"),
        kde_hidden_every=1,
        proxy_source=source,
    )
    return compute.compute_proxies(options)


def test_the_overlapped_inference_pass_is_bit_identical_to_the_synchronous_one(fashion_slice):
    sync = _proxies(fashion_slice, "inference_sync")
    overlapped = _proxies(fashion_slice, "inference")
    assert list(sync.proxies) == list(overlapped.proxies)
    for name, values in sync.proxies.items():
        np.testing.assert_array_equal(overlapped.proxies[name], values, err_msg=name)
    for name, table in sync.by_epoch.items():
        assert table.shape[0] == 3
        np.testing.assert_array_equal(overlapped.by_epoch[name], table, err_msg=name)
    np.testing.assert_array_equal(overlapped.bandwidth_hidden, sync.bandwidth_hidden)
    # The free statistics are another definition (training mode, before each update),
    # while the hidden densities come from the same inference pass whatever the source.
    free = _proxies(fashion_slice, "training_passes")
    assert not np.array_equal(free.proxies["cumulative_loss"], sync.proxies["cumulative_loss"])
    assert set(np.unique(free.proxies["cbtl"] * 2)) <= set(range(7))  # mean of two seeds
    np.testing.assert_array_equal(
        free.proxies["kde_hidden_pm_label"], sync.proxies["kde_hidden_pm_label"]
    )


def _proxies_file(path, source):
    arrays = dict(index=np.arange(40), labels=np.arange(40) % 10, cbtl=np.arange(40.0) % 7)
    if source is not None:
        arrays[compute.PROXY_SOURCE_KEY] = np.asarray(source)
    np.savez(path, **arrays)
    return path


@pytest.mark.parametrize("theirs", ["inference", None])  # None: a file from before the key
def test_compare_refuses_proxies_of_another_source_unless_asked(tmp_path, theirs):
    from tool_runs import run_script

    ours = _proxies_file(tmp_path / "ours.npz", "training_passes")
    reference = _proxies_file(tmp_path / "ref.npz", theirs)
    command = ("tools/compare_scores.py", f"--scores_file={ours}", "--key=cbtl")
    done = run_script(*command, f"--reference={reference}", timeout=120)
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    expected = theirs or compute.LEGACY_PROXY_SOURCE
    assert f"{reference} was made with proxy_source={expected}" in done.stderr
    done = run_script(*command, f"--reference={reference}", "--allow_mismatch", timeout=120)
    assert done.returncode == 0, done.stderr
    assert f"--allow_mismatch given: {reference} has proxy_source={expected}" in done.stdout
    same = _proxies_file(tmp_path / "same.npz", "training_passes")
    done = run_script(*command, f"--reference={same}", timeout=120)
    assert done.returncode == 0 and "allow_mismatch" not in done.stdout, done.stderr
