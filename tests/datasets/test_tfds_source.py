"""TFDS sources read offline: a synthetic CIFAR-10 and the real Fashion-MNIST (Debian files).

Both datasets are prepared with `prepare_offline` from local files (no network), which
must never write into the installed `tensorflow_datasets` package (its checksum lists
included): every file there keeps its bytes and its modification time.
"""

import hashlib
import io
import json
import os
import tarfile
from pathlib import Path

import numpy as np
import pytest
from tool_runs import run_script

from heldout.datasets import DatasetError, get_source
from heldout.datasets.idx import DEBIAN_FASHION_MNIST_DIR, load_idx_split
from heldout.datasets.order import OrderMapping, match_orders, permute_scores
from heldout.datasets.tfds_source import TfdsSource, original_to_tfds_mapping, prepare_offline

CIFAR_PER_BATCH = 4  # 5 train batch files → 20 train examples; 5 test examples


def _tfds_package_state() -> tuple[dict, dict]:
    """(size, mtime_ns) of every file in the installed TFDS package, and the SHA-256 of its
    checksum lists (`url_checksums/*.txt`, `checksums.tsv`).

    A rewrite that is later restored keeps the bytes but not the mtime, so the first dict
    catches what a bytes-only comparison would miss.
    """
    import tensorflow_datasets as tfds

    root = Path(tfds.__file__).parent
    stats, hashes = {}, {}
    for folder, _, files in os.walk(root):
        for name in files:
            path = Path(folder) / name
            stat = path.stat()
            stats[str(path)] = (stat.st_size, stat.st_mtime_ns)
            if name == "checksums.tsv" or (
                name.endswith(".txt") and folder.endswith("url_checksums")
            ):
                hashes[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
    assert any(p.endswith("url_checksums/fashion_mnist.txt") for p in hashes)
    return stats, hashes


def _prepare_leaving_tfds_alone(name, data_dir, manual_dir):
    stats, hashes = _tfds_package_state()
    source = prepare_offline(name, data_dir, manual_dir)
    stats_after, hashes_after = _tfds_package_state()
    assert hashes_after == hashes, "a TFDS checksum list changed"
    changed = sorted(
        path
        for path in stats.keys() | stats_after.keys()
        if stats.get(path) != stats_after.get(path)
    )
    assert not changed, f"prepare_offline wrote into the TFDS package: {changed[:5]}"
    return source


def _cifar_tarball(path: Path, rng) -> tuple[dict, dict]:
    """A CIFAR-10 binary tarball with tiny batch files; returns the original arrays."""
    originals = {}
    members = {"cifar-10-batches-bin/batches.meta.txt": "\n".join(f"c{i}" for i in range(10))}
    files = {"train": [f"data_batch_{i}.bin" for i in range(1, 6)], "test": ["test_batch.bin"]}
    for split, names in files.items():
        images, labels = [], []
        for name in names:
            n = CIFAR_PER_BATCH if split == "train" else 5
            batch_images = rng.integers(0, 256, size=(n, 3, 32, 32), dtype=np.uint8)
            batch_labels = rng.integers(0, 10, size=n, dtype=np.uint8)
            records = np.concatenate([batch_labels[:, None], batch_images.reshape(n, -1)], axis=1)
            members[f"cifar-10-batches-bin/{name}"] = records.tobytes()
            images.append(batch_images.transpose(0, 2, 3, 1))
            labels.append(batch_labels)
        originals[split] = (np.concatenate(images), np.concatenate(labels).astype(np.int64))
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            data = data.encode() if isinstance(data, str) else data
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return originals


@pytest.fixture(scope="module")
def synthetic_cifar10(tmp_path_factory):
    manual = tmp_path_factory.mktemp("cifar_manual")
    originals = _cifar_tarball(manual / "cifar-10-binary.tar.gz", np.random.default_rng(0))
    data_dir = tmp_path_factory.mktemp("tfds_cifar")
    source = _prepare_leaving_tfds_alone("cifar10", data_dir, manual)
    return source, data_dir, originals


def test_cifar_original_index_from_id(synthetic_cifar10):
    source, data_dir, originals = synthetic_cifar10
    assert source.name == "cifar10:3.0.2"  # the release's version by default
    assert source.num_classes == 10 and source.image_shape == (32, 32, 3)
    for split, size in (("train", 5 * CIFAR_PER_BATCH), ("test", 5)):
        assert source.split_size(split) == size
        arrays = source.load_arrays(split)
        positions = source.original_positions(split)
        np.testing.assert_array_equal(arrays.original_index, positions)
        assert sorted(positions) == list(range(size))
        # TFDS example i is original example positions[i].
        original_images, original_labels = originals[split]
        np.testing.assert_array_equal(arrays.images, original_images[positions])
        np.testing.assert_array_equal(arrays.labels, original_labels[positions])
    assert not np.array_equal(source.original_positions("train"), np.arange(20)), (
        "TFDS order happens to equal the original order; the test would prove nothing"
    )


def test_cifar_batches_and_score_mapping(synthetic_cifar10):
    source, data_dir, originals = synthetic_cifar10
    # get_source opens the same prepared folder; batches are in TFDS order.
    same = get_source("cifar10", data_dir)
    batches = list(same.as_dataset("train", batch_size=8).as_numpy_iterator())
    np.testing.assert_array_equal(np.concatenate([b["index"] for b in batches]), np.arange(20))
    original_index = np.concatenate([b["original_index"] for b in batches])
    np.testing.assert_array_equal(original_index, source.original_positions("train"))
    image = np.concatenate([b["image"] for b in batches])
    assert image.dtype == np.float32 and 0.0 <= image.min() and image.max() <= 1.0
    np.testing.assert_allclose(image, source.load_arrays("train").images / 255.0, rtol=1e-6)

    # Scores published in original order → TFDS order, checked with the labels.
    mapping = OrderMapping.from_positions_in_a(original_index, "original", "tfds")
    original_labels = originals["train"][1]
    scores_original = np.linspace(0, 1, 20)
    scores_tfds = permute_scores(
        scores_original, mapping, original_labels, source.load_arrays("train").labels
    )
    np.testing.assert_array_equal(scores_tfds, scores_original[original_index])


def test_unprepared_data_dir_is_a_clear_error(tmp_path):
    with pytest.raises(DatasetError, match="not prepared") as info:
        get_source("cifar100", tmp_path)
    assert "never downloads" in str(info.value)
    # Any TFDS dataset may be read, but only from a prepared data_dir.
    with pytest.raises(DatasetError, match="'svhn_cropped'.* not prepared"):
        TfdsSource("svhn_cropped", tmp_path)
    with pytest.raises(DatasetError, match="cannot open TFDS dataset 'cifar10:9.9.9'"):
        TfdsSource("cifar10:9.9.9", tmp_path)


@pytest.fixture(scope="module")
def fashion_mnist_tfds(tmp_path_factory):
    if not Path(DEBIAN_FASHION_MNIST_DIR).is_dir():
        pytest.skip("Debian dataset-fashion-mnist is not installed")
    data_dir = tmp_path_factory.mktemp("tfds_fashion")
    source = _prepare_leaving_tfds_alone("fashion_mnist", data_dir, DEBIAN_FASHION_MNIST_DIR)
    # Our checksums, from our own folder, record what the dataset was prepared from.
    ours = (data_dir / "heldout_checksums" / "fashion_mnist.tsv").read_text().splitlines()
    debian = Path(DEBIAN_FASHION_MNIST_DIR) / "train-images-idx3-ubyte.gz"
    digest = hashlib.sha256(debian.read_bytes()).hexdigest()
    assert any(line.endswith(f"\t{digest}\ttrain-images-idx3-ubyte.gz") for line in ours)
    return source


@pytest.mark.slow
def test_fashion_mnist_tfds_order_maps_to_idx_order(fashion_mnist_tfds):
    """The real-data check of the order mapping: IDX (original) order ↔ TFDS order."""
    assert not fashion_mnist_tfds.has_original_index  # no `id`: must match images
    for split in ("train", "test"):
        idx = load_idx_split(DEBIAN_FASHION_MNIST_DIR, split)
        tfds_arrays = fashion_mnist_tfds.load_arrays(split)
        mapping = match_orders(
            idx.images, tfds_arrays.images, idx.labels, tfds_arrays.labels, "idx", "tfds"
        )
        np.testing.assert_array_equal(idx.images[mapping.b_to_a], tfds_arrays.images)
        np.testing.assert_array_equal(idx.labels[mapping.b_to_a], tfds_arrays.labels)
        assert not np.array_equal(mapping.a_to_b, np.arange(len(mapping)))
        if split == "train":
            # Release spec: the first TFDS train example is IDX example 16399.
            assert mapping.b_to_a[0] == 16399
            # Moving per-example values IDX → TFDS and back is the identity.
            values = np.arange(len(mapping), dtype=np.float64)
            moved = permute_scores(values, mapping, idx.labels, tfds_arrays.labels)
            np.testing.assert_array_equal(moved, mapping.b_to_a)
            np.testing.assert_array_equal(permute_scores(moved, mapping.inverse()), values)
            # The same mapping through the helper the CLI uses (Debian folder by default).
            helper = original_to_tfds_mapping(fashion_mnist_tfds, split)
            np.testing.assert_array_equal(helper.a_to_b, mapping.a_to_b)


def test_map_order_cli_on_cifar(synthetic_cifar10, tmp_path):
    source, data_dir, originals = synthetic_cifar10
    scores = np.linspace(0, 1, 20)
    published = tmp_path / "cscores-orig-order.npz"
    np.savez(published, scores=scores, labels=originals["train"][1])
    output = tmp_path / "cscores-tfds.npz"
    result = run_script(
        "tools/map_order.py",
        f"--scores_file={published}",
        "--dataset=cifar10",
        f"--data_dir={data_dir}",
        f"--output={output}",
    )
    assert result.returncode == 0, result.stderr
    assert f"to {output}" in result.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == [published.name, output.name]
    positions = source.original_positions("train")
    with np.load(output) as mapped:
        np.testing.assert_array_equal(mapped["scores"], scores[positions])
        np.testing.assert_array_equal(mapped["original_index"], positions)
        provenance = json.loads(str(mapped["provenance"]))
    assert provenance["scores"]["path"] == str(published)
    assert (provenance["dataset"], provenance["split"]) == ("cifar10:3.0.2", "train")
    assert provenance["labels_checked"] is True


def test_prepare_offline_names_missing_files_before_any_download(tmp_path):
    (tmp_path / "manual").mkdir()
    (tmp_path / "manual" / "train-images-idx3-ubyte.gz").write_bytes(b"x")
    with pytest.raises(DatasetError, match=r"missing \[.*t10k-images-idx3-ubyte.gz") as info:
        prepare_offline("fashion_mnist", tmp_path / "data", tmp_path / "manual")
    assert "Nothing is downloaded" in str(info.value)
    assert not (tmp_path / "data" / "fashion_mnist").exists()
