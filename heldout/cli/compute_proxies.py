"""`heldout proxies`: C-score proxies from one training run.

Trains --num_seeds models on the training set with the recipe flags and writes every
proxy (`heldout.proxies`) to --output. With --reference it adds each proxy's rank
correlations with the C-score, their table and --figure.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence

import numpy as np
from absl import flags

from heldout._core.inputs_outputs import refuse_output_over_inputs
from heldout.cli import app
from heldout.cli import flags as cli_flags
from heldout.cli import options as cli_options

EXAMPLES = """\
  # Fashion-MNIST, the paper's MNIST recipe, against an experiment's C-scores:
  heldout proxies --output=/tmp/proxies.npz --reference=/tmp/fashion-scores.npz \\
      --reference_experiment_dir=/tmp/fashion-mnist --figure=/tmp/proxies.png
  # quick look (first 2 000 examples, 2 epochs, no reference):
  heldout proxies --num_train=2000 --epochs=2 --output=/tmp/p.npz"""

cli_flags.training_data(__name__)  # --dataset, --data_dir, --label_corrupt_prob, --seed
cli_flags.recipe(__name__)  # --arch, --epochs, --batch_size, --learning_rate, --mlp_spec
_NUM_SEEDS = flags.DEFINE_integer(
    "num_seeds", 1, "Models trained independently; their proxies are averaged.", lower_bound=1
)
cli_flags.num_train(__name__, "For quick runs.")
_NUM_TRAIN = flags.FlagHolder(flags.FLAGS, flags.FLAGS["num_train"])
_PROXIES = flags.DEFINE_list(
    "proxies",
    ["learning_speed", "confidence", "kde_input", "kde_hidden"],
    "Comma list of proxy groups: learning_speed, confidence, kde_input, kde_hidden.",
)
cli_flags.output(__name__, "Here .npz.", required=True)
_OUTPUT = flags.FlagHolder(flags.FLAGS, flags.FLAGS["output"])
cli_flags.reference(__name__)
_REFERENCE = flags.FlagHolder(flags.FLAGS, flags.FLAGS["reference"])
cli_flags.define(
    __name__,
    cli_flags.DEFINE_path,
    "reference_experiment_dir",
    None,
    "The experiment folder behind a scores-file --reference: its runs give the "
    "reference's split-half reliability, and its labels are checked against ours.",
)
_REFERENCE_EXPERIMENT_DIR = flags.FlagHolder(flags.FLAGS, flags.FLAGS["reference_experiment_dir"])
cli_flags.figure(__name__, "With --reference (.png or .pdf): rho by epoch, rank densities.")
_FIGURE = flags.FlagHolder(flags.FLAGS, flags.FLAGS["figure"])
_KDE_HIDDEN_EVERY = flags.DEFINE_integer(
    "kde_hidden_every",
    1,
    "Hidden-space densities at every k-th epoch and the last (the rho-by-epoch curve); "
    "0: the last epoch only (each costs a pass over all pairs).",
    lower_bound=0,
)
cli_flags.define(
    __name__,
    cli_flags.DEFINE_choice,
    "proxy_source",
    "training_passes",
    "Where the per-epoch statistics come from: training_passes (the training steps' own "
    "forward passes, free; augmented images where the recipe augments), inference (an "
    "inference-mode pass over every training example after each epoch, overlapping the "
    "next epoch) or inference_sync (the same pass, training waiting). kde_hidden always "
    "uses an inference pass. Recorded in the output.",
    choices=["training_passes", "inference", "inference_sync"],
)
_PROXY_SOURCE = flags.FlagHolder(flags.FLAGS, flags.FLAGS["proxy_source"])
_RELIABILITY_REPEATS = 5


def _epoch_printer(event) -> None:
    from heldout.cli.progress import epoch_line
    from heldout.training.events import EpochLog

    if isinstance(event, EpochLog):
        print(epoch_line(event), file=sys.stderr, flush=True)


def _table(correlations: dict, names: Sequence[str], reliability) -> str:
    lines = [f"{'proxy':<22} {'Spearman rho':>12} {'Kendall tau-b':>13}"]
    for name in names:
        lines.append(
            f"{name:<22} {float(correlations[f'spearman_{name}']):12.4f} "
            f"{float(correlations[f'kendall_{name}']):13.4f}"
        )
    if reliability is None:
        lines.append(
            "reference split-half reliability: not measured (pass --reference_experiment_dir)"
        )
    else:
        runs = ", ".join(f"{r:g}: {n}" for r, n in sorted(reliability.runs_by_ratio.items()))
        lines.append(
            f"reference split-half reliability (rho between the C-scores of two random halves "
            f"of its runs, mean of {reliability.repeats} splits): {reliability.rho:.4f} "
            f"[runs per ratio {runs}]"
        )
    return "\n".join(lines)


def main(argv: Sequence[str]) -> int:
    """Computes the proxies the flags ask for; 0 when written (errors: `app.guarded`)."""
    del argv
    from heldout._core import atomic
    from heldout.errors import UsageError
    from heldout.proxies import compute
    from heldout.proxies import reference as ref_module

    output = _OUTPUT.value
    if not output.endswith(".npz"):
        raise UsageError(f"--output must end with .npz, got {output}")
    if _FIGURE.value is not None and _REFERENCE.value is None:
        raise UsageError("--figure needs --reference (it plots rho against the C-score)")
    refuse_output_over_inputs(
        [output, _FIGURE.value],
        [_REFERENCE.value],
        input_trees=[_REFERENCE_EXPERIMENT_DIR.value],
        data_dir=flags.FLAGS.data_dir,
        dataset=flags.FLAGS.dataset,
    )
    if _REFERENCE_EXPERIMENT_DIR.value is not None and _REFERENCE.value is None:
        raise UsageError("--reference_experiment_dir needs --reference")
    recipe = cli_options.training_recipe()
    if recipe.arch != "mlp":  # the library says so too, without the flag's name
        raise UsageError(f"--arch: proxies are recorded for --arch=mlp only, got {recipe.arch!r}")
    if _NUM_TRAIN.value is not None and _NUM_TRAIN.value < 2:
        raise UsageError(f"--num_train must be at least 2, got {_NUM_TRAIN.value}")
    options = compute.ProxyOptions(
        recipe=recipe,
        num_seeds=_NUM_SEEDS.value,
        num_train=_NUM_TRAIN.value,
        proxies=tuple(_PROXIES.value),
        kde_hidden_every=_KDE_HIDDEN_EVERY.value,
        proxy_source=_PROXY_SOURCE.value,
    )
    if _FIGURE.value is not None:
        from heldout.plots.proxies import FORMATS

        if not _FIGURE.value.lower().endswith(FORMATS):
            raise UsageError(f"--figure must end with .png or .pdf, got {_FIGURE.value}")
    # Checked before training: a bad reference or folder must not cost the training.
    atomic.probe_writable(output)
    reference = experiment = None
    if _REFERENCE.value is not None:
        reference = ref_module.load_reference(_REFERENCE.value)
        if _REFERENCE_EXPERIMENT_DIR.value is not None:
            experiment = ref_module.open_reference_experiment(
                reference, _REFERENCE_EXPERIMENT_DIR.value
            )
    scores = None
    if reference is not None:
        clean, trained = compute.training_labels(options)
        n = len(clean) if options.num_train is None else min(options.num_train, len(clean))
        scores = ref_module.check_reference(
            reference,
            len(clean),
            n,
            clean[:n],
            trained[:n],
            None if experiment is None else ref_module.reference_labels(experiment),
        )
    start = time.perf_counter()
    from heldout.proxies.parts import SeedParts, parts_dir_of

    # Each seed's tables are kept beside the output until it is written: a rerun of a
    # killed run loads them instead of retraining (bit-identical output).
    with SeedParts(parts_dir_of(output), say=_say) as parts:
        written = _write_proxies(output, options, reference, experiment, scores, parts)
        parts.remove(options.num_seeds)
    return _report(output, options, time.perf_counter() - start, *written)


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _write_proxies(output, options, reference, experiment, scores, parts) -> tuple:
    """Computes the proxies (and their agreement with `reference`) and writes `output`.

    Returns:
      (the `ProxyResult`, its correlations, the reference's split-half reliability).
    """
    from heldout._core import atomic
    from heldout.proxies import compute
    from heldout.proxies import reference as ref_module

    result = compute.compute_proxies(options, on_event=_epoch_printer, parts=parts)
    arrays = result.arrays()
    correlations, reliability = {}, None
    if reference is not None:
        correlations = compute.correlations(result, scores)
        arrays.update(correlations)
        arrays["reference"] = scores
        arrays["reference_provenance"] = np.asarray(
            json.dumps(ref_module.reference_identity(reference), sort_keys=True)
        )
        if experiment is not None:
            reliability = ref_module.split_half_reliability(
                experiment, repeats=_RELIABILITY_REPEATS, seed=options.recipe.seed
            )
            arrays["reference_split_half_rho"] = np.float64(reliability.rho)
    figure = None
    if reference is not None and _FIGURE.value is not None:
        from heldout.plots.captions import runs_of_scores_file
        from heldout.plots.proxies import plot_proxies

        figure = plot_proxies(
            {name: compute.oriented(name, v) for name, v in result.proxies.items()},
            arrays["reference"],
            {
                name: correlations[f"spearman_by_epoch_{name}"]
                for name in result.by_epoch
                if f"spearman_by_epoch_{name}" in correlations
            },
            {name: float(correlations[f"spearman_{name}"]) for name in result.proxies},
            title=f"{options.recipe.dataset}: proxies ({result.num_train} examples, "
            f"{options.num_seeds} x {options.recipe.epochs} model-epochs) against the C-score",
            runs=f"reference: {runs_of_scores_file(reference.path)}",
        )
    atomic.write_npz_atomic(output, arrays)
    if figure is not None:
        from heldout.plots import proxies, save_figure

        save_figure(figure, _FIGURE.value, dpi=proxies.DPI)
    return result, correlations, reliability


def _report(output, options, seconds: float, result, correlations, reliability) -> int:
    parts = ", ".join(f"{k} {v:.1f} s" for k, v in result.seconds.items())
    print(
        f"proxies of {result.num_train} training examples written to {output} in "
        f"{seconds:.0f} s ({parts}); training budget {result.model_epochs} model-epochs; "
        f"proxy source {options.proxy_source}"
    )
    if result.bandwidth_input is not None:
        print(f"  KDE bandwidth h: input {result.bandwidth_input:.4f}", end="")
        if result.bandwidth_hidden is not None:
            print(f", hidden {np.mean(result.bandwidth_hidden):.4f}", end="")
        print()
    if correlations:
        print(_table(correlations, list(result.proxies), reliability))
        if _FIGURE.value is not None:
            print(f"figure: {_FIGURE.value}")
    return app.EXIT_OK


def run() -> None:
    """The `heldout proxies` command."""
    app.run_command(main, name="compute_proxies")
