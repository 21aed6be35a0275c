"""The curated public API: every exported name resolves, and `import heldout` stays light."""

import subprocess
import sys

import heldout


def test_every_exported_name_resolves():
    missing = []
    for name in heldout.__all__:
        try:
            getattr(heldout, name)
        except (AttributeError, ImportError) as error:
            missing.append(f"{name}: {error}")
    assert missing == []


def test_the_names_the_issue_promises_are_there():
    for name in (
        "open_experiment",
        "score_experiment",
        "build_model",
        "restore",
        "evaluate",
        "train_experiment",
        "HeldoutError",
    ):
        assert name in heldout.__all__


def test_importing_heldout_and_reading_scores_imports_no_tensorflow_or_dask():
    code = (
        "import sys, heldout; heldout.open_experiment; heldout.score_experiment; "
        "heldout.HeldoutError; print(sorted(m for m in ('tensorflow', 'distributed', 'sonnet') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_unknown_names_raise_attribute_error():
    try:
        heldout.no_such_name  # noqa: B018
    except AttributeError as error:
        assert "no_such_name" in str(error)
    else:
        raise AssertionError("expected AttributeError")


def test_no_exported_name_shadows_a_module_of_the_package():
    import pkgutil

    modules = {info.name for info in pkgutil.iter_modules(heldout.__path__)}
    assert sorted(modules & set(heldout.__all__)) == []
