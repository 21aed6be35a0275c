"""Every flag the commands share, defined once: one name, one meaning, one help text.

A command calls the group definers it needs with its own module name, so that its
`--help` lists the shared flags beside its own. Path flags expand `~`. A renamed flag
keeps its old name for now (`renamed`): it warns on stderr and sets the new one.
"""

from __future__ import annotations

from collections.abc import Sequence

from absl import flags

from heldout.cli.flag_types import (
    DEFINE_choice,
    DEFINE_choice_list,
    DEFINE_finite_float,
    DEFINE_path,
    define,
    renamed,
)

FLAGS = flags.FLAGS

SCORE_CHOICES = ("cscore", "memorization", "influence", "influence_pairs", "soft_cscore")
PLAN_SCORE_CHOICES = ("cscore", "memorization")
SPLIT_CHOICES = ("train", "test", "all")
# The bounds of a threshold on influence or memorization (`DEFINE_finite_float`): NaN would
# silently select nothing, and a negative one would select nearly every pair.
UNIT_INTERVAL = {"lower_bound": 0.0, "upper_bound": 1.0}
DATASET_HELP = (
    "Data source (one resolver, heldout.datasets): cifar10, cifar100, mnist, fashion_mnist "
    "(IDX files or TFDS), fashion_mnist_idx, mnist_idx, npz (--data_dir is a .npz file with "
    "x_train, y_train, x_test, y_test), imagenet (TFRecords), or any TFDS image-classification "
    "dataset prepared in --data_dir."
)


# ------------------------------------------------------------------- common flags


def experiment_dir(module: str, note: str = "", required: bool = False, fv=FLAGS) -> None:
    """--experiment_dir: an experiment folder."""
    help = "An experiment folder <root>/<experiment>, its runs in <subset_ratio>/<run_id>/."
    define(module, DEFINE_path, "experiment_dir", None, help, fv, required, note=note)


def output(module: str, note: str = "", required: bool = False, fv=FLAGS) -> None:
    """--output: the one file a command writes."""
    help = "The file to write (under a temporary name, renamed when complete)."
    define(module, DEFINE_path, "output", None, help, fv, required, note=note)


def output_dir(
    module: str, note: str = "", required: bool = False, default: str | None = None, fv=FLAGS
) -> None:
    """--output_dir: the folder a command writes into."""
    help = "The folder to write into."
    define(module, DEFINE_path, "output_dir", default, help, fv, required, note=note)


def data(module: str, note: str = "", fv=FLAGS) -> None:
    """--dataset and --data_dir: one data source, through one resolver."""
    define(module, flags.DEFINE_string, "dataset", None, DATASET_HELP, fv, note=note)
    define(
        module,
        DEFINE_path,
        "data_dir",
        None,
        "The data of --dataset: a TFDS data_dir, a folder of IDX files, a .npz file or a "
        "TFRecord folder (recorded as an absolute path).",
        fv,
    )


def subset_ratio(module: str, note: str = "", fv=FLAGS) -> None:
    """--subset_ratio: the runs of one subset ratio."""
    define(
        module,
        flags.DEFINE_float,
        "subset_ratio",
        None,
        "Only the runs of this subset ratio.",
        fv,
        note=note,
    )


def max_runs(module: str, note: str = "", fv=FLAGS) -> None:
    """--max_runs: at most this many runs."""
    define(module, flags.DEFINE_integer, "max_runs", None, "At most this many runs.", fv, note=note)


def scores(
    module: str, default: Sequence[str], choices: Sequence[str] = SCORE_CHOICES, fv=FLAGS
) -> None:
    """--scores: score names (always names; a scores file is --scores_file)."""
    help = (
        "Comma list of score names (soft_cscore: the runs' held-out probability of the "
        "label; needs runs trained with --record_heldout_probs)."
    )
    define(module, DEFINE_choice_list, "scores", list(default), help, fv, choices=choices)


def scores_file(module: str, note: str = "", required: bool = False, fv=FLAGS) -> None:
    """--scores_file (and the old --scores of the commands that read a scores file)."""
    help = "A scores .npz (heldout scores)."
    define(module, DEFINE_path, "scores_file", None, help, fv, required, note=note)
    renamed(module, "scores", "scores_file", fv)


