"""`heldout download`: a released tarball (or any .tar.gz), MD5 checked while streaming,
resumable, optionally extracted in one pass.

Exit status 0 when everything was verified and written; 1 on any failure (one line
`download: error: ...`); 2 on usage errors; 130 when interrupted (what arrived is kept).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from absl import flags

from heldout.cli import app
from heldout.cli import flags as cli_flags
from heldout.download import (
    ChecksumMismatchError,
    DownloadResult,
    Progress,
    RetryPolicy,
    download,
    normalize_md5,
    verify_file,
)
from heldout.errors import UsageError
from heldout.release.registry import ARTIFACTS

NAME = "download"
EXAMPLES = """\
  # every aux_arrays.npz of CIFAR-10, one pass over the tarball:
  heldout download --artifact=cifar10-inception --output_dir=data --extract \\
      --only='*/aux_arrays.npz'
  # the whole tarball, kept as a file (run the same command again to resume):
  heldout download --output_dir=data \\
      --url=gs://gresearch/heldout-training-checkpoints/imagenet-resnet50.tar.gz
  # check a file you already have:
  heldout download --artifact=cifar10-inception --verify=data/cifar10-inception.tar.gz"""
FLAGS = flags.FLAGS

_ARTIFACT = flags.DEFINE_enum(
    "artifact", None, sorted(ARTIFACTS), "A released tarball (URL, MD5 and size built in)."
)
_URL = flags.DEFINE_string("url", None, "http://, https:// or gs://bucket/object to download.")
cli_flags.output_dir(__name__, "The archive or the extracted files.")
_MD5 = flags.DEFINE_string(
    "md5", None, "Expected MD5 (hex, any case); needed with --url unless the server reports one."
)
_RETRIES = flags.DEFINE_integer(
    "retries", 10, "Consecutive failed attempts (without progress) before giving up."
)
_EXTRACT = flags.DEFINE_bool(
    "extract", False, "Extract while downloading (one pass, no archive on disk)."
)
_KEEP_ARCHIVE = flags.DEFINE_bool("keep_archive", False, "With --extract, also keep the archive.")
_ONLY = flags.DEFINE_list(
    "only",
    None,
    "With --extract, comma-separated globs over member paths ('*' also matches '/'), e.g. "
    "*/aux_arrays.npz; other members are read and discarded.",
)
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace existing files that differ.")
cli_flags.define(
    __name__,
    cli_flags.DEFINE_path,
    "verify",
    None,
    "Only check this local file's MD5 (with --md5 or --artifact).",
)

_GB = 1e9


def _expected_md5() -> str | None:
    if _MD5.value:
        return _MD5.value
    return ARTIFACTS[_ARTIFACT.value].md5 if _ARTIFACT.value else None


def _check_flags() -> None:
    """Raises UsageError (exit status 2) for flags that do not fit together."""
    if _MD5.value:
        try:
            normalize_md5(_MD5.value)
        except UsageError as e:
            raise UsageError(f"--md5: {e}") from None
    if FLAGS.verify:
        if not (_MD5.value or _ARTIFACT.value):
            raise UsageError("--verify needs the expected MD5: --md5 or --artifact")
        return
    if bool(_ARTIFACT.value) == bool(_URL.value):
        raise UsageError("give exactly one of --artifact and --url")
    if not FLAGS.output_dir:
        raise UsageError("--output_dir is required")
    if (_KEEP_ARCHIVE.value or _ONLY.value) and not _EXTRACT.value:
        raise UsageError("--keep_archive and --only apply to --extract")
    if _RETRIES.value < 0:
        raise UsageError("--retries must be >= 0")


class _Bar:
    """A tqdm bar on stderr fed by the library's progress callback.

    Made on the first report, so that a command refused before any byte moves (a busy
    lock, too little space, HTTP 404) prints its one error line and nothing else.
    """

    def __init__(self, description: str):
        self._description = description
        self._bar = None
        self._members = -1

    def _make(self):
        from tqdm import tqdm

        return tqdm(
            desc=self._description,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            dynamic_ncols=True,
            smoothing=0.05,
            file=sys.stderr,
        )

    def __call__(self, progress: Progress) -> None:
        if self._bar is None:
            self._bar = self._make()
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
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def _summary(result: DownloadResult) -> list[str]:
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
        actual = verify_file(FLAGS.verify, _expected_md5(), progress=bar)
    except ChecksumMismatchError as e:
        bar.close()  # before the line below
        print(f"MISMATCH {FLAGS.verify}: expected {e.expected}, got {e.actual}")
        return app.EXIT_FAILED
    finally:
        bar.close()  # before `guarded` prints an error line under it
    print(f"OK {actual} {FLAGS.verify}")
    return app.EXIT_OK


def _download() -> DownloadResult:
    artifact = ARTIFACTS[_ARTIFACT.value] if _ARTIFACT.value else None
    url = _URL.value or artifact.http_url
    bar = _Bar(url.rsplit("/", 1)[-1])
    try:
        return download(
            url,
            FLAGS.output_dir,
            md5=_expected_md5(),
            extract=_EXTRACT.value,
            keep_archive=_KEEP_ARCHIVE.value,
            only=_ONLY.value or None,
            overwrite=_OVERWRITE.value,
            retry=RetryPolicy(retries=_RETRIES.value),
            progress=bar,
            expected_size=artifact.size_bytes if artifact is not None else None,
        )
    finally:
        bar.close()


def main(argv: Sequence[str]) -> int:
    """Runs the command; HeldoutError/OSError are left to `app.guarded` (one line, 1)."""
    del argv  # checked by app.guarded
    _check_flags()
    if FLAGS.verify:
        return _verify()
    try:
        result = _download()
    except KeyboardInterrupt:
        print(
            f"{NAME}: interrupted: what arrived is kept (the .part file, extracted files); "
            "run the same command to resume",
            file=sys.stderr,
        )
        return app.EXIT_INTERRUPTED
    print("\n".join(_summary(result)))
    report = result.extract
    if report is not None:
        if _ONLY.value and report.selected == 0 and not report.refused:
            app.print_error(NAME, f"no member matched --only={','.join(_ONLY.value)}")
            return app.EXIT_FAILED
        if report.refused or report.conflicts:
            app.print_error(
                NAME,
                f"{len(report.refused)} members refused, {len(report.conflicts)} not "
                "written (see above)",
            )
            return app.EXIT_FAILED
    return app.EXIT_OK


def run() -> None:
    """The `heldout download` command."""
    app.run_command(main, NAME, error_status=app.EXIT_FAILED)
