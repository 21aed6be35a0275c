"""The cost of `heldout evaluate --outputs=margins` over writing correctness alone.

One run (an untrained model with seeded weights, exported with its checkpoint by
tests/tiny_release.py) on random images; `heldout.evaluation.fanout.evaluate_run` with and
without `outputs=("margins",)`, alternated, one worker state (model and data source kept)
for both. The margins come from the logits the evaluation computes anyway, so the extra is
the margin arithmetic, the run's identity and the file's write.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
GOAL = 0.05


def _experiment(root: Path, arch: str, image_shape, num_train: int, num_test: int):
    import tensorflow as tf

    from heldout import models
    from heldout.release import layout as release

    sys.path.insert(0, str(REPO / "tests"))
    import tiny_release

    rng = np.random.default_rng(0)
    data_path, _ = tiny_release.random_npz_data(root, image_shape, num_train, num_test, rng)
    experiment_dir = root / "experiment"
    tiny_release.write_npz_meta(experiment_dir, arch, image_shape, data_path)
    tf.random.set_seed(0)
    model = models.build_model(arch, tiny_release.NUM_CLASSES)
    models.ensure_variables(model)
    mask = np.zeros(num_train, dtype=bool)
    mask[rng.permutation(num_train)[: num_train // 2]] = True
    tiny_release.export_run(
        experiment_dir,
        0.5,
        0,
        model,
        data_path,
        mask,
        epoch=1,
        global_step=1,
        rng=rng,
        batch_size=500,
    )
    return release.open_experiment(experiment_dir).runs[0]


def outputs_cost(arch: str, image_shape, num_train: int, num_test: int, rounds: int) -> float:
    """Prints the seconds of both and the extra fraction; returns the fraction."""
    from heldout.evaluation import fanout
    from heldout.evaluation.options import EvalOptions

    with tempfile.TemporaryDirectory() as tmp:
        run = _experiment(Path(tmp), arch, image_shape, num_train, num_test)
        plain = EvalOptions(batch_size=500)
        margins = EvalOptions(batch_size=500, outputs=("margins",), outputs_dir=f"{tmp}/outs")
        state = fanout.WorkerState()
        for options in (plain, margins):  # warm: trace, restore, open the source
            record = fanout.evaluate_run(run, options, state)
            assert record.status == "ok" and record.matches == record.total, record
        wall = {"correctness": [], "margins": []}
        cpu = {"correctness": [], "margins": []}
        for _ in range(rounds):
            for name, options in (("correctness", plain), ("margins", margins)):
                start, start_cpu = time.perf_counter(), time.process_time()
                fanout.evaluate_run(run, options, state)
                wall[name].append(time.perf_counter() - start)
                cpu[name].append(time.process_time() - start_cpu)
        written = (Path(tmp) / "outs" / "0.5" / "0" / "outputs.npz").stat().st_size
        own = outputs_work(run, margins, state, rounds)
    images = num_train + num_test
    print(
        f"outputs cost: {arch} on {images} images {image_shape} ({num_train} train + "
        f"{num_test} test), one run, {rounds} alternated rounds (best / median); "
        f"outputs.npz of {written / 1e6:.1f} MB"
    )
    extra = {}
    for label, seconds in (("wall-clock", wall), ("CPU time of the process", cpu)):
        best = {name: min(values) for name, values in seconds.items()}
        median = {name: statistics.median(values) for name, values in seconds.items()}
        extra[label] = best["margins"] / best["correctness"] - 1
        extra_median = median["margins"] / median["correctness"] - 1
        print(
            f"  {label}: correctness alone {best['correctness']:.2f} / "
            f"{median['correctness']:.2f} s, --outputs=margins {best['margins']:.2f} / "
            f"{median['margins']:.2f} s: extra {100 * extra[label]:+.1f} % / "
            f"{100 * extra_median:+.1f} %"
        )
    share = own / min(wall["correctness"])
    print(
        f"  the outputs' own work timed alone (margins from the kept logits, identity, "
        f"file write; best of {rounds}): {1000 * own:.0f} ms = {100 * share:.1f} % of "
        "correctness alone (best)"
    )
    verdict = "met" if extra["wall-clock"] <= GOAL else "NOT met"
    print(
        f"  goal <= {100 * GOAL:.0f} % (wall-clock, best): {verdict}; the own work: "
        f"{'met' if share <= GOAL else 'NOT met'}"
    )
    return extra["wall-clock"]


def outputs_work(run, options, state, rounds: int) -> float:
    """Best seconds of `write_run_outputs` alone on an evaluation that kept its logits."""
    from heldout.evaluation import run_outputs
    from heldout.evaluation.records import experiment_identity
    from heldout.release import layout as release

    options = options.resolved()
    labels = experiment_identity(run.experiment_dir, options)["labels"]
    source = state.source(run.experiment_dir, options, labels)
    meta = release.read_experiment_meta(Path(run.experiment_dir))
    check = options.check_run(run, source, meta, cache=state.models)
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        assert run_outputs.write_run_outputs(run, check, options) is not None
        best = min(best, time.perf_counter() - start)
    return best
