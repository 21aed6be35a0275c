"""`heldout compare`: our scores against published ones (or another scores file).

Prints rank correlations, the overlap of the extremes, per-class rho and, for pairs, the
published pairs our influence recovers. Both sides must index the same examples in the
same order (`heldout map-order` first); exit status 2 when they cannot be compared, or
record another dataset or order (unless --allow_mismatch).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from absl import flags

from heldout._core.inputs_outputs import refuse_output_over_inputs
from heldout.cli import app
from heldout.cli import flags as cli_flags

FLAGS = flags.FLAGS
NAME = "compare_scores"
_SCORES_FILE = "a scores .npz file (tools/compute_scores.py)"
EXAMPLES = """\
  # C-scores recomputed from the release vs. the published file, both in TFDS order:
  heldout compare --scores_file=scores.npz --reference=cifar10-cscores-tfds.npz
  # memorization of two of our own scores files:
  heldout compare --scores_file=a.npz --reference=b.npz --key=memorization
  # how many published high-influence pairs our dense influence recovers:
  heldout compare --scores_file=scores.npz --pairs=cifar100_high_infl_pairs_infl0.15_mem0.25.npz"""


def define_flags() -> None:
    """This command's flags (defined when it runs, so importing the module defines none)."""
    cli_flags.scores_file(__name__)
    cli_flags.key(__name__)
    cli_flags.reference(__name__)
    cli_flags.define(
        __name__, cli_flags.DEFINE_path, "pairs", None, "Published high-influence pairs .npz."
    )
    cli_flags.define(
        __name__,
        cli_flags.DEFINE_finite_float,
        "threshold",
        0.15,
        "Influence that counts as recovered.",
        **cli_flags.UNIT_INTERVAL,
    )
    cli_flags.pair_thresholds(__name__)
    cli_flags.labels(__name__)
    cli_flags.output_dir(__name__, "The figures (none when not given).")
    cli_flags.figures(__name__)
    flags.DEFINE_integer("classes_shown", 5, "Classes listed at each end of the per-class rho.")
    cli_flags.allow_mismatch(__name__)


def _load_key(path: str, key: str):
    """(scores, identity or None) of our scores file."""
    from heldout._core.npz import load_npz
    from heldout.errors import CompareError
    from heldout.published.identity import identity_of_scores

    arrays = load_npz(path, keys=[key], error=CompareError, what=_SCORES_FILE)
    return arrays[key], identity_of_scores(arrays, path)


def _load_reference(path: str, key: str):
    """(scores, labels or None, identity or None): another scores file (it has `key`, no
    `scores`), or a published score file (known by its provenance, or its name and shape)."""
    from heldout._core.npz import load_npz
    from heldout.errors import CompareError
    from heldout.published.cscores import load_cscores
    from heldout.published.identity import (
        identity_from_provenance,
        identity_of_published,
        identity_of_scores,
    )

    if path.endswith(".npz"):
        arrays = load_npz(path, error=CompareError, what="a score file (.npz)")
        if key in arrays and "scores" not in arrays:
            return arrays[key], None, identity_of_scores(arrays, path)
    record = load_cscores(path)
    identity = identity_from_provenance(record.provenance, path) or identity_of_published(
        path, record.scores.shape
    )
    return record.scores, record.labels, identity


def _checked_identities(ours, reference) -> None:
    """Refuses another dataset or order (one line naming both); notes --allow_mismatch."""
    from heldout.published.identity import check_same_data

    mismatch = check_same_data(ours, reference, FLAGS.allow_mismatch)
    if mismatch is not None:
        print(f"--allow_mismatch given: {mismatch}")


def _proxy_source(path: str) -> str | None:
    """The proxy source of a proxies file (`heldout proxies`), or None for other files.

    Read from the zip's member names first, so a large scores file is not loaded.
    """
    import zipfile

    from heldout._core.npz import load_npz
    from heldout.errors import CompareError
    from heldout.proxies.compute import (
        GROUP_KEYS,
        LEGACY_PROXY_SOURCE,
        PROXY_SOURCE_KEY,
        proxy_source_of,
    )

    try:
        with zipfile.ZipFile(path) as archive:
            names = {name.removesuffix(".npy") for name in archive.namelist()}
    except (OSError, zipfile.BadZipFile):
        return None
    if PROXY_SOURCE_KEY in names:
        arrays = load_npz(path, keys=[PROXY_SOURCE_KEY], error=CompareError, what="a proxies file")
        return proxy_source_of(arrays, path)
    proxy_keys = {key for keys in GROUP_KEYS.values() for key in keys}
    return LEGACY_PROXY_SOURCE if names & proxy_keys else None


