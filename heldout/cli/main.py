"""`heldout <command> [flags]`: the one command line, dispatching to one module per command.

Only the chosen command's module is imported (each defines its own flags, and several
load heavy libraries); `heldout` alone or `heldout --help` lists the commands.
"""

from __future__ import annotations

import importlib
import sys
from typing import NamedTuple

EXIT_USAGE = 2


class Command(NamedTuple):
    """A command: the `heldout.cli` module that runs it, and its one-line summary."""

    module: str
    summary: str


COMMANDS = {
    "default": Command("run_default", "Build the embedded default experiment, check, score, plot."),
    "download": Command("download", "Fetch a released tarball, MD5 checked, optionally extracted."),
    "demo": Command(
        "demo", "Restore runs' checkpoints, re-evaluate, cross-check every prediction."
    ),
    "evaluate": Command("evaluate_runs", "Re-evaluate and cross-check many runs over Dask."),
    "scores": Command("compute_scores", "C-scores, memorization and influence into one .npz."),
    "plan-runs": Command("plan_runs", "Split-half reliability now, and the runs a target needs."),
    "compare": Command("compare_scores", "Our scores against published ones or another file."),
    "published": Command("published_scores", "Inspect published score files; export ours in them."),
    "analyze": Command(
        "analyze_scores", "The papers' per-class analyses of C-scores, and figures."
    ),
    "attribution": Command(
        "attribution", "The LDS of a data attribution against the runs, with baselines."
    ),
    "export-ground-truth": Command(
        "export_ground_truth", "The runs of one ratio as TRAK's and dattri's LDS ground truth."
    ),
    "export-pred-probs": Command(
        "export_pred_probs", "Out-of-sample pred_probs and labels for cleanlab."
    ),
    "privacy": Command(
        "privacy", "Membership inference (LiRA) against the runs, and per-example risk."
    ),
    "plot": Command("plot_scores", "The figures of a scores file."),
    "table": Command("table", "A scores file as a CSV table, one row per training example."),
    "map-order": Command("map_order", "A published score file moved into TFDS order."),
    "train": Command("train_heldout", "Train heldout models into the released layout."),
    "proxies": Command("compute_proxies", "C-score proxies from one training run."),
    "kernel": Command("kernel_interpolation", "Fit training labels exactly with an RBF kernel."),
    "export": Command("export_checkpoint", "Checkpoints as safetensors (and ONNX)."),
    "build-imagenet-tfrecords": Command(
        "build_imagenet_tfrecords", "Indexed ImageNet TFRecords from an image folder."
    ),
}


def command_list() -> str:
    """`heldout --help`: every command with its one line.

    Returns:
      The text, without a final newline.
    """
    width = max(map(len, COMMANDS))
    lines = ["usage: heldout <command> [flags]   (heldout <command> --help: its flags)", ""]
    lines += [f"  {name:<{width}}  {command.summary}" for name, command in COMMANDS.items()]
    return "\n".join(lines)


def module_of(command: str) -> str:
    """The full module name of `command` (a key of `COMMANDS`)."""
    return f"heldout.cli.{COMMANDS[command].module}"


def run_command(command: str) -> None:
    """Runs `command` with the flags in `sys.argv[1:]`; exits with its status.

    `sys.argv[0]` names the command in `--help` (`heldout scores`, `tools/compute_scores.py`).

    Args:
      command: a key of `COMMANDS`.

    Raises:
      SystemExit: always, with the command's status.
    """
    from heldout.cli import app

    app.quiet_libraries()  # before the command's module imports any of them
    importlib.import_module(module_of(command)).run()


def run(argv: list[str] | None = None) -> None:
    """Console entry point `heldout`: `heldout <command> [flags]`.

    Raises:
      SystemExit: always; 0 for the list of commands, 2 for an unknown command, else the
        command's status.
    """
    argv = sys.argv if argv is None else argv
    if len(argv) < 2 or argv[1] in ("--help", "-h", "help"):
        print(command_list())
        sys.exit(0)
    command = argv[1]
    if command not in COMMANDS:
        print(
            f"heldout: error: unknown command {command!r}; commands: {', '.join(COMMANDS)}",
            file=sys.stderr,
        )
        sys.exit(EXIT_USAGE)
    sys.argv = [f"heldout {command}", *argv[2:]]
    run_command(command)
