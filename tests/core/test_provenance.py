"""heldout._core.provenance: file identities and the one provenance record."""

import os

from heldout._core import provenance


def test_file_identity_changes_with_the_file(tmp_path):
    path = tmp_path / "f"
    path.write_text("a")
    first = provenance.file_identity(path)
    assert first["path"] == str(path.absolute()) and first["size"] == 1
    os.utime(path, ns=(first["mtime_ns"] + 10**9, first["mtime_ns"] + 10**9))
    assert provenance.file_identity(path) != first


def test_provenance_records_the_toolkit_version_and_the_fields():
    record = provenance.provenance_for(scores="x.npz", runs=[1, 2])
    assert record == {
        "heldout_version": provenance.TOOLKIT_VERSION,
        "scores": "x.npz",
        "runs": [1, 2],
    }