def _checked_proxy_sources(ours_path: str, reference_path: str) -> None:
    """Proxies of two sources (training passes, inference) are not compared silently."""
    from heldout.proxies.compute import check_same_source

    ours, theirs = _proxy_source(ours_path), _proxy_source(reference_path)
    if ours is None or theirs is None or ours == theirs:
        return
    check_same_source(ours, theirs, reference_path, FLAGS.allow_mismatch)
    if FLAGS.allow_mismatch:
        print(f"--allow_mismatch given: {reference_path} has proxy_source={theirs}, ours {ours}")


def _labels(reference_labels: np.ndarray | None, size: int) -> np.ndarray | None:
    from heldout._core.npz import load_npz
    from heldout.errors import CompareError

    if not FLAGS.labels:
        return reference_labels
    arrays = load_npz(FLAGS.labels, error=CompareError, what="an .npz of labels")
    key = next((k for k in ("labels", "tr_labels") if k in arrays), None)
    if key is None:
        raise CompareError(f"{FLAGS.labels}: no `labels` or `tr_labels` (it has {sorted(arrays)})")
    labels = arrays[key]
    if reference_labels is not None and not np.array_equal(labels, reference_labels):
        raise CompareError(
            f"{FLAGS.labels}: its labels disagree with the reference file's for "
            f"{int(np.count_nonzero(labels != reference_labels))} of {size} examples: "
            "the two are in different orders"
        )
    return labels


def _overlap_line(overlap) -> str:
    """One extreme overlap, its tie-aware chance level and the ties its cuts split."""
    line = (
        f"  {overlap.side} {overlap.fraction:.0%}: {overlap.overlap:.1f} of {overlap.size} "
        f"examples in both ({overlap.share:.1%}; chance {overlap.chance_share:.1%}, "
        f"SD {overlap.chance_share_sd:.2%}) of {overlap.num_compared} compared"
    )
    if overlap.tied_ours or overlap.tied_reference:
        line += (
            f"; ties at the cut: ours {overlap.tied_ours} at {overlap.cut_ours:.4g}, "
            f"reference {overlap.tied_reference} at {overlap.cut_reference:.4g} "
            "(counted as random tie-breaking would)"
        )
    return line


def _print_scores(ours: np.ndarray, reference: np.ndarray, labels: np.ndarray | None) -> None:
    from heldout.published import compare

    agreement = compare.compare_scores(ours, reference)
    print(
        f"{FLAGS.key}: {agreement.num_compared} of {agreement.num_examples} examples "
        f"compared (NaN on either side skipped)\n"
        f"  Spearman {agreement.spearman:.4f}  Kendall tau-b {agreement.kendall_tau_b:.4f}  "
        f"Pearson {agreement.pearson:.4f}  mean |diff| {agreement.mean_abs_difference:.4f}  "
        f"max |diff| {agreement.max_abs_difference:.4f}"
    )
    for overlap in compare.extreme_overlaps(ours, reference):
        print(_overlap_line(overlap))
    if labels is None:
        return
    classes = compare.per_class_agreement(ours, reference, labels)
    rhos = np.array([c.spearman for c in classes])
    defined = ~np.isnan(rhos)
    print(
        f"  per-class Spearman over {int(defined.sum())} classes: median "
        f"{np.median(rhos[defined]):.4f}, range [{rhos[defined].min():.4f}, "
        f"{rhos[defined].max():.4f}]"
    )
    order = [classes[k] for k in np.argsort(np.where(defined, rhos, np.inf), kind="stable")]
    shown = FLAGS.classes_shown
    for title, picks in (("lowest", order[:shown]), ("highest", order[::-1][:shown])):
        listed = ", ".join(
            f"class {c.label}: {c.spearman:.3f} (n={c.num_compared})"
            for c in picks
            if not np.isnan(c.spearman)
        )
        print(f"    {title}: {listed}")


