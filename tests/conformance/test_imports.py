"""What importing costs: which heavy libraries each entry point pulls in (not timings,
which live in bench/; the set of modules loaded is what decides a command's start-up)."""

import subprocess
import sys

import pytest

HEAVY = ("tensorflow", "sonnet", "tensorflow_datasets", "numba", "distributed", "matplotlib")


def _loaded_after(code: str) -> set[str]:
    probe = f"import sys\n{code}\nprint(' '.join(sorted(set(sys.modules))))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return set(done.stdout.split())


def test_importing_heldout_loads_nothing_of_the_package():
    loaded = _loaded_after("import heldout")
    assert sorted(m for m in loaded if m.startswith("heldout.")) == []
    assert not set(HEAVY) & loaded


@pytest.mark.parametrize(
    "code",
    [
        "import heldout.scores.experiment, heldout.scores.file, heldout.scores.influence",
        "import heldout.release.reading, heldout.published, heldout.testing",
        "import heldout.scores.uncertainty, heldout.scores.fanout",
    ],
)
def test_the_score_engine_loads_no_tensorflow_numba_dask_or_matplotlib(code):
    assert not set(HEAVY) & _loaded_after(code)


def test_a_command_loads_only_what_its_help_needs():
    loaded = _loaded_after(
        "from heldout.cli import main\n"
        "try:\n    main.run(['heldout', 'scores', '--help'])\nexcept SystemExit:\n    pass"
    )
    assert not set(HEAVY) & loaded
    commands = {m for m in loaded if m.startswith("heldout.cli.") and m.count(".") == 2}
    assert "heldout.cli.compute_scores" in commands
    assert not {"heldout.cli.train_heldout", "heldout.cli.demo"} & commands
