"""`heldout evaluate --outputs`: outputs.npz of released checkpoints in an outputs folder with the
release's layout, only for runs matching N out of N, resumable, never inside the experiment."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from evaluation.test_fanout import PER_RUN, _run_tool, _write_experiment
from release.test_outputs_pack import _from_pack

from heldout.errors import OutputOverInputError, UsageError
from heldout.evaluation import fanout
from heldout.release import layout as release
from heldout.release import outputs_pack
from heldout.release.aux_arrays import load_aux_arrays, save_aux_arrays
from heldout.release.outputs import OUTPUTS_FILE, load_outputs, margins_from_logits, run_identity
from heldout.release.outputs_reading import read_outputs

OPTIONS = fanout.EvalOptions(batch_size=16)


@pytest.fixture(scope="module")
def tiny_experiment(tmp_path_factory):
    return _write_experiment(tmp_path_factory.mktemp("outputs"), "tiny-mlp", seed=1)


@pytest.fixture()
def experiment_dir(tiny_experiment, tmp_path):
    import shutil

    copy = tmp_path / tiny_experiment.name
    shutil.copytree(tiny_experiment, copy)
    return copy


def _options(outs, kinds=("margins",)):
    return dataclasses.replace(OPTIONS, outputs=kinds, outputs_dir=str(outs))


def _evaluate(experiment_dir, tmp_path, options):
    return fanout.evaluate_experiment(
        experiment_dir, tmp_path / "checks", options=options, scheduler="none"
    )


def test_outputs_written_in_release_layout_and_checked(tiny_experiment, experiment_dir, tmp_path):
    outs = tmp_path / "outs"
    summary = _evaluate(experiment_dir, tmp_path, _options(outs, ("margins", "logits")))
    assert summary.all_match and summary.total == 3 * PER_RUN
    assert not list(experiment_dir.rglob(OUTPUTS_FILE))  # the downloaded tree is untouched
    for run in release.open_experiment(experiment_dir).runs:
        path = outs / "0.5" / str(run.run_id) / OUTPUTS_FILE
        identity = run_identity(run.path, run.subset_ratio, run.run_id)
        outputs = load_outputs(path, expect_identity=identity, aux=run.load_aux())
        assert outputs.provenance["labels_source"] == "dataset"
        for split in ("train", "removed", "test"):
            logits = outputs.logits[split].astype(np.float32)
            assert logits.shape == (outputs.index[split].size, 10)
            # The float16 logits give the stored float32 margins to float16's precision.
            data = np.load(tiny_experiment.parent / "tiny.npz")
            y = data["test_labels" if split == "test" else "train_labels"][outputs.index[split]]
            phi, hinge = margins_from_logits(logits, y)
            np.testing.assert_allclose(outputs.logit_margin[split], phi, atol=2e-2, rtol=1e-2)
            np.testing.assert_allclose(outputs.hinge_margin[split], hinge, atol=2e-2, rtol=1e-2)


def test_resume_skips_current_outputs_and_rewrites_missing_or_foreign(experiment_dir, tmp_path):
    outs = tmp_path / "outs"
    _evaluate(experiment_dir, tmp_path, _options(outs))
    files = {i: outs / "0.5" / str(i) / OUTPUTS_FILE for i in range(3)}
    stamps = {i: p.stat().st_mtime_ns for i, p in files.items()}
    again = _evaluate(experiment_dir, tmp_path, _options(outs))
    assert (again.evaluated, again.skipped) == (0, 3)
    assert {i: p.stat().st_mtime_ns for i, p in files.items()} == stamps
    files[0].unlink()  # removed since
    files[1].write_bytes(files[2].read_bytes())  # another run's outputs (identity differs)
    third = _evaluate(experiment_dir, tmp_path, _options(outs))
    assert (third.evaluated, third.skipped) == (2, 1)
    runs = release.open_experiment(experiment_dir).runs
    for run in runs[:2]:
        identity = run_identity(run.path, run.subset_ratio, run.run_id)
        load_outputs(files[run.run_id], expect_identity=identity, aux=run.load_aux())
    assert files[2].stat().st_mtime_ns == stamps[2]


def test_mismatching_run_gets_no_outputs_and_is_named(experiment_dir, tmp_path):
    run_dir = experiment_dir / "0.5" / "2"
    aux = load_aux_arrays(run_dir / "aux_arrays.npz")
    flipped = aux.correctness_test.copy()
    flipped[0] ^= True
    save_aux_arrays(
        run_dir / "aux_arrays.npz", type(aux)(**{**aux.as_dict(), "correctness_test": flipped})
    )
    outs = tmp_path / "outs"
    done = _run_tool(
        f"--experiment_dir={experiment_dir}",
        f"--output_dir={tmp_path / 'checks'}",
        f"--outputs_dir={outs}",
        "--outputs=margins",
        "--scheduler=none",
        "--batch_size=16",
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"mismatch: {run_dir}: {PER_RUN - 1} out of {PER_RUN} match; no outputs" in done.stdout
    assert sorted(p.parent.name for p in outs.rglob(OUTPUTS_FILE)) == ["0", "1"]
    assert "outputs pack of ratio 0.5: not written, 1 of 3 runs have no outputs" in done.stdout
    assert not (outs / outputs_pack.PACK_DIR / "0.5").exists()


def test_evaluate_packs_the_ratio_keeps_a_current_pack_and_rebuilds_a_stale_one(
    experiment_dir, tmp_path, monkeypatch
):
    outs = tmp_path / "outs"
    args = (
        f"--experiment_dir={experiment_dir}",
        f"--output_dir={tmp_path / 'checks'}",
        f"--outputs_dir={outs}",
        "--outputs=margins",
        "--scheduler=none",
        "--batch_size=16",
    )
    pack = outs / outputs_pack.PACK_DIR / "0.5"
    done = _run_tool(*args)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"outputs pack of ratio 0.5: packed 3 runs into {pack}" in done.stdout
    assert not (experiment_dir / outputs_pack.PACK_DIR).exists()  # never in the release
    answered = _from_pack(monkeypatch)
    assert read_outputs(experiment_dir, 0.5, outputs_dir=outs)[0].tolist() == [0, 1, 2]
    assert answered == [True]
    written = (pack / outputs_pack.RECORD_FILE).stat().st_mtime_ns
    again = _run_tool(*args)  # nothing changed: the pack is kept
    assert f"outputs pack of ratio 0.5: up to date (3 runs, {pack})" in again.stdout
    assert (pack / outputs_pack.RECORD_FILE).stat().st_mtime_ns == written
    (outs / "0.5" / "0" / OUTPUTS_FILE).unlink()  # run 0 is evaluated again, not packed
    redone = _evaluate(experiment_dir, tmp_path, _options(outs))
    assert (redone.evaluated, redone.skipped) == (1, 2)
    read_outputs(experiment_dir, 0.5, outputs_dir=outs)
    assert answered == [True, False]  # the stale pack is not used
    third = _run_tool(*args)
    assert f"outputs pack of ratio 0.5: packed 3 runs into {pack}" in third.stdout
    read_outputs(experiment_dir, 0.5, outputs_dir=outs)
    assert answered == [True, False, True]


def test_outputs_dir_inside_the_experiment_is_refused(experiment_dir, tmp_path):
    inside = experiment_dir / "my-outputs"
    done = _run_tool(
        f"--experiment_dir={experiment_dir}",
        f"--output_dir={tmp_path / 'checks'}",
        f"--outputs_dir={inside}",
        "--outputs=margins",
        "--scheduler=none",
    )
    assert done.returncode == 2, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and str(inside) in lines[0], done.stderr
    assert not inside.exists() and not (tmp_path / "checks").exists()
    with pytest.raises(OutputOverInputError):
        _evaluate(experiment_dir, tmp_path, _options(experiment_dir / "0.5" / "x"))
    assert not list(experiment_dir.rglob(OUTPUTS_FILE))


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"outputs": ("margins",)}, "outputs need an outputs folder"),
        ({"outputs": ("bogus",), "outputs_dir": "o"}, "outputs must be some of"),
        ({"outputs": ("margins",), "outputs_dir": "o", "splits": ("test",)}, "every split"),
        (
            {"outputs": ("heldout_probs",), "outputs_dir": "o", "splits": ("test",)},
            "heldout_probs cover the train split",
        ),
    ],
)
def test_bad_outputs_options_are_usage_errors(changes, message):
    with pytest.raises(UsageError, match=message):
        dataclasses.replace(OPTIONS, **changes).resolved()


def test_heldout_probs_need_the_train_split_only():
    options = dataclasses.replace(
        OPTIONS, outputs=("heldout_probs",), outputs_dir="o", splits=("train",)
    ).resolved()
    assert options.outputs == ("heldout_probs",) and options.splits == ("train",)
