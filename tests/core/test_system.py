"""heldout._core.system: the free-space check says what is missing."""

import pytest

from heldout._core import system
from heldout.errors import InsufficientSpaceError


def test_free_space_check_says_what_is_missing(tmp_path):
    system.check_free_space(tmp_path / "new" / "dir", 1, "one byte")
    with pytest.raises(InsufficientSpaceError, match=r"needs 1000.0 TB .* missing") as caught:
        system.check_free_space(tmp_path / "out", 10**15, "a huge archive")
    assert "a huge archive" in str(caught.value)
