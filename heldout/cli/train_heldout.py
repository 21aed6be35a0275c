"""`heldout train`: train heldout models, written in the released layout.

Re-running the same command skips the runs already written; several commands may train
into one --output_dir at once (e.g. one per --subset_ratios). Each group of models gets
a heading line, then one line per epoch (means over the group).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from absl import flags

from heldout._core.inputs_outputs import refuse_output_over_inputs
from heldout.cli import app, flag_types, options
from heldout.cli import flags as cli_flags
from heldout.errors import UsageError

if TYPE_CHECKING:
    from heldout.training.config import TrainingConfig

EXAMPLES = """\
  # the paper's MNIST settings, on Debian's Fashion-MNIST files:
  heldout train --output_dir=/tmp/fashion_mnist-mlp --subset_ratios=0.1,0.3,0.5,0.7,0.9 \\
      --runs_per_ratio=32 --epochs=20
  # random labels (Zhang et al., 2017), one hidden layer of 512 units:
  heldout train --output_dir=/tmp/random-labels --subset_ratios=1.0 --runs_per_ratio=1 \\
      --label_corrupt_prob=1.0 --mlp_spec=512 --epochs=400"""

cli_flags.training_data(__name__)  # --dataset, --data_dir, --label_corrupt_prob, --seed
cli_flags.recording(__name__)  # --record_heldout_probs
# --arch, --epochs, --batch_size, --learning_rate ("[recipe]": unset, they take the
# dataset's recipe, `heldout.training.config.RECIPES`; the defaults shown are MNIST's),
# --mlp_spec.
cli_flags.recipe(__name__, dataset_recipes=True)
cli_flags.cluster(__name__)  # --scheduler, --dask_workers
cli_flags.gpu_tasks(__name__)
cli_flags.pack_outputs(__name__)
cli_flags.output_dir(__name__, "The experiment folder to write.", required=True)
_SUBSET_RATIOS = flags.DEFINE_list(
    "subset_ratios", ["0.1", "0.3", "0.5", "0.7", "0.9"], "Comma-separated subset ratios."
)
_RUNS_PER_RATIO = flags.DEFINE_integer("runs_per_ratio", 16, "Runs per subset ratio.")
_LR_SCHEDULE = flags.DEFINE_enum(
    "lr_schedule",
    "linear",
    ["linear", "step"],
    "After the linear warm-up (15% of the steps): linear decay to 0 (the paper's MNIST and "
    "CIFAR schedule), or step: x0.1 at 30%, 60% and 90% of the steps (its ImageNet one).",
)
_AUGMENT = flags.DEFINE_bool(
    "augment",
    False,
    "[recipe] CIFAR training augmentation: zero-pad 4 px, random crop back, random "
    "left-right flip, drawn per run from --seed; never at evaluation. On for CIFAR. "
    "Convolutional architectures only.",
)
_CHECKPOINT_EVERY = flags.DEFINE_integer(
    "checkpoint_every",
    0,
    "Every this many epochs, a mid-training checkpoint of the run being trained, from "
    "which a restarted command continues it (to the same result); deleted once the run is "
    "written. 0: none. Convolutional architectures only.",
)
_MODELS_PER_STEP = flags.DEFINE_integer(
    "models_per_step", 32, "MLPs trained simultaneously (speed only; results do not change)."
)
_VAL_EXAMPLES = flags.DEFINE_integer(
    "val_examples", 1000, "Test examples behind the per-epoch Acc-val."
)
flag_types.define(
    __name__,
    flag_types.DEFINE_finite_float,
    "weight_decay",
    0.0,
    "L2 weight decay: weight_decay * W added to each weight matrix's gradient (biases "
    "excluded). Default 0, as in the paper's MNIST runs.",
    lower_bound=0.0,
)
_COMPUTE_DTYPE = flags.DEFINE_enum(
    "compute_dtype",
    "float32",
    ["float32", "bfloat16", "auto"],
    "dtype of the matrix products and convolutions while training (mixed precision: "
    "weights, batch norm, loss and checkpoints stay float32; evaluation is float32). "
    "bfloat16 is native on GPUs of compute capability >= 8.0 and on CPUs with "
    "AVX512-BF16 or AMX; auto picks it there and float32 elsewhere, and the experiment "
    "records which ran.",
)


def _compute_dtype(requested: str) -> str:
    """`--compute_dtype` resolved for this device (said when `auto` chose)."""
    if requested != "auto":
        return requested
    from heldout.training import precision

    dtype, why = precision.resolve_compute_dtype(requested)
    print(f"--compute_dtype=auto: training in {dtype} ({why})")
    return dtype


def _subset_ratios(values: Sequence[str]) -> tuple[float, ...]:
    try:
        return tuple(float(value) for value in values)
    except ValueError:
        raise UsageError(
            f"--subset_ratios must be comma-separated numbers in (0, 1], got {','.join(values)}"
        ) from None


def config_from_flags() -> TrainingConfig:
    """The `TrainingConfig` the parsed flags describe.

    The dataset's recipe (`TrainingConfig.for_dataset`: the papers' CIFAR settings for
    cifar10/cifar100) gives the [recipe] flags the user did not pass; flags given win.

    Raises:
      UsageError: a malformed flag value.
      TrainingError: a value out of range.
    """
    from heldout import training

    data = options.data_options()
    # The recipe flags the user gave win over the dataset's recipe; the others take it.
    recipe = {
        name: flags.FLAGS[name].value
        for name in ("arch", "epochs", "batch_size", "learning_rate", "augment")
        if flags.FLAGS[name].present
        or name not in training.RECIPES.get(data.dataset.split(":", 1)[0], {})
    }
    return training.TrainingConfig.for_dataset(
        data.dataset,
        **recipe,
        data_dir=data.data_dir,
        subset_ratios=_subset_ratios(_SUBSET_RATIOS.value),
        runs_per_ratio=_RUNS_PER_RATIO.value,
        lr_schedule=_LR_SCHEDULE.value,
        checkpoint_every=_CHECKPOINT_EVERY.value,
        models_per_step=_MODELS_PER_STEP.value,
        label_corrupt_prob=data.label_corrupt_prob,
        seed=data.seed,
        val_examples=_VAL_EXAMPLES.value,
        compute_dtype=_compute_dtype(_COMPUTE_DTYPE.value),
        weight_decay=flags.FLAGS.weight_decay,
        mlp_hidden_sizes=options.mlp_hidden_sizes(flags.FLAGS.mlp_spec),
        record_heldout_probs=flags.FLAGS.record_heldout_probs,
    )


def main(argv: Sequence[str]) -> int:
    """Trains the experiment the flags describe; 0 when done, 1 when runs diverged.

    Errors print one line (`app.guarded`).
    """
    del argv
    from heldout import training
    from heldout.cli.progress import TrainingProgress, result_line

    config = config_from_flags()
    refuse_output_over_inputs(
        [flags.FLAGS.output_dir], data_dir=flags.FLAGS.data_dir, dataset=flags.FLAGS.dataset
    )
    cluster = options.cluster_options()
    if cluster.distributed:
        from heldout.cli import train_cluster

        return train_cluster.train(
            config,
            flags.FLAGS.output_dir,
            cluster,
            flags.FLAGS.gpu_tasks,
            pack_outputs=flags.FLAGS.pack_outputs,
        )
    with TrainingProgress() as progress:
        result = training.train_experiment(
            config,
            flags.FLAGS.output_dir,
            on_event=progress,
            pack_outputs=flags.FLAGS.pack_outputs,
        )
    print(result_line(result))
    for diverged in result.diverged:  # not finished: said, and the exit status is 1
        app.print_error("train_heldout", diverged.describe())
    return app.EXIT_FAILED if result.diverged else app.EXIT_OK


def run() -> None:
    """The `heldout train` command."""
    app.run_command(main, name="train_heldout")
