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


def _root_tree():
    import ast
    from pathlib import Path

    return ast.parse(Path(heldout.__file__).read_text())


def test_every_name_is_written_out_for_type_checkers():
    """The TYPE_CHECKING block names exactly the lazy map's names, from the same modules,
    so IDEs and type checkers see what `heldout.<name>` resolves to."""
    import ast

    written = {}
    for node in _root_tree().body:
        if isinstance(node, ast.If) and getattr(node.test, "id", "") == "TYPE_CHECKING":
            for stmt in node.body:
                for alias in stmt.names:
                    written[alias.asname or alias.name] = (stmt.module, alias.name)
    expected = {}
    for name, target in heldout._EXPORTS.items():
        module, attribute = target if isinstance(target, tuple) else (target, name)
        expected[name] = (module, attribute)
    assert written == expected
    assert heldout.__all__ == sorted(heldout._EXPORTS) + ["__version__"]


def test_internals_are_not_reachable_from_the_map():
    code = (
        "import heldout; heldout.open_experiment; heldout.score_experiment; "
        "heldout.compute_influence; heldout.scores; import heldout.scores.file; "
        "heldout.ScoreRequest; "
        "print(hasattr(heldout, '_core'), '_core' in dir(heldout), 'backends' in dir(heldout), "
        "hasattr(heldout, 'backends'))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False", "False", "False"]


def test_namespaces_resolve_without_importing_them_first():
    for name in ("release", "scores", "published", "datasets", "download", "errors", "testing"):
        assert getattr(heldout, name).__name__ == f"heldout.{name}"


def test_the_version_matches_the_package_metadata():
    import tomllib
    from pathlib import Path

    pyproject = Path(heldout.__file__).resolve().parents[1] / "pyproject.toml"
    assert heldout.__version__ == tomllib.loads(pyproject.read_text())["project"]["version"]
