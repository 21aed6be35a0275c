"""`heldout export`: released checkpoints as safetensors (+ ONNX) for any framework.

One run (--model_dir) or the selected runs of an experiment. Each export must give
TensorFlow's logits within 1e-4 (numpy forward pass, and onnxruntime for ONNX). Exit
status 0 when every run was exported (or already was), 1 when some failed, 2 on usage.
"""

from __future__ import annotations

from collections.abc import Sequence

from absl import flags

from heldout._core.inputs_outputs import refuse_output_over_inputs
from heldout.cli import app
from heldout.cli import flags as cli_flags

FLAGS = flags.FLAGS
NAME = "export_checkpoint"
EXAMPLES = """\
  heldout export --model_dir=data/cifar10-inception/0.7/0 --output_dir=exported
  heldout export --experiment_dir=data/cifar10-inception --subset_ratio=0.7 --max_runs=100 \\
      --format=safetensors,onnx --output_dir=exported"""


def define_flags() -> None:
    """This command's flags (defined when it runs, so importing the module defines none)."""
    cli_flags.model_dir(__name__, "Or its checkpoint.")
    cli_flags.experiment_dir(__name__, "Export its runs.")
    cli_flags.output_dir(__name__, "The export(s).", required=True)
    cli_flags.subset_ratio(__name__, "With --experiment_dir.")
    cli_flags.max_runs(__name__, "Per ratio, with --experiment_dir.")
    cli_flags.model_override(__name__)
    flags.DEFINE_list(
        "format", ["safetensors"], "Formats: safetensors (always written), onnx (tf2onnx)."
    )
    flags.DEFINE_boolean(
        "check", True, "Refuse an export whose logits differ from TensorFlow's by more than 1e-4."
    )


def _describe(result) -> str:
    checks = ", ".join(
        f"{key.removesuffix('_max_abs').replace('_', ' ')} max |diff| {value:.2g}"
        for key, value in result.checks.items()
        if key.endswith("_max_abs")
    )
    probe = f" over {result.checks['probe']}" if "probe" in result.checks else ""
    return f"{result.output_dir}" + (f" ({checks}{probe})" if checks else "")


def main(argv: Sequence[str]) -> int:
    del argv
    from heldout import export
    from heldout.errors import UsageError
    from heldout.release import layout as release

    if bool(FLAGS.model_dir) == bool(FLAGS.experiment_dir):
        raise UsageError("give --model_dir or --experiment_dir (one of them)")
    formats = export.check_formats(FLAGS.format)
    refuse_output_over_inputs([FLAGS.output_dir], [], [FLAGS.model_dir, FLAGS.experiment_dir])
    if FLAGS.model_dir:
        result = export.export_run(
            FLAGS.model_dir, FLAGS.output_dir, FLAGS.arch, FLAGS.num_classes, formats, FLAGS.check
        )
        verb = "kept the existing export of" if result.reused else "exported"
        print(f"{verb} {FLAGS.model_dir} to {_describe(result)}")
        return app.EXIT_OK

    experiment = release.open_experiment(FLAGS.experiment_dir)

    def report(run: str, result, error: str | None) -> None:
        if error is not None:
            print(f"FAILED {run}: {error}")
        elif not result.reused:
            print(f"exported {run} to {_describe(result)}", flush=True)

    summary = export.export_experiment(
        experiment,
        FLAGS.output_dir,
        subset_ratio=FLAGS.subset_ratio,
        max_runs=FLAGS.max_runs,
        formats=formats,
        check=FLAGS.check,
        arch=FLAGS.arch,
        num_classes=FLAGS.num_classes,
        on_result=report,
    )
    selected = len(summary.exported) + len(summary.reused) + len(summary.failed)
    print(
        f"exported {len(summary.exported)} of {selected} selected runs "
        f"({len(summary.reused)} already exported, "
        f"{len(summary.failed)} failed, {summary.without_checkpoint} without a checkpoint "
        f"skipped) into {FLAGS.output_dir}"
    )
    return app.EXIT_FAILED if summary.failed else app.EXIT_OK


def run() -> None:
    """The `heldout export` command."""
    define_flags()
    app.run_command(main, name=NAME)
