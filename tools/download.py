"""Download a released tarball (or any .tar.gz) with MD5 check and resume; optionally extract it.

Examples:
  # Every aux_arrays.npz of CIFAR-10, a few GB of disk, one pass over the 239 GB tarball:
  python tools/download.py --artifact=cifar10-inception --output_dir=data \\
      --extract --only='*/aux_arrays.npz'
  # The whole tarball, kept as a file (run the same command again to resume):
  python tools/download.py --output_dir=data \\
      --url=gs://gresearch/heldout-training-checkpoints/imagenet-resnet50.tar.gz
  # Check a file you already have:
  python tools/download.py --artifact=cifar10-inception --verify=data/cifar10-inception.tar.gz

Exit status: 0 when everything was verified and written; 1 on any failure (MD5 mismatch,
network, refused or conflicting members, nothing matched --only); 130 when interrupted.
"""

from __future__ import annotations

import sys

from absl import app, flags

from heldout import download as dl
from heldout.registry import ARTIFACTS

FLAGS = flags.FLAGS
flags.DEFINE_enum("artifact", None, sorted(ARTIFACTS), "A released tarball (URL and MD5 built in).")
flags.DEFINE_string("url", None, "http://, https:// or gs://bucket/object to download instead.")
flags.DEFINE_string("output_dir", None, "Where the archive or the extracted files go.")
flags.DEFINE_string(
    "md5", None, "Expected MD5 (hex, any case); needed with --url unless the server reports one."
)
flags.DEFINE_integer(
    "retries", 10, "Consecutive failed attempts (without progress) before giving up."
)
flags.DEFINE_bool("extract", False, "Extract while downloading (one pass, no archive on disk).")
flags.DEFINE_bool("keep_archive", False, "With --extract, also keep the archive.")
flags.DEFINE_list(
    "only",
    None,
    "With --extract, comma-separated globs over member paths ('*' also matches '/'), e.g. "
    "*/aux_arrays.npz; other members are read and discarded.",
)
flags.DEFINE_bool("overwrite", False, "Replace existing files that differ.")
flags.DEFINE_string("verify", None, "Only check this local file's MD5 (with --md5 or --artifact).")

_GB = 1e9


def _expected_md5() -> str | None:
    if FLAGS.md5:
        return FLAGS.md5
    return ARTIFACTS[FLAGS.artifact].md5 if FLAGS.artifact else None


def _check_flags() -> None:
    if FLAGS.md5:
        try:
            dl.normalize_md5(FLAGS.md5)
        except ValueError as e:
            raise app.UsageError(f"--md5: {e}") from None
    if FLAGS.verify:
        if not (FLAGS.md5 or FLAGS.artifact):
            raise app.UsageError("--verify needs the expected MD5: --md5 or --artifact")
        return
    if bool(FLAGS.artifact) == bool(FLAGS.url):
        raise app.UsageError("give exactly one of --artifact and --url")
    if not FLAGS.output_dir:
        raise app.UsageError("--output_dir is required")
    if (FLAGS.keep_archive or FLAGS.only) and not FLAGS.extract:
        raise app.UsageError("--keep_archive and --only apply to --extract")
    if FLAGS.retries < 0:
        raise app.UsageError("--retries must be >= 0")


class _Bar:
    """A tqdm bar fed by the library's progress callback."""

    def __init__(self, description: str):
        from tqdm import tqdm

        self._bar = tqdm(
            desc=description,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            dynamic_ncols=True,
            smoothing=0.05,
            file=sys.stderr,
        )
        self._members = -1

    def __call__(self, progress: dl.Progress) -> None:
        if progress.bytes_total is not None and self._bar.total != progress.bytes_total:
            self._bar.total = progress.bytes_total
        if progress.note:
            self._bar.write(progress.note, file=sys.stderr)
        self._bar.update(progress.bytes_done - self._bar.n)
        if progress.members_extracted != self._members:
            self._members = progress.members_extracted
            if self._members:
                self._bar.set_postfix(members=self._members, refresh=False)

    def close(self) -> None:
        self._bar.close()


def _summary(result: dl.DownloadResult) -> list[str]:
    rate = result.bytes_downloaded / max(result.seconds, 1e-9) / 1e6
    lines = [
        f"source:      {result.url}",
        f"MD5:         {result.md5} (verified)",
        f"size:        {result.size / _GB:.3f} GB; downloaded {result.bytes_downloaded / _GB:.3f}"
        f" GB, reused {result.bytes_reused / _GB:.3f} GB from disk",
        f"time:        {result.seconds:.1f} s ({rate:.1f} MB/s), {result.retries} reconnections",
    ]
    if result.archive_path is not None:
        lines.append(f"archive:     {result.archive_path}")
    report = result.extract
    if report is not None:
        lines.append(
            f"extracted:   {len(report.written)} files ({report.bytes_written / _GB:.3f} GB) "
            f"into {FLAGS.output_dir}; {report.already_present} already present; "
            f"{report.not_selected} not selected"
        )
        for name, reason in report.refused:
            lines.append(f"REFUSED:     {name!r}: {reason}")
        for name, reason in report.conflicts:
            lines.append(f"NOT WRITTEN: {name}: {reason}")
    return lines


def _verify() -> int:
    bar = _Bar(f"verify {FLAGS.verify}")
    try:
        actual = dl.verify_file(FLAGS.verify, _expected_md5(), progress=bar)
    except dl.ChecksumMismatchError as e:
        bar.close()
        print(f"MISMATCH {FLAGS.verify}: expected {e.expected}, got {e.actual}")
        return 1
    except OSError as e:
        bar.close()
        print(f"error: {e}", file=sys.stderr)
        return 1
    bar.close()
    print(f"OK {actual} {FLAGS.verify}")
    return 0


def main(argv) -> int:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    _check_flags()
    if FLAGS.verify:
        return _verify()
    url = FLAGS.url or ARTIFACTS[FLAGS.artifact].http_url
    bar = _Bar(url.rsplit("/", 1)[-1])
    try:
        result = dl.download(
            url,
            FLAGS.output_dir,
            md5=_expected_md5(),
            extract=FLAGS.extract,
            keep_archive=FLAGS.keep_archive,
            only=FLAGS.only or None,
            overwrite=FLAGS.overwrite,
            retry=dl.RetryPolicy(retries=FLAGS.retries),
            progress=bar,
        )
    except KeyboardInterrupt:
        bar.close()
        print(
            "interrupted: what arrived is kept (the .part file, extracted files); "
            "run the same command to resume",
            file=sys.stderr,
        )
        return 130
    except (dl.DownloadError, OSError) as e:
        bar.close()
        print(f"error: {e}", file=sys.stderr)
        return 1
    bar.close()
    print("\n".join(_summary(result)))
    report = result.extract
    if report is not None:
        if FLAGS.only and report.selected == 0 and not report.refused:
            print(f"error: no member matched --only={','.join(FLAGS.only)}", file=sys.stderr)
            return 1
        if report.refused or report.conflicts:
            print(
                f"error: {len(report.refused)} members refused, {len(report.conflicts)} not "
                "written (see above)",
                file=sys.stderr,
            )
            return 1
    return 0


if __name__ == "__main__":
    app.run(main)
