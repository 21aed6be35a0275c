"""Benchmark: one-pass download + MD5 + extract over loopback vs `tar -xzf` of a local copy.

Builds a gzip tarball of many small .npz files laid out like a release
(`<experiment>/<ratio>/<run>/{aux_arrays.npz,weights.npz}`), serves it from a separate
process with the tests' HTTP server, and times, in the same run and alternating:
  tar:       `tar -xzf local.tar.gz -C DIR`
  tar+sync:  the same, then `sync -f DIR` (the files durable, as ours are)
  ours:      `heldout.download.download(url, DIR, md5=..., extract=True)` (HTTP, MD5,
             inflate, safe extraction with temporary names, each file fsynced before its
             rename)
Prints the times (median and best of --repeats) and the ratios ours/tar and
ours/(tar+sync). Goal: <= 1.15 against tar+sync, the like-for-like reference (plain tar
leaves the data in the page cache, where a crash loses it).

  python bench/bench_download.py --size_mb=200
"""

from __future__ import annotations

import hashlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

import numpy as np
from absl import app, flags

from heldout.download import download, pipeline

FLAGS = flags.FLAGS
flags.DEFINE_integer("size_mb", 1000, "Uncompressed size of the tarball's content, in MB.")
flags.DEFINE_integer("examples", 8000, "Examples per aux array (sets the file size, ~100 KB).")
flags.DEFINE_integer("repeats", 5, "Timed runs of each side (median reported).")
flags.DEFINE_enum(
    "inflate", "fastest", ["fastest", "zlib"], "fastest: ISA-L when installed; zlib: stdlib only."
)
flags.DEFINE_string("workdir", None, "Scratch folder (default: a new temporary one, removed).")

_REPO = Path(__file__).resolve().parents[1]


