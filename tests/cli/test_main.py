"""`heldout <command>`: the list of commands, one module per command, the shims, the
renamed flags, `~` in paths, and one-line usage errors with exit status 2."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from heldout.cli.main import COMMANDS, module_of

REPO = Path(__file__).resolve().parents[2]
SHIMS = {
    **{path: None for path in (REPO / "tools").glob("*.py")},
    REPO / "demo.py": "demo",
}


def _heldout(*args: str, cwd: Path | None = None, env: dict | None = None):
    return subprocess.run(
        [sys.executable, "-c", "from heldout.cli.main import run; run()", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        env=env,
    )


def test_one_console_script_replaces_the_sixteen():
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts == {"heldout": "heldout.cli.main:run"}


@pytest.mark.parametrize("args", [(), ("--help",)])
def test_help_lists_every_command_with_one_line(args):
    done = _heldout(*args)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    for name, command in COMMANDS.items():
        (line,) = [line for line in lines if line.split()[:1] == [name]]
        assert command.summary in line
    assert len(COMMANDS) == 21  # 16, `table` (#24), `attribution`, `export-ground-truth` (#26),
    # `export-pred-probs`, `privacy` (#27)


def test_an_unknown_command_is_one_line_and_status_2():
    done = _heldout("nope")
    assert done.returncode == 2
    assert done.stderr.startswith("heldout: error: unknown command 'nope'")
    assert done.stderr.count("\n") == 1 and done.stdout == ""


def test_every_command_module_exists_with_run():
    for name in COMMANDS:
        source = REPO / (module_of(name).replace(".", "/") + ".py")
        tree = ast.parse(source.read_text())
        assert "run" in {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}, name


_PROBE = """
import sys
sys.argv = ["heldout {command}", "--help"]
from heldout.cli.main import run_command
try:
    run_command("{command}")
except SystemExit:
    pass
loaded = sorted(m for m in sys.modules if m.startswith("heldout.cli.") and
                m not in ("heldout.cli.main", "heldout.cli.app", "heldout.cli.flags",
                          "heldout.cli.flag_types", "heldout.cli.options"))
print("LOADED", ",".join(loaded))
from absl import flags
key = set(f.name for f in flags.FLAGS.get_key_flags_for_module("{module}"))
ours = set(f.name for module, defined in flags.FLAGS.flags_by_module_dict().items()
           if not module.startswith("absl") for f in defined)
