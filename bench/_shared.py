"""What the training measurements (label_noise, proxies_vs_cscore, bench_training) share:
the load and CPU lines, the sliced IDX folder their small runs train on, and the recipe
once its folder is given.

Imported as `bench._shared` after the script puts the repository on sys.path.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from absl import app, flags

from heldout.cli import options as cli_options

if TYPE_CHECKING:
    from heldout.training.recipe import Recipe


def load_average(label: str = "load average") -> str:
    """`load average 0.12 0.34 0.56`: the 1, 5 and 15 minute load averages now."""
    load = os.getloadavg()
    return f"{label} {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"


CPU_FEATURES = ("avx2", "avx512f", "avx512_bf16", "amx_tile")


def cpu_features() -> str:
    """`<model name>; <n> cores; avx2 yes, ...`: what the CPU offers, from /proc/cpuinfo."""
    try:
        with open("/proc/cpuinfo") as info:
            lines = info.readlines()
    except OSError:
        return "CPU unknown"
    flags_line = next((x for x in lines if x.startswith("flags")), "")
    model = next((x.split(":", 1)[1].strip() for x in lines if x.startswith("model name")), "?")
    present = set(flags_line.split(":", 1)[-1].split())
    shown = ", ".join(f"{f} {'yes' if f in present else 'no'}" for f in CPU_FEATURES)
    return f"{model}; {len(os.sched_getaffinity(0))} cores; {shown}"


def idx_slice(folder: Path, source, num_train: int) -> str:
    """The first `num_train` training examples (all test ones) of `source` as an IDX
    folder, written unless a previous run left it there; the folder."""
    from heldout.datasets import idx

    if not (folder / (idx.IDX_FILES["train"][0] + ".gz")).is_file():
        idx.write_idx_slice(folder, source, num_train)
    return str(folder)


def recipe_for(folder: flags.FlagHolder, why: str) -> Recipe:
    """The training recipe of the shared flags, once the folder flag is given.

    Raises:
      app.UsageError: `--<folder>` is missing (`why` says what it holds).
    """
    if folder.value is None:
        raise app.UsageError(f"--{folder.name} is required ({why})")
    return cli_options.training_recipe()
