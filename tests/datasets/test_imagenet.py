"""Indexed ImageNet TFRecords: build from a handful of generated images, read back."""

import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from heldout.datasets import DatasetError, get_source, imagenet
from heldout.datasets.jpeg import read_jpeg_frame
from heldout.datasets.tfrecord_builder import (
    ImageRecord,
    find_images,
    plan_records,
    read_index_list,
    synset_label_map,
    write_tfrecords,
)
from heldout.errors import UsageError

REPO = Path(__file__).resolve().parents[2]
# (synset folder, file name, height, width, channels, format); labels: sorted synsets → 0, 1.
IMAGES = [
    ("n01440764", "a.JPEG", 300, 400, 3, "jpeg"),
    ("n01440764", "b.JPEG", 256, 256, 3, "jpeg"),
    ("n01443537", "c.JPEG", 500, 240, 1, "jpeg"),  # grayscale JPEG: stored as is
    ("n01443537", "d.JPEG", 230, 260, 3, "png"),  # a PNG named .JPEG: re-encoded
    ("n01443537", "e.JPEG", 224, 224, 3, "jpeg"),
]
INDEX = {"a.JPEG": 3, "b.JPEG": 0, "c.JPEG": 4, "d.JPEG": 1, "e.JPEG": 2}


def _smooth_image(height, width, channels, seed):
    y, x = np.mgrid[0:height, 0:width]
    planes = [127 + 100 * np.sin((x / (17 + 5 * c) + y / (23 + seed)) + c) for c in range(channels)]
    return np.clip(np.stack(planes, -1), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def image_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("imagenet_images")
    for seed, (synset, name, height, width, channels, fmt) in enumerate(IMAGES):
        (root / synset).mkdir(exist_ok=True)
        pixels = _smooth_image(height, width, channels, seed)
        if fmt == "jpeg":
            data = tf.io.encode_jpeg(pixels, quality=100, chroma_downsampling=False)
        else:
            data = tf.io.encode_png(pixels)
        (root / synset / name).write_bytes(data.numpy())
    return root


@pytest.fixture(scope="module")
def built(image_dir, tmp_path_factory):
    index_file = tmp_path_factory.mktemp("index") / "index.csv"
    lines = ["filename,index,label"] + [f"{n},{i}" for n, i in INDEX.items()]
    index_file.write_text("\n".join(lines) + "\n")
    out = tmp_path_factory.mktemp("tfrecords")
    entries = read_index_list(index_file)
    records = plan_records(entries, find_images(image_dir), image_dir, synset_label_map(image_dir))
    summary = write_tfrecords(records, out, "validation", num_shards=2, num_threads=2)
    return out, summary


def _reference_preprocess(jpeg: bytes) -> np.ndarray:
    """Numpy version of the evaluation recipe: centre crop, TF1 bilinear resize, normalize."""
    pixels = tf.io.decode_jpeg(jpeg, channels=3).numpy().astype(np.float64) / 255.0
    height, width = pixels.shape[:2]
    side = int(min(height, width) * 224 / 256)
    top, left = (height - side + 1) // 2, (width - side + 1) // 2
    crop = pixels[top : top + side, left : left + side]
    source = np.arange(224) * (side / 224)  # half_pixel_centers=False: no half-pixel shift
    lo = np.floor(source).astype(int)
    hi = np.minimum(lo + 1, side - 1)
    frac = source - lo
    rows = crop[lo] * (1 - frac)[:, None, None] + crop[hi] * frac[:, None, None]
    out = rows[:, lo] * (1 - frac)[None, :, None] + rows[:, hi] * frac[None, :, None]
    return (out - np.array(imagenet.MEAN_RGB)) / np.array(imagenet.STDDEV_RGB)


def test_builder_writes_sorted_shards_and_metadata(built):
    out, summary = built
    assert summary.num_examples == 5 and summary.num_shards == 2
    assert summary.num_reencoded == 1  # the PNG
    names = sorted(p.name for p in out.iterdir())
    assert names == [
        "validation-00000-of-00002",
        "validation-00001-of-00002",
        "validation-metadata.json",
    ]
    meta = json.loads((out / "validation-metadata.json").read_text())
    assert meta["num_examples"] == 5 and meta["sorted_by_index"]


def test_reader_yields_index_order_labels_and_preprocessing(built, image_dir):
    out, _ = built
    source = get_source("imagenet", out)
    assert source.splits == ("validation",)
    assert source.split_size("test") == 5  # `test` means validation
    batches = list(source.as_dataset("test", batch_size=2).as_numpy_iterator())
    index = np.concatenate([b["index"] for b in batches])
    np.testing.assert_array_equal(index, np.arange(5))
    by_name = {name: synset for synset, name, *_ in IMAGES}
    expected_labels = [0 if by_name[n] == "n01440764" else 1 for n in sorted(INDEX, key=INDEX.get)]
    np.testing.assert_array_equal(np.concatenate([b["label"] for b in batches]), expected_labels)
    images = np.concatenate([b["image"] for b in batches])
    assert images.shape == (5, 224, 224, 3) and images.dtype == np.float32

    raw = list(source.raw_dataset("validation", with_filename=True).as_numpy_iterator())
    for example, image in zip(raw, images, strict=True):
        reference = _reference_preprocess(example["jpeg"])
        np.testing.assert_allclose(image, reference, atol=1e-4)
        # The grayscale original was kept byte for byte.
        name = example["filename"].decode()
        if name == "c.JPEG":
            assert example["jpeg"] == (image_dir / "n01443537" / name).read_bytes()


def test_reader_counts_records_without_metadata(built, tmp_path):
    out, _ = built
    for shard in out.glob("validation-0*"):
        (tmp_path / shard.name).write_bytes(shard.read_bytes())
    assert get_source("imagenet", tmp_path).split_size("validation") == 5
    (tmp_path / "validation-metadata.json").write_text("[5]")  # not the builder's
    with pytest.raises(DatasetError, match="validation-metadata.json: not the builder's"):
        get_source("imagenet", tmp_path).split_size("validation")
    (tmp_path / "validation-metadata.json").unlink()
    (tmp_path / "validation-00001-of-00002").unlink()
    source = get_source("imagenet", tmp_path)
    with pytest.raises(DatasetError, match="incomplete"):
        next(iter(source.as_dataset("validation", 2)))


def _build_cli(image_dir, index_file, output_dir, *more):
    """tools/build_imagenet_tfrecords.py, run as a user runs it."""
    return subprocess.run(
        [
            sys.executable,
            str(REPO / "tools" / "build_imagenet_tfrecords.py"),
            f"--image_dir={image_dir}",
            f"--index_file={index_file}",
            f"--output_dir={output_dir}",
            *more,
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=False,
    )


def test_cli_builds_the_same_records(image_dir, tmp_path):
    index_file = tmp_path / "index.txt"
    index_file.write_text("".join(f"{n} {i}\n" for n, i in INDEX.items()))
    out = tmp_path / "out"
    result = _build_cli(image_dir, index_file, out, "--split=validation")
    assert result.returncode == 0, result.stderr
    assert "wrote 5 examples in 5 shard(s)" in result.stdout
    sources = json.loads((out / "validation-metadata.json").read_text())["sources"]
    assert sources["index_file"]["path"] == str(index_file)
    assert sources["image_dir"] == str(image_dir)
    index = [b["index"] for b in get_source("imagenet", out).as_dataset("validation", 5)]
    np.testing.assert_array_equal(index[0], np.arange(5))


def test_index_list_errors(image_dir, tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_text("a.JPEG 0\nb.JPEG x\n")
    with pytest.raises(DatasetError, match=r"bad.txt:2"):
        read_index_list(bad)
    bad.write_text("a.JPEG 0\nb.JPEG 0\n")
    with pytest.raises(DatasetError, match="distinct"):
        read_index_list(bad)
    missing = tmp_path / "missing.txt"
    missing.write_text("zzz.JPEG 0\n")
    with pytest.raises(DatasetError, match="not found"):
        plan_records(read_index_list(missing), find_images(image_dir), image_dir)
    wrong_label = tmp_path / "wrong.txt"
    wrong_label.write_text("a.JPEG 0 1\n")  # a.JPEG is in the first synset: label 0
    with pytest.raises(DatasetError, match="disagree"):
        plan_records(
            read_index_list(wrong_label),
            find_images(image_dir),
            image_dir,
            synset_label_map(image_dir),
        )


def test_unreadable_index_and_labels_files_name_the_file(image_dir, tmp_path):
    for missing in (tmp_path / "gone.npz", tmp_path / "gone.txt"):
        with pytest.raises(DatasetError, match="gone"):
            read_index_list(missing, "validation")
    with pytest.raises(DatasetError, match="no-labels.txt: cannot read the labels file"):
        synset_label_map(image_dir, tmp_path / "no-labels.txt")


def test_published_npz_index_needs_opt_in(tmp_path):
    path = tmp_path / "imagenet_index.npz"
    names = np.array([b"b.JPEG", b"a.JPEG"], dtype=object)
    np.savez(
        path,
        tt_filenames=names,
        tt_labels=np.array([0, 0]),
        tr_filenames=names,
        tr_labels=np.array([0, 0]),
    )
    with pytest.raises(DatasetError, match="allow_pickle"):
        read_index_list(path, "validation")
    entries = read_index_list(path, "validation", allow_pickle=True)
    assert [(e.filename, e.index, e.label) for e in entries] == [("b.JPEG", 0, 0), ("a.JPEG", 1, 0)]


def test_missing_folder_or_shards(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        get_source("imagenet", tmp_path / "nope")
    with pytest.raises(DatasetError, match="no TFRecord shards"):
        get_source("imagenet", tmp_path)
    with pytest.raises(DatasetError, match="needs data_dir"):
        get_source("imagenet")


# ----------------------------------------------------------------- CMYK, checks, errors


def _pil():
    return pytest.importorskip("PIL.Image", reason="Pillow (matplotlib's dependency) is needed")


def _pil_jpeg(mode: str, colour, size=(32, 24), **options) -> bytes:
    buffer = io.BytesIO()
    _pil().new(mode, size, colour).save(buffer, "JPEG", **options)
    return buffer.getvalue()


def test_jpeg_header_tells_cmyk_from_rgb_and_grayscale():
    cmyk = read_jpeg_frame(_pil_jpeg("CMYK", (0, 255, 255, 0)))
    assert (cmyk.components, cmyk.height, cmyk.width) == (4, 24, 32)
    assert cmyk.is_cmyk and cmyk.color_space == "cmyk" and cmyk.adobe_transform == 0
    rgb = read_jpeg_frame(_pil_jpeg("RGB", (255, 0, 0), progressive=True))  # SOF2
    assert rgb.color_space == "rgb" and not rgb.is_cmyk and rgb.adobe_transform is None
    assert read_jpeg_frame(_pil_jpeg("L", 128)).color_space == "grayscale"
    png = io.BytesIO()
    _pil().new("RGB", (4, 4)).save(png, "PNG")
    assert read_jpeg_frame(png.getvalue()) is None
    assert read_jpeg_frame(_pil_jpeg("RGB", (1, 2, 3))[:40]) is None  # header cut short


def test_cmyk_jpeg_is_reencoded_as_rgb(tmp_path):
    """TF decodes CMYK to 3 channels, so the decoded shape hid them; the header does not."""
    image_dir = tmp_path / "images"
    (image_dir / "n01440764").mkdir(parents=True)
    cmyk_bytes = _pil_jpeg("CMYK", (0, 255, 255, 0), quality=95)  # pure red in inks
    rgb_bytes = _pil_jpeg("RGB", (0, 0, 255), quality=95)
    (image_dir / "n01440764" / "cmyk.JPEG").write_bytes(cmyk_bytes)
    (image_dir / "n01440764" / "rgb.JPEG").write_bytes(rgb_bytes)
    assert read_jpeg_frame(cmyk_bytes).is_cmyk
    index_file = tmp_path / "index.txt"
    index_file.write_text("cmyk.JPEG 0\nrgb.JPEG 1\n")
    records = plan_records(
        read_index_list(index_file), find_images(image_dir), image_dir, synset_label_map(image_dir)
    )
    out = tmp_path / "out"
    summary = write_tfrecords(records, out, "validation", num_shards=1, num_threads=1)
    assert summary.num_reencoded == 1
    meta = json.loads((out / "validation-metadata.json").read_text())
    assert meta["reencoded_as_rgb_jpeg"] == ["cmyk.JPEG"]
    stored = {
        example["filename"].decode(): example["jpeg"]
        for example in get_source("imagenet", out)
        .raw_dataset("validation", with_filename=True)
        .as_numpy_iterator()
    }
    assert stored["rgb.JPEG"] == rgb_bytes  # RGB kept byte for byte
    frame = read_jpeg_frame(stored["cmyk.JPEG"])
    assert frame.color_space == "rgb" and (frame.height, frame.width) == (24, 32)
    # Any reader, not only TensorFlow's, now sees red.
    pixels = np.asarray(_pil().open(io.BytesIO(stored["cmyk.JPEG"])))
    assert pixels.shape == (24, 32, 3)
    np.testing.assert_allclose(pixels.reshape(-1, 3).mean(0), [255, 0, 0], atol=3)


def test_duplicate_names_are_found_in_linear_time(tmp_path):
    """`names.count` per name made 1.28 M names take hours; 200 k must take a moment."""
    names = np.array([f"n{i:08d}.JPEG" for i in range(200_000)])
    names[123_456] = names[7]
    path = tmp_path / "index.npz"
    np.savez(path, tt_filenames=names)  # a unicode array: no pickle needed
    with pytest.raises(DatasetError, match=r"1 filename\(s\) listed more than once.*n00000007"):
        read_index_list(path, "validation")


def test_duplicate_and_negative_indices_are_reported(tmp_path):
    listing = tmp_path / "index.txt"
    listing.write_text("a.JPEG 3\nb.JPEG 3\nc.JPEG 4\nd.JPEG 4\n")
    with pytest.raises(DatasetError, match=r"2 appear more than once, e\.g\. \[3, 4\]"):
        read_index_list(listing)
    listing.write_text("a.JPEG -2\nb.JPEG 0\n")
    with pytest.raises(DatasetError, match=r"non-negative; found 1, e\.g\. \[-2\]"):
        read_index_list(listing)
    binary = tmp_path / "binary.txt"
    binary.write_bytes(b"\xff\xfe\x00\x81 not text")
    with pytest.raises(DatasetError, match="binary.txt: cannot read the index list as text"):
        read_index_list(binary)


def test_an_undecodable_image_names_the_file_and_leaves_no_temporary(tmp_path):
    image_dir = tmp_path / "images"
    image_dir.mkdir()
    (image_dir / "broken.JPEG").write_bytes(b"\xff\xd8\xff\xe0 this is not a JPEG")
    records = [ImageRecord(image_dir / "broken.JPEG", 0, 1)]
    out = tmp_path / "out"
    with pytest.raises(DatasetError, match="broken.JPEG: not a decodable image"):
        write_tfrecords(records, out, "validation", num_shards=1)
    assert list(out.iterdir()) == []
    with pytest.raises(UsageError, match="num_shards must be in"):
        write_tfrecords(records, out, "validation", num_shards=2)


def test_cli_reports_a_truncated_index_file_in_one_line(image_dir, tmp_path):
    index = tmp_path / "imagenet_index.npz"
    np.savez(index, tt_filenames=np.array(["a.JPEG"]))
    index.write_bytes(index.read_bytes()[:100])
    result = _build_cli(image_dir, index, tmp_path / "out")
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"build_imagenet_tfrecords: error: {index}: cannot read")


def test_builder_never_writes_through_a_link_planted_at_a_temporary_name(image_dir, tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    out = tmp_path / "out"
    out.mkdir()
    planted = out / ".validation-00000-of-00001.tmp"  # the name temporaries once had
    planted.symlink_to(victim)
    entries = [(name, index) for name, index in INDEX.items()]
    index_file = tmp_path / "index.csv"
    index_file.write_text("filename,index\n" + "".join(f"{n},{i}\n" for n, i in entries))
    records = plan_records(
        read_index_list(index_file), find_images(image_dir), image_dir, synset_label_map(image_dir)
    )
    write_tfrecords(records, out, "validation", num_shards=1, num_threads=1)
    assert victim.read_text() == "precious\n"
    assert sorted(p.name for p in out.iterdir()) == [
        ".validation-00000-of-00001.tmp",  # not ours: left as it was
        "validation-00000-of-00001",
        "validation-metadata.json",
    ]