def key(module: str, fv=FLAGS) -> None:
    """--key: which per-example score of a scores file."""
    define(
        module,
        flags.DEFINE_string,
        "key",
        "cscore",
        "Which per-example score of our scores file.",
        fv,
    )


def figures(module: str, fv=FLAGS) -> None:
    """--formats: figure file formats."""
    define(module, flags.DEFINE_list, "formats", ["pdf", "png"], "Figure file formats.", fv)


def allow_pickle(module: str, fv=FLAGS) -> None:
    """--allow_pickle: unpickle object arrays of a trusted file."""
    help = (
        "Unpickle object arrays (ImageNet's published files: `filenames`, "
        "imagenet_index.npz); unpickling runs code from the file: only for a file you trust."
    )
    define(module, flags.DEFINE_bool, "allow_pickle", False, help, fv)


def allow_mismatch(module: str, fv=FLAGS) -> None:
    """--allow_mismatch: go on when two inputs record different datasets or orders."""
    help = (
        "Go on when the inputs record different datasets or example orders (refused "
        "otherwise); the output records that this was given."
    )
    define(module, flags.DEFINE_bool, "allow_mismatch", False, help, fv)


def pair_thresholds(module: str, fv=FLAGS) -> None:
    """--min_influence, --min_memorization: the published pair thresholds."""
    define(
        module,
        DEFINE_finite_float,
        "min_influence",
        0.15,
        "Pairs: the influence threshold (published: 0.15).",
        fv,
        **UNIT_INTERVAL,
    )
    define(
        module,
        DEFINE_finite_float,
        "min_memorization",
        0.25,
        "Pairs: the memorization threshold (published: 0.25).",
        fv,
        **UNIT_INTERVAL,
    )


def reading(module: str, fv=FLAGS) -> None:
    """--reader_threads (and the old --workers), --skip_bad_runs, --progress."""
    reader_threads(module, fv)
    renamed(module, "workers", "reader_threads", fv)
    run_checks(module, fv)


def reader_threads(module: str, fv=FLAGS) -> None:
    """--reader_threads: threads reading runs."""
    help = (
        "Threads reading aux_arrays.npz files; default none (this thread reads, the kernel "
        "reading ahead: threads help only on storage where each file waits long, such as "
        "some network mounts)."
    )
    define(module, flags.DEFINE_integer, "reader_threads", None, help, fv, lower_bound=1)


def run_checks(module: str, fv=FLAGS) -> None:
    """--skip_bad_runs and --progress."""
    define(
        module,
        flags.DEFINE_bool,
        "skip_bad_runs",
        False,
        "Report and skip malformed runs instead of stopping.",
        fv,
    )
    progress(module, fv)


def progress(module: str, fv=FLAGS) -> None:
    """--progress: a tqdm bar on stderr."""
    define(module, flags.DEFINE_bool, "progress", True, "Show a progress bar on stderr.", fv)


def model_override(module: str, fv=FLAGS) -> None:
    """--arch, --num_classes: override what a checkpoint or experiment records."""
    define(
        module,
        flags.DEFINE_string,
        "arch",
        None,
        "Override the architecture: small_inception, resnet50, mlp.",
        fv,
    )
    define(module, flags.DEFINE_integer, "num_classes", None, "Override the number of classes.", fv)


def figure(module: str, note: str = "", fv=FLAGS) -> None:
    """--figure: one figure file."""
    define(module, DEFINE_path, "figure", None, "The figure to draw.", fv, note=note)


def num_train(module: str, note: str = "", fv=FLAGS) -> None:
    """--num_train: only the first n training examples."""
    help = "Only the first n training examples (default: all)."
    define(module, flags.DEFINE_integer, "num_train", None, help, fv, note=note)


def reference(module: str, fv=FLAGS) -> None:
    """--reference: scores to compare with."""
    help = (
        "Reference scores on the same examples in the same order: a published C-score file "
        "(.npz with `scores`, or .npy; `heldout map-order` first) or another scores .npz "
        "(compare: its --key; proxies: its `cscore`)."
    )
    define(module, DEFINE_path, "reference", None, help, fv)


def labels(module: str, fv=FLAGS) -> None:
    """--labels: labels from an .npz, for scores that come without them."""
    help = "Labels: an .npz with `labels` or `tr_labels` (and `tt_labels` for the test split)."
    define(module, DEFINE_path, "labels", None, help, fv)