print("UNLISTED", ",".join(sorted(ours - key)) or "-")
"""


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_each_command_imports_only_its_module_and_lists_its_flags(command):
    done = subprocess.run(
        [sys.executable, "-c", _PROBE.format(command=command, module=module_of(command))],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    loaded = done.stdout.rsplit("LOADED ", 1)[1].split()[0].split(",")
    assert done.stdout.rsplit("UNLISTED ", 1)[1].split()[0] == "-"  # --help lists them all
    own = module_of(command)
    # train's fan-out branch and the progress printer are parts of the same command
    extra = {"heldout.cli.progress", "heldout.cli.train_cluster"}
    assert own in loaded and not set(loaded) - {own} - extra, loaded
    assert f"usage: heldout {command} [flags]" in done.stdout
    assert "flags:" in done.stdout and "examples:" in done.stdout


def test_the_shims_are_three_lines_over_the_one_command():
    for path, command in SHIMS.items():
        tree = ast.parse(path.read_text())
        assert len(tree.body) == 3, path  # docstring, import, call under __main__
        assert ast.unparse(tree.body[2].test) == "__name__ == '__main__'"
        call = tree.body[2].body[0].value
        assert ast.unparse(tree.body[1]) == "from heldout.cli.main import run_command"
        assert call.func.id == "run_command" and call.args[0].value in COMMANDS, path
        assert command is None or call.args[0].value == command


def test_a_shim_and_the_command_print_the_same_help():
    via_shim = subprocess.run(
        [sys.executable, str(REPO / "tools" / "plan_runs.py"), "--help"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    via_heldout = _heldout("plan-runs", "--help")
    assert via_shim.returncode == via_heldout.returncode == 0
    body = via_heldout.stdout.split("\n", 1)[1]
    assert via_shim.stdout.split("\n", 1)[1] == body
    assert "--reader_threads" in body and "--workers: Deprecated: use --reader_threads" in body


@pytest.fixture(scope="module")
def experiment(tmp_path_factory):
    from heldout.testing.synthetic import SyntheticSpec, write_synthetic_experiment

    spec = SyntheticSpec(num_train=60, num_test=20, subset_ratios=(0.3, 0.7), runs_per_ratio=4)
    return write_synthetic_experiment(tmp_path_factory.mktemp("main") / "synthetic", spec)


def test_path_flags_expand_the_home_folder(experiment, tmp_path):
    home = tmp_path / "home"
    (home / "out").mkdir(parents=True)
    os.symlink(experiment.path, home / "exp")
    env = dict(os.environ, HOME=str(home))
    done = _heldout(
        "scores",
        "--experiment_dir=~/exp",
        "--output=~/out/s.npz",
        "--noprogress",
        cwd=tmp_path,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    assert (home / "out" / "s.npz").is_file()
    assert not (tmp_path / "~").exists()


def test_a_renamed_flag_warns_and_still_works(experiment, tmp_path):
    done = _heldout(
        "plan-runs",
        f"--experiment_dir={experiment.path}",
        "--workers=2",
        "--repeats=2",
        "--noprogress",
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines()[0] == ("warning: --workers is deprecated; use --reader_threads")
    scores_file = tmp_path / "s.npz"
    done = _heldout(
        "scores", f"--experiment_dir={experiment.path}", f"--output={scores_file}", "--noprogress"
    )
    assert done.returncode == 0, done.stderr
    done = _heldout("analyze", f"--scores={scores_file}", "--dataset=", "--top=1")
    assert done.stderr.splitlines()[0] == "warning: --scores is deprecated; use --scores_file"
    assert f"{scores_file} has no labels" in done.stderr  # it did read the file
    done = _heldout(
        "scores",
        f"--experiment_dir={experiment.path}",
        f"--output={scores_file}",
        "--noprogress",
        "--workers=1",
    )
    assert done.returncode == 0
    assert done.stderr.splitlines()[0] == (
        "warning: --workers is deprecated; use --dask_workers (or --reader_threads without a "
        "scheduler)"
    )


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--scores=cscore,nope"], "choose from cscore, memorization, influence, "),
        (["--subset_ratio=0.42"], "no runs at subset ratio 0.42"),
        (["--influence_topk=-1"], "--influence_topk=-1"),
        (["--scheduler=nowhere"], "--scheduler must be"),
    ],
)
def test_usage_errors_are_one_line_with_status_2(experiment, tmp_path, args, needle):
    done = _heldout(
        "scores",
        f"--experiment_dir={experiment.path}",
        f"--output={tmp_path / 's.npz'}",
        "--noprogress",
        *args,
    )
    assert done.returncode == 2, done.stderr
    (line,) = done.stderr.splitlines()  # no log line before it
    assert line.startswith("compute_scores: error: ") and needle in line, line


def test_the_score_choices_of_the_error_are_those_of_the_help():
    help_text = _heldout("scores", "--help").stdout
    error = _heldout("scores", "--experiment_dir=x", "--output=x.npz", "--scores=x").stderr
    choices = error.split("choose from ", 1)[1].split(" (pass", 1)[0]
    assert "soft_cscore" in choices
    assert f"Choices: {choices}." in " ".join(help_text.split())


def test_no_library_log_line_precedes_the_error_of_a_tensorflow_command(tmp_path):
    # demo imports TensorFlow before it reads the run folder: its native start-up notices
    # (oneDNN, absl) and INFO lines must not come before the one error line.
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    done = _heldout("demo", f"--model_dir={tmp_path / 'absent'}", env=env)
    assert done.returncode == 2
    assert done.stderr == f"demo.py: error: {tmp_path / 'absent'}: not a run folder; " + (
        "expected <experiment>/<subset_ratio>/<run_id>\n"
    )


def test_default_ends_with_the_next_commands_on_the_real_paths(tmp_path):
    # in another process: importing the command defines its flags, which other commands'
    # tests in this one define otherwise
    experiment = tmp_path / "my experiments" / "fashion_mnist-mlp"
    code = (
        "import sys; from pathlib import Path; from heldout.cli.run_default import next_steps; "
        "print(next_steps(Path(sys.argv[1]), Path(sys.argv[2])))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(experiment), str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "next steps:"
    for line in lines[1:]:
        words = line.split()
        assert words[0] == "heldout" and words[1] in COMMANDS, line
        assert f"--experiment_dir='{experiment}'" in line, line
        listed = _heldout(words[1], "--help").stdout
        for flag in re.findall(r"(--[a-z_]+)=", line):
            assert f"\n  {flag}:" in listed, (line, flag)
