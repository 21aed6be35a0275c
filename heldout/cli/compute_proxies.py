"""`tools/compute_proxies.py` / `heldout-proxies`: C-score proxies from one training run.

Trains `--num_seeds` models on the full training set (or its first `--num_train`
examples) with the experiment's recipe, records per-epoch statistics through the trainer's
`EpochEnd` hook, and writes every proxy (`heldout.proxies`) to `--output`. With
`--reference` (a compute_scores.py file of an experiment on the same data in the same
order, or a published C-score file mapped to that order) it adds each proxy's Spearman
rho and Kendall tau-b, prints them in a table beside the reference's split-half
reliability (with `--reference_experiment_dir`), and draws `--figure`.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence

import numpy as np
from absl import flags, logging

from heldout.cli import app, train_flags

train_flags.define_flags()  # --dataset, --data_dir, --label_corrupt_prob, --seed
train_flags.define_recipe_flags()  # --arch, --epochs, --batch_size, --learning_rate, --mlp_spec
_NUM_SEEDS = flags.DEFINE_integer(
    "num_seeds", 1, "Models trained independently; their proxies are averaged.", lower_bound=1
)
_NUM_TRAIN = flags.DEFINE_integer(
    "num_train", None, "Use only the first n training examples (quick runs); default all."
)
_PROXIES = flags.DEFINE_list(
    "proxies",
    ["learning_speed", "confidence", "kde_input", "kde_hidden"],
    "Comma list of proxy groups: learning_speed, confidence, kde_input, kde_hidden.",
)
_OUTPUT = flags.DEFINE_string("output", None, "The .npz to write (atomically).", required=True)
_REFERENCE = flags.DEFINE_string(
    "reference",
    None,
    "Reference C-scores: a compute_scores.py .npz of an experiment on the same data in the "
    "same order, or a published C-score file mapped to that order (tools/map_order.py).",
)
_REFERENCE_EXPERIMENT_DIR = flags.DEFINE_string(
    "reference_experiment_dir",
    None,
    "The experiment folder behind a compute_scores.py --reference: its runs give the "
    "reference's split-half reliability, and its labels are checked against ours.",
)
_FIGURE = flags.DEFINE_string(
    "figure", None, "With --reference: the figure (.png or .pdf): rho by epoch, rank scatters."
)
_KDE_HIDDEN_EVERY = flags.DEFINE_integer(
    "kde_hidden_every",
    1,
    "Hidden-space densities at every k-th epoch and the last (the rho-by-epoch curve); "
    "0: the last epoch only (each costs a pass over all pairs).",
    lower_bound=0,
)
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
    logging.set_verbosity(logging.WARNING)
    from heldout._core import atomic
    from heldout.errors import UsageError
    from heldout.proxies import compute
    from heldout.proxies import reference as ref_module

    output = _OUTPUT.value
    if not output.endswith(".npz"):
        raise UsageError(f"--output must end with .npz, got {output}")
    if _FIGURE.value is not None and _REFERENCE.value is None:
        raise UsageError("--figure needs --reference (it plots rho against the C-score)")
    if _REFERENCE_EXPERIMENT_DIR.value is not None and _REFERENCE.value is None:
        raise UsageError("--reference_experiment_dir needs --reference")
    options = compute.ProxyOptions(
        recipe=train_flags.training_recipe(),
        num_seeds=_NUM_SEEDS.value,
        num_train=_NUM_TRAIN.value,
        proxies=tuple(_PROXIES.value),
        kde_hidden_every=_KDE_HIDDEN_EVERY.value,
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
    result = compute.compute_proxies(options, on_event=_epoch_printer)
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
        )
    atomic.write_npz_atomic(output, arrays)
    if figure is not None:
        from heldout.plots import proxies, save_figure

        save_figure(figure, _FIGURE.value, dpi=proxies.DPI)
    seconds = time.perf_counter() - start
    parts = ", ".join(f"{k} {v:.1f} s" for k, v in result.seconds.items())
    print(
        f"proxies of {result.num_train} training examples written to {output} in "
        f"{seconds:.0f} s ({parts}); training budget {result.model_epochs} model-epochs"
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
    """The `compute_proxies` command (tools/compute_proxies.py, `heldout-proxies`)."""
    app.run_command(main, name="compute_proxies")