def model_dir(module: str, note: str = "", fv=FLAGS) -> None:
    """--model_dir: one run folder."""
    define(
        module,
        DEFINE_path,
        "model_dir",
        None,
        "A run folder <experiment>/<subset_ratio>/<run_id>.",
        fv,
        note=note,
    )


def seed(module: str, fv=FLAGS) -> None:
    """--seed: the root of every random choice."""
    help = (
        "Root of every random choice: label corruption, and for training also subsets, "
        "initialisations and shuffling; for plan_runs the splits and simulations."
    )
    define(module, flags.DEFINE_integer, "seed", 0, help, fv)


def run_split(module: str, fv=FLAGS) -> None:
    """--estimation_runs, --evaluation_runs: runs of one ratio split by run id, disjointly."""
    for name, role in (
        ("estimation_runs", "Runs estimates may use (baselines)"),
        ("evaluation_runs", "Runs the scoring uses"),
    ):
        help = (
            f"{role}: run ids (3,5,10-12) or a fraction of the ratio's runs (0.5, drawn "
            "with --seed); never shared with the other side. One given: the other is the "
            "rest; neither: half the runs evaluate."
        )
        define(module, flags.DEFINE_string, name, None, help, fv)


def outputs_dir(module: str, note: str = "", fv=FLAGS) -> None:
    """--outputs_dir: per-run model outputs kept outside a downloaded release."""
    help = (
        "A folder with the runs' outputs.npz (margins) in the release's layout, for a "
        "release that is not written into; default: beside each run's aux arrays."
    )
    define(module, DEFINE_path, "outputs_dir", None, help, fv, note=note)


def pack_outputs(module: str, fv=FLAGS) -> None:
    """--pack_outputs: pack the runs' outputs per ratio once they are all written."""
    help = (
        "Once every run of a subset ratio has its outputs.npz, pack them into "
        "<outputs root>/outputs_pack/<ratio>/ (one .npy per kind and split, read many times "
        "faster than the per-run files); a current pack is kept, a stale one rebuilt."
    )
    define(module, flags.DEFINE_bool, "pack_outputs", True, help, fv)


# ------------------------------------------------------------------ fan-out (Dask)


def cluster(module: str, default_scheduler: str = "none", threads: bool = False, fv=FLAGS) -> None:
    """--scheduler, --dask_workers (and the old --workers).

    Args:
      module: the command module's `__name__`.
      default_scheduler: `none` for the commands that ran in one process before they
        could fan out (train_heldout, compute_scores); `local` for evaluate_runs.
      threads: the command also reads with --reader_threads without a scheduler; the old
        --workers then means either, by --scheduler.
      fv: where to define them.
    """
    define(
        module,
        flags.DEFINE_string,
        "scheduler",
        default_scheduler,
        "'none': this process; 'local': a Dask LocalCluster of --dask_workers processes (the "
        "CPUs split evenly); or the address of a running Dask scheduler (tcp://host:8786), "
        "whose workers see the same files. The dashboard address is printed.",
        fv,
        note=f"Default {default_scheduler!r}.",
    )
    define(
        module,
        flags.DEFINE_integer,
        "dask_workers",
        None,
        "With --scheduler=local: Dask worker processes (default 2).",
        fv,
        lower_bound=1,
    )
    if threads:
        reader_threads(module, fv)
        renamed(
            module,
            "workers",
            lambda v: "reader_threads" if v.scheduler == "none" else "dask_workers",
            fv,
            advice="--dask_workers (or --reader_threads without a scheduler)",
        )
    else:
        renamed(module, "workers", "dask_workers", fv)


def gpu_tasks(module: str, fv=FLAGS) -> None:
    """--gpu_tasks (train_heldout only: training is what needs the GPUs)."""
    help = (
        "Whether each training task asks its Dask worker for a GPU (resources {'GPU': 1}, so "
        "one GPU trains one group at a time): auto = when a connected worker declares one "
        "(dask worker --resources GPU=1); yes = always (tasks wait for such workers, e.g. "
        "while an adaptive SLURM cluster starts them)."
    )
    define(module, DEFINE_choice, "gpu_tasks", "auto", help, fv, choices=["auto", "yes", "no"])


# ------------------------------------------------------------ re-evaluating runs


