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
