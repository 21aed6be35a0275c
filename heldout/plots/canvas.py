"""The canvas every figure is drawn on and the one way figures are written to files.

Figures use matplotlib's object-oriented API on the Agg canvas (no pyplot, no global
backend), so they draw on headless machines and leave a caller's matplotlib state alone.
`save_figure` writes each file atomically, so a reader never sees half a PNG.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from heldout._core.atomic import atomic_open
from heldout.errors import UsageError

DPI = 150  # resolution of the written files, unless a caller asks for another
SUFFIX_FORMATS = ("png", "pdf", "svg")  # formats a file name's suffix may choose


def new_figure(width: float, height: float, layout: str | None = None) -> Figure:
    """An empty figure of `width` x `height` inches on its own Agg canvas.

    `layout="constrained"` lets matplotlib place the axes at each draw; None leaves the
    placement to the figure's code (`tight_layout`, explicit grids).
    """
    figure = Figure(figsize=(width, height), layout=layout)
    FigureCanvasAgg(figure)
    return figure


def show_image(ax, image: np.ndarray) -> None:
    """One image without axes; grayscale images drawn light-on-dark as in the datasets."""
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    if image.ndim == 2:
        ax.imshow(image, cmap="gray", vmin=0, vmax=255 if image.dtype == np.uint8 else 1)
    else:
        ax.imshow(image)
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)


def check_formats(formats: Sequence[str]) -> list[str]:
    """The formats, checked against what matplotlib can write (before anything is drawn).

    Args:
      formats: names such as "png" or ".PDF" (case and a leading dot are ignored; empty
        names are skipped).

    Returns:
      The formats, lower case and without dots, in the order given.

    Raises:
      UsageError: a format matplotlib cannot write, or none at all.
    """
    supported = FigureCanvasAgg(Figure()).get_supported_filetypes()
    formats = [fmt.strip().lower().lstrip(".") for fmt in formats if fmt.strip()]
    unknown = [fmt for fmt in formats if fmt not in supported]
    if unknown or not formats:
        raise UsageError(
            f"cannot write figures as {unknown or 'no format'}; choose from "
            f"{', '.join(sorted(supported))}"
        )
    return formats


def save_figure(
    figure: Figure,
    path: str | os.PathLike,
    formats: Sequence[str] | None = None,
    dpi: int = DPI,
) -> list[Path]:
    """Writes `figure` to files, each one atomically.

    Each file is drawn into a hidden temporary file beside its final name and renamed
    when complete (`heldout._core.atomic.atomic_open`): an interrupted run leaves the
    previous figure or the new one, never a truncated file, and the file gets the umask's
    mode.

    Args:
      figure: the figure to write.
      path: with `formats`, the stem: `<path>.<format>` is written for each format.
        Without, the file itself, in the format its suffix names (one of `SUFFIX_FORMATS`).
      formats: the formats (see `check_formats`), or None to go by the suffix of `path`.
      dpi: resolution of raster formats.

    Returns:
      The files written, in the order of `formats`.

    Raises:
      UsageError: an unknown format, or (without `formats`) a suffix other than those
        of `SUFFIX_FORMATS`.
    """
    if formats is None:
        path = Path(path)
        fmt = path.suffix.lstrip(".").lower()
        if fmt not in SUFFIX_FORMATS:
            raise UsageError(
                f"{path}: figures are written as {', '.join(SUFFIX_FORMATS)} (by suffix)"
            )
        targets = [(path, fmt)]
    else:
        targets = [(Path(f"{os.fspath(path)}.{fmt}"), fmt) for fmt in check_formats(formats)]
    for target, fmt in targets:
        with atomic_open(target, "wb") as f:
            figure.savefig(f, format=fmt, dpi=dpi)
    return [target for target, _ in targets]
