"""Our trainer writes `outputs.npz` beside each run's aux arrays from the one evaluation pass
it already does; the aux arrays stay as the predictions-only pass writes them."""

from __future__ import annotations

import shutil

import numpy as np
from release.test_outputs_pack import _from_pack
from tool_runs import run_tool
from training_slice import small_config, tiny_conv_config, tiny_npz

from heldout.datasets import relabeled
from heldout.evaluation import evaluate as evaluation
from heldout.release import label_corruption, outputs_pack
from heldout.release import layout as release
from heldout.release.aux_arrays import aux_from_predictions, save_aux_arrays
from heldout.release.outputs import (
    OUTPUTS_FILE,
    load_outputs,
    margins_from_logits,
    run_identity,
)
from heldout.release.outputs_reading import read_outputs
from heldout.training import OutputsPacked, train_experiment
from heldout.training.experiment import pack_written_outputs
from heldout.training.plan import run_rngs


def _restored_pass(run, keep_logits):
    """Index-order (correctness, logits, labels) of both splits from the run's checkpoint."""
    source = relabeled.experiment_source(run.experiment_dir, None, None)
    meta = release.read_experiment_meta(run.experiment_dir)
    arch, classes, shape = evaluation.resolve_model(run, source, meta=meta)
    cached = evaluation.ModelCache().get(arch, classes, shape)
    cached.target.restore(run.path)
    out = {}
    for split in ("train", "test"):
        result = cached.evaluator.evaluate(
            source.as_dataset(split, 100), split, 100, keep_logits=keep_logits
        )
        order = np.argsort(result.index)
        logits = None if result.logits is None else result.logits[order]
        labels = None if result.labels is None else result.labels[order]
        out[split] = (result.correctness[order], logits, labels)
    return out


def _check_run_outputs(run, seed, labels_kind):
    aux = run.load_aux()
    identity = run_identity(run.path, run.subset_ratio, run.run_id)
    assert identity["checkpoint"].startswith("ckpt-") and len(identity["aux_sha256"]) == 64
    outputs = load_outputs(run.path / OUTPUTS_FILE, expect_identity=identity, aux=aux)
    assert outputs.provenance["labels_source"] == labels_kind
    again = _restored_pass(run, keep_logits=True)
    for split in ("train", "test"):
        _, logits, labels = again[split]
        phi, hinge = margins_from_logits(logits, labels)
        np.testing.assert_allclose(outputs.in_index_order(split), phi, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(
            outputs.in_index_order(split, "hinge_margin"), hinge, rtol=1e-5, atol=1e-5
        )
    # The aux arrays are byte for byte what the predictions-only pass gives.
    plain = _restored_pass(run, keep_logits=False)
    rebuilt = aux_from_predictions(
        aux.train_mask(),
        plain["train"][0],
        plain["test"][0],
        rng=run_rngs(seed, run.subset_ratio, run.run_id)["aux_order"],
    )
    save_aux_arrays(run.path.parent / f".{run.run_id}.rebuilt.npz", rebuilt)
    rebuilt_path = run.path.parent / f".{run.run_id}.rebuilt.npz"
    assert rebuilt_path.read_bytes() == run.aux_path.read_bytes()
    rebuilt_path.unlink()
    return outputs


def test_stacked_mlp_runs_have_outputs_matching_their_checkpoints(trained):
    runs = release.open_experiment(trained).runs
    assert len(runs) == 2
    for run in runs:
        _check_run_outputs(run, 7, "dataset")


def test_outputs_use_the_labels_after_corruption(tmp_path, data_dir):
    out = tmp_path / "exp"
    config = small_config(data_dir, runs_per_ratio=1, label_corrupt_prob=0.5)
    events = []
    assert len(train_experiment(config, out, events.append).written) == 1
    (packed,) = [event for event in events if isinstance(event, OutputsPacked)]
    assert (
        packed.describe() == f"outputs pack of ratio 0.5: packed 1 runs into {out}/outputs_pack/0.5"
    )
    (run,) = release.open_experiment(out).runs
    outputs = _check_run_outputs(run, 7, "after_corruption")  # margins: trained-on labels
    corruption = label_corruption.experiment_label_corruption(out)
    assert corruption is not None and corruption.num_corrupted > 0
    logits, labels = _restored_pass(run, keep_logits=True)["train"][1:]
    np.testing.assert_array_equal(labels[corruption.indices], corruption.new_labels)
    # Against the clean labels the margins of the corrupted examples would differ.
    clean = labels.copy()
    clean[corruption.indices] = corruption.original_labels
    phi_clean, _ = margins_from_logits(logits, clean)
    stored = outputs.in_index_order("train")[corruption.indices]
    assert not np.allclose(stored, phi_clean[corruption.indices], atol=1e-3)


def test_single_model_path_writes_outputs(tmp_path):
    data = tiny_npz(tmp_path / "tiny.npz")
    out = tmp_path / "exp"
    assert len(train_experiment(tiny_conv_config(data, seed=3), out).written) == 1
    (run,) = release.open_experiment(out).runs
    _check_run_outputs(run, 3, "dataset")


def test_training_packs_a_ratio_once_all_its_runs_are_written(trained, data_dir, monkeypatch):
    pack = trained / outputs_pack.PACK_DIR / "0.5"
    answered = _from_pack(monkeypatch)
    ids, masks, _ = read_outputs(trained, 0.5)  # the fixture's training packed the ratio
    assert ids.tolist() == [0, 1] and masks.shape[0] == 2 and answered == [True]
    written = (pack / outputs_pack.RECORD_FILE).stat().st_mtime_ns
    events = []
    pack_written_outputs(small_config(data_dir), trained, events.append)  # a rerun
    assert [event.update.status for event in events] == ["current"]
    # A trainer whose third run is not written yet (another process's): the last one packs.
    events.clear()
    pack_written_outputs(small_config(data_dir, runs_per_ratio=3), trained, events.append)
    assert [event.update.status for event in events] == ["incomplete"]
    assert "1 of 3 runs have no outputs file" in events[0].describe()
    assert (pack / outputs_pack.RECORD_FILE).stat().st_mtime_ns == written


def test_heldout_scores_reads_a_trained_experiment_with_its_pack_as_without(trained, tmp_path):
    bare = tmp_path / "bare"
    shutil.copytree(trained, bare, ignore=shutil.ignore_patterns(outputs_pack.PACK_DIR))
    assert (trained / outputs_pack.PACK_DIR).is_dir()
    got = {}
    for name, folder in (("packed", trained), ("bare", bare)):
        output = tmp_path / f"{name}.npz"
        done = run_tool("compute_scores", f"--experiment_dir={folder}", f"--output={output}")
        assert done.returncode == 0, done.stderr
        assert "runs per subset ratio: 0.5: 2" in done.stdout
        with np.load(output) as npz:
            got[name] = {key: npz[key] for key in npz.files if key != "provenance"}
    assert got["packed"].keys() == got["bare"].keys()
    for key, value in got["bare"].items():
        np.testing.assert_array_equal(got["packed"][key], value, err_msg=key)
