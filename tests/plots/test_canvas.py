"""save_figure: the written files are the drawn figures, written atomically."""

from __future__ import annotations

import os
import stat

import matplotlib.image
import numpy as np
import pytest

from heldout.errors import UsageError
from heldout.plots import canvas, cscores
from heldout.plots.figures import FIGURE_NAMES, draw_figures


def test_written_files_are_the_drawn_figures(tmp_path, data):
    scores, train_images, train_labels, test_images, test_labels = data
    figures = draw_figures(
        scores,
        train_images,
        train_labels,
        test_images=test_images,
        test_labels=test_labels,
        class_names=["a", "b", "c"],
    )
    assert sorted(figures) == sorted(FIGURE_NAMES)
    for name, figure in figures.items():
        formats = ("png", "pdf") if name == "cscore_bins" else ("png",)
        if figure.get_layout_engine() is not None:
            # A constrained layout is solved at each draw from the last one's positions:
            # settle it at this dpi, so the file and the redraw below share one layout.
            figure.set_dpi(40)
            figure.canvas.draw()
        written = canvas.save_figure(figure, tmp_path / name, formats, dpi=40)
        assert [p.name for p in written] == [f"{name}.{fmt}" for fmt in formats]
        png = matplotlib.image.imread(tmp_path / f"{name}.png")
        figure.set_dpi(40)
        figure.canvas.draw()
        drawn = np.asarray(figure.canvas.buffer_rgba())
        assert png.shape == drawn.shape, name
        np.testing.assert_array_equal(np.round(png * 255).astype(np.uint8), drawn)
        assert png[..., :3].std() > 0.05, f"{name}.png is blank"
    assert (tmp_path / "cscore_bins.pdf").read_bytes()[:5] == b"%PDF-"
    assert len(list(tmp_path.iterdir())) == len(figures) + 1  # no temporary left


def test_figures_are_written_atomically_with_the_umask_mode(tmp_path, data):
    """A figure replaces the file by rename: a hard link to the old file keeps its bytes."""
    scores, *_ = data
    figure = cscores.plot_cscore_bins(
        scores["subset_ratios"], scores["cscore_by_ratio"], scores["cscore"]
    )
    old = tmp_path / "previous.png"
    old.write_bytes(b"the previous figure")
    (tmp_path / "figs").mkdir()
    os.link(old, tmp_path / "figs" / "cscore_bins.png")
    mask = os.umask(0o027)
    try:
        written = canvas.save_figure(figure, tmp_path / "figs" / "cscore_bins", ["png"], dpi=20)
    finally:
        os.umask(mask)
    assert old.read_bytes() == b"the previous figure"
    assert [p.name for p in (tmp_path / "figs").iterdir()] == ["cscore_bins.png"]
    (path,) = written
    assert path.read_bytes()[:4] == b"\x89PNG"
    assert stat.S_IMODE(path.stat().st_mode) == 0o640


def test_figures_are_written_atomically_in_the_suffix_format(tmp_path, data):
    scores, *_ = data
    figure = cscores.plot_cscore_bins(
        scores["subset_ratios"], scores["cscore_by_ratio"], scores["cscore"]
    )
    (png,) = canvas.save_figure(figure, tmp_path / "curve.png")
    (pdf,) = canvas.save_figure(figure, tmp_path / "curve.pdf")
    assert png.read_bytes().startswith(b"\x89PNG") and pdf.read_bytes().startswith(b"%PDF")
    assert stat.S_IMODE(png.stat().st_mode) == 0o666 & ~_umask()
    with pytest.raises(UsageError, match="png, pdf, svg"):
        canvas.save_figure(figure, tmp_path / "curve.jpg")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["curve.pdf", "curve.png"]


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def test_every_figure_module_writes_through_the_one_save_figure():
    import importlib
    import pkgutil

    import heldout.plots

    for info in pkgutil.iter_modules(heldout.plots.__path__):
        module = importlib.import_module(f"heldout.plots.{info.name}")
        if hasattr(module, "save_figure"):
            assert module.save_figure is canvas.save_figure, info.name
