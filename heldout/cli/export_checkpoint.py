"""`tools/export_checkpoint.py`: released checkpoints as safetensors (+ ONNX) for any framework.

One run (`--model_dir`) or every selected run of an experiment (`--experiment_dir` with
`--subset_ratio` / `--max_runs`, into `<output_dir>/<ratio>/<run_id>/`). Each export is
checked: the pure-numpy forward pass (`heldout.export.numpy_forward`), and onnxruntime
for `--format=onnx`, must give TensorFlow's logits within 1e-4 on a probe batch. Exit
status 0 when every selected run was exported (or already was), 1 when some failed, 2 on
usage errors.
"""

from __future__ import annotations

from collections.abc import Sequence

from absl import flags

from heldout.cli import app

FLAGS = flags.FLAGS
NAME = "export_checkpoint"


def define_flags() -> None:
    """This command's flags (defined when it runs, so importing the module defines none)."""
    flags.DEFINE_string("model_dir", None, "One run folder (or its checkpoint) to export.")
    flags.DEFINE_string("experiment_dir", None, "Export the runs of this experiment.")
    flags.DEFINE_string("output_dir", None, "Where the export(s) go.", required=True)
    flags.DEFINE_float("subset_ratio", None, "With --experiment_dir: only this ratio.")
    flags.DEFINE_integer("max_runs", None, "With --experiment_dir: at most this many per ratio.")
    flags.DEFINE_string("arch", None, "Architecture (default: from the checkpoint/experiment).")
    flags.DEFINE_integer("num_classes", None, "Classes (default: from the checkpoint/experiment).")
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
    """The console entry point."""
    define_flags()
    app.run_command(main, name=NAME)