def evaluation(module: str, fv=FLAGS) -> None:
    """The flags demo and evaluate_runs share: runs, data, model and --min_match.

    Run selection: --experiment_dir, --subset_ratio, --max_runs. Data: --dataset,
    --data_dir, --split, --batch_size. Model: --arch, --num_classes. Verdict: --min_match.
    """
    experiment_dir(module, fv=fv)
    subset_ratio(
        module,
        "demo default: the smallest ratio that has checkpoints; evaluate_runs default: all.",
        fv,
    )
    max_runs(module, "By (ratio, run id); demo default: 1; evaluate_runs default: all.", fv)
    data(module, "Default: the experiment's.", fv)
    define(
        module,
        DEFINE_choice,
        "split",
        "all",
        "Which splits to re-evaluate.",
        fv,
        choices=list(SPLIT_CHOICES),
    )
    define(module, flags.DEFINE_integer, "batch_size", 500, "Images per evaluation step.", fv)
    model_override(module, fv)
    help = "Fraction of predictions that must match for exit status 0."
    define(module, flags.DEFINE_float, "min_match", 1.0, help, fv)


# ---------------------------------------------------------------------- training


def training_data(module: str, fv=FLAGS) -> None:
    """--dataset, --data_dir, --label_corrupt_prob, --seed: what a model learns from.

    train_heldout, kernel_interpolation and compute_proxies read the same data, and the
    same seed and probability give the same corrupted labels.
    """
    data(
        module,
        "Default: fashion_mnist (Debian's IDX folder /usr/share/datasets/fashion-mnist).",
        fv,
    )
    help = (
        "Fraction of training labels corrupted, once (fixed by --seed). Below 1: that "
        "fraction gets a random other label; 1: every label is redrawn uniformly over all "
        "classes (random labels, independent of the images)."
    )
    define(module, flags.DEFINE_float, "label_corrupt_prob", 0.0, help, fv)
    seed(module, fv)


def recording(module: str, fv=FLAGS) -> None:
    """--record_heldout_probs: files a run writes besides aux."""
    help = (
        "Each run also writes heldout_probs.npz: the softmax of its held-out training "
        "examples (float16, with their index), for compute_scores --scores=soft_cscore and "
        "cleanlab. aux_arrays.npz stays exactly as without it."
    )
    define(module, flags.DEFINE_bool, "record_heldout_probs", False, help, fv)


def recipe(module: str, dataset_recipes: bool = False, fv=FLAGS) -> None:
    """--arch, --epochs, --batch_size, --learning_rate, --mlp_spec: the training recipe.

    Defaults are the paper's MNIST recipe (Table 2). With `dataset_recipes` (train_heldout)
    the flags left unset take the dataset's recipe (`heldout.training.config.RECIPES`);
    the help marks them "[recipe]" and gives the papers' values.
    """
    from heldout.training.config import ARCHS  # no TensorFlow behind this import

    tag, cifar = ("[recipe] " if dataset_recipes else ""), dataset_recipes
    arch = (
        f"{tag}Model: mlp (trained stacked), small_inception or resnet50 (one at a time, on "
        "the GPU when TensorFlow sees one)" + (". CIFAR: small_inception." if cifar else ".")
    )
    define(module, DEFINE_choice, "arch", "mlp", arch, fv, choices=list(ARCHS))
    epochs = f"{tag}Training epochs (paper: MNIST 20" + (
        ", CIFAR-10 80, CIFAR-100 160)." if cifar else ")."
    )
    define(module, flags.DEFINE_integer, "epochs", 20, epochs, fv)
    batch = f"{tag}Batch size (paper: MNIST 256" + (", CIFAR 512)." if cifar else ").")
    define(module, flags.DEFINE_integer, "batch_size", 256, batch, fv)
    rate = f"{tag}Base learning rate (paper: MNIST 0.1" + (", CIFAR 0.4)." if cifar else ").")
    define(module, DEFINE_finite_float, "learning_rate", 0.1, rate, fv, positive=True)
    spec = (
        "Hidden layer sizes of the MLP, comma-separated: 512,256 (default) is the published "
        "MNIST MLP, 512 one hidden layer of 512 units."
    )
    define(module, flags.DEFINE_string, "mlp_spec", "512,256", spec, fv)