def _print_pairs(published_pairs) -> None:
    import heldout.published as published
    from heldout._core.npz import load_npz
    from heldout.errors import CompareError
    from heldout.published import compare
    from heldout.published.identity import identity_of_published, identity_of_scores

    arrays = load_npz(FLAGS.scores_file, error=CompareError, what=_SCORES_FILE)
    _checked_identities(
        identity_of_scores(arrays, FLAGS.scores_file),
        identity_of_published(published_pairs.source, published_pairs.train_index.shape),
    )
    thresholds = {"min_influence": FLAGS.min_influence, "min_memorization": FLAGS.min_memorization}
    if "influence" in arrays:
        recovery = compare.pair_recovery(published_pairs, arrays["influence"], FLAGS.threshold)
        print(
            f"influence pairs: {recovery.num_pairs} published, {recovery.num_defined} "
            f"defined here, {recovery.num_above_threshold} with our influence >= "
            f"{recovery.threshold}\n"
            f"  Pearson {recovery.pearson:.4f}  mean |diff| {recovery.mean_abs_difference:.4f}"
        )
        ours = None
        if "memorization" in arrays:
            ours = published.select_pairs_dense(
                arrays["influence"], arrays["memorization"], **thresholds
            )
    elif "influence_topk_index" in arrays and "memorization" in arrays:
        compare.check_pairs_covered(
            published_pairs, len(arrays["influence_topk_index"]), len(arrays["memorization"])
        )
        ours, _ = published.select_pairs_topk(
            arrays["influence_topk_index"],
            arrays["influence_topk_value"],
            arrays["memorization"],
            **thresholds,
        )
    else:
        raise CompareError(
            f"{FLAGS.scores_file}: missing arrays ['influence'] (or top-k influence)"
        )
    if ours is None:
        print("  (no memorization in the scores file: our own pair list cannot be formed)")
        return
    agreement = compare.pair_set_agreement(ours, published_pairs)
    print(
        f"  our pairs (influence >= {FLAGS.min_influence:g}, memorization >= "
        f"{FLAGS.min_memorization:g}): {agreement.num_ours}; {agreement.num_common} also "
        f"published: precision {agreement.precision:.3f}, recall {agreement.recall:.3f} "
        f"(of {agreement.num_published} published)"
    )


def main(argv: Sequence[str]) -> int:
    del argv
    import heldout.plots as plots
    from heldout.errors import UsageError
    from heldout.published import compare, load_influence_pairs

    if not FLAGS.scores_file or not (FLAGS.reference or FLAGS.pairs):
        raise UsageError("pass --scores_file and --reference and/or --pairs")
    refuse_output_over_inputs(
        [FLAGS.output_dir], [FLAGS.scores_file, FLAGS.reference, FLAGS.pairs, FLAGS.labels]
    )
    formats = plots.check_formats(FLAGS.formats) if FLAGS.output_dir else None
    if FLAGS.reference:
        ours, our_identity = _load_key(FLAGS.scores_file, FLAGS.key)
        reference, reference_labels, identity = _load_reference(FLAGS.reference, FLAGS.key)
        _checked_identities(our_identity, identity)
        _checked_proxy_sources(FLAGS.scores_file, FLAGS.reference)
        compare.compare_scores(ours, reference)  # shapes and dtypes, before the rest
        labels = _labels(reference_labels, len(reference))
        _print_scores(ours, reference, labels)
        if FLAGS.output_dir:
            from heldout.plots.captions import runs_of_scores_file as runs_of

            note = f"ours: {runs_of(FLAGS.scores_file)}; reference: {runs_of(FLAGS.reference)}"
            figure = plots.plot_score_comparison(ours, reference, "ours", "reference", note=note)
            for path in plots.save_figure(figure, f"{FLAGS.output_dir}/comparison", formats):
                print(path)
    if FLAGS.pairs:
        _print_pairs(load_influence_pairs(FLAGS.pairs))
    return app.EXIT_OK


def run() -> None:
    """The `heldout compare` command."""
    define_flags()
    app.run_command(main, name=NAME)