def _write_release(root: Path, size_bytes: int, examples: int) -> int:
    """Writes aux-array-like and weight-like .npz files until `size_bytes`; returns the count."""
    rng = np.random.default_rng(0)
    written, count, run = 0, 0, 0
    while written < size_bytes:
        ratio = ("0.1", "0.3", "0.5", "0.7", "0.9")[run % 5]
        run_dir = root / "bench-experiment" / ratio / str(run)
        run_dir.mkdir(parents=True)
        order = rng.permutation(examples)
        n_train = examples * 7 // 10
        np.savez(
            run_dir / "aux_arrays.npz",
            correctness_train=rng.random(n_train) < 0.9,
            correctness_removed=rng.random(examples - n_train) < 0.8,
            correctness_test=rng.random(examples // 5) < 0.85,
            index_train=order[:n_train].astype(np.int64),
            index_removed=order[n_train:].astype(np.int64),
            index_test=rng.permutation(examples // 5).astype(np.int64),
            subsample_idx=np.sort(order[:n_train]).astype(np.int64),
        )
        np.savez(
            run_dir / "weights.npz", w=rng.normal(0, 0.05, size=examples * 4).astype(np.float32)
        )
        for name in ("aux_arrays.npz", "weights.npz"):
            written += (run_dir / name).stat().st_size
            count += 1
        run += 1
    return count


def _md5(path: Path) -> str:
    md5 = hashlib.md5()
    with open(path, "rb") as f:
        while chunk := f.read(8 << 20):
            md5.update(chunk)
    return md5.hexdigest()


def _tree(root: Path) -> dict[str, int]:
    """Relative path -> size of the extracted files (not our `.<archive>.lock`)."""
    return {
        str(p.relative_to(root)): p.stat().st_size
        for p in root.rglob("*")
        if p.is_file() and not (p.name.startswith(".") and p.name.endswith(".lock"))
    }


def _fresh(path: Path) -> Path:
    shutil.rmtree(path, ignore_errors=True)
    subprocess.run(["sync"], check=False)
    return path


def _time_tar(archive: Path, url: str, md5: str, work: Path) -> tuple[float, dict[str, int]]:
    out = _fresh(work / "tar")
    out.mkdir()
    t = time.perf_counter()
    subprocess.run(["tar", "-xzf", str(archive), "-C", str(out)], check=True)
    return time.perf_counter() - t, _tree(out)


def _time_tar_sync(archive: Path, url: str, md5: str, work: Path) -> tuple[float, dict[str, int]]:
    out = _fresh(work / "tar-sync")
    out.mkdir()
    t = time.perf_counter()
    subprocess.run(["tar", "-xzf", str(archive), "-C", str(out)], check=True)
    subprocess.run(["sync", "-f", str(out)], check=True)
    return time.perf_counter() - t, _tree(out)


def _time_ours(archive: Path, url: str, md5: str, work: Path) -> tuple[float, dict[str, int]]:
    out = _fresh(work / "ours")
    t = time.perf_counter()
    download(url, out, md5=md5, extract=True)
    return time.perf_counter() - t, _tree(out)


def _report(times: dict) -> None:
    def line(name, runs):
        listed = ", ".join(f"{x:.2f}" for x in runs)
        return f"{name}: median {statistics.median(runs):.2f} s, best {min(runs):.2f} s ({listed})"

    ours = times[_time_ours]
    print(line("tar -xzf (local file)                ", times[_time_tar]))
    print(line("tar -xzf + sync -f (durable)         ", times[_time_tar_sync]))
    print(line("ours (HTTP + MD5 + extract, one pass)", ours))
    for name, side, goal in (
        ("tar", _time_tar, ""),
        ("tar+sync", _time_tar_sync, "  (goal <= 1.15)"),
    ):
        reference = times[side]
        paired = statistics.median(o / t for o, t in zip(ours, reference, strict=True))
        # On a shared machine the paired and best-run ratios are the least disturbed by others.
        print(
            f"ratio ours / {name}: {paired:.2f} (median of paired runs), "
            f"{min(ours) / min(reference):.2f} (best runs), "
            f"{statistics.median(ours) / statistics.median(reference):.2f} (medians){goal}"
        )


def main(argv) -> None:
    del argv
    if FLAGS.inflate == "zlib":
        pipeline.FASTEST_ZLIB = zlib  # what a user without the optional `isal` gets
    work = Path(FLAGS.workdir or tempfile.mkdtemp(prefix="bench-download-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        source_dir = work / "content"
        archive = work / "release.tar.gz"
        shutil.rmtree(source_dir, ignore_errors=True)
        files = _write_release(source_dir, FLAGS.size_mb * 10**6, FLAGS.examples)
        subprocess.run(["tar", "-czf", str(archive), "-C", str(source_dir), "."], check=True)
        shutil.rmtree(source_dir)
        md5 = _md5(archive)
        print(
            f"tarball: {files} .npz files, {archive.stat().st_size / 1e6:.1f} MB compressed, "
            f"{FLAGS.size_mb} MB of content; {os.cpu_count()} CPUs; inflating with "
            f"{pipeline.FASTEST_ZLIB.__name__}"
        )

        server = subprocess.Popen(
            [sys.executable, str(_REPO / "tests" / "download_servers.py"), str(archive)],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            url = server.stdout.readline().strip()
            sides = [_time_tar, _time_tar_sync, _time_ours]
            times = {side: [] for side in sides}
            for repeat in range(FLAGS.repeats):
                # Rotate which side goes first, so none always meets a warmer cache.
                trees = {}
                for side in sides[repeat % 3 :] + sides[: repeat % 3]:
                    seconds, tree = side(archive, url, md5, work)
                    times[side].append(seconds)
                    trees[side] = tree
                if any(tree != trees[_time_tar] for tree in trees.values()) or (
                    len(trees[_time_tar]) != files
                ):
                    raise SystemExit("the extracted trees differ")
        finally:
            server.terminate()
            server.wait()
        _report(times)
    finally:
        if FLAGS.workdir is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    app.run(main)
