"""The `data` fixture of the figure tests (a fresh copy per test: tests change it)."""

import pytest

from tests.plots.figure_data import scores_and_images


@pytest.fixture()
def data():
    return scores_and_images()
