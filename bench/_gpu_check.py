"""What bench/gpu_check.sh runs once TensorFlow is installed; prints one table.

For SmallInception (32x32x3) and ResNet-50 (224x224x3): a checkpoint with exactly the
release's variable names (tests/data/checkpoint_variables) is restored, which proves the
names; a run exported from the model (tests/tiny_release.py) is evaluated with
`heldout evaluate --outputs=margins` (N out of N, outputs.npz written), and the model's
images/s is measured in float32 and with bfloat16 products (mixed precision), against the
figures --cpu mode measured on this workplace's CPU (--cpu_reference). Then the tf-gpu
influence backend's equality tests (tests/scores/test_backends.py) run.

    python bench/_gpu_check.py [--cpu] [--cpu_reference=FILE] [--write_reference=FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

# model, arch, image shape, release variable list, images (GPU), images (--cpu)
MODELS = (
    ("SmallInception", "small_inception", (32, 32, 3), "smallinception_cifar10_variables.txt",
     (8000, 2000), (300, 100)),
    ("ResNet-50", "resnet50", (224, 224, 3), "resnet50_imagenet_variables.txt",
     (1600, 400), (24, 8)),
)  # fmt: skip
SPEC_CLASSES = {"small_inception": 10, "resnet50": 1000}


def restore_release_names(arch: str, spec_file: str, folder: Path) -> int:
    """Restores a checkpoint holding exactly the release's variable names; their count."""
    from models.release_variables import read_spec
    from models.test_checkpoints import write_spec_checkpoint

    from heldout import models
    from heldout.models import checkpoints

    spec = read_spec(spec_file)
    write_spec_checkpoint(folder / "checkpoints", spec)
    checkpoints.restore(models.build_model(arch, SPEC_CLASSES[arch]), folder)
    return len(spec)


def images_per_second(model, source, images: int, batch: int, mixed: bool) -> float:
    """Best of two timed passes over the training split (after one untimed pass)."""
    from heldout.evaluation import evaluate as evaluation
    from heldout.training.precision import bfloat16_products

    context = bfloat16_products() if mixed else bfloat16_products("float32")
    with context:
        evaluator = evaluation.Evaluator(model)
        evaluator.evaluate(source, "train", batch)
        best = float("inf")
        for _ in range(2):
            start = time.perf_counter()
            evaluator.evaluate(source, "train", batch)
            best = min(best, time.perf_counter() - start)
    return images / best


def check_model(name, arch, shape, spec_file, sizes, root: Path) -> dict:
    import tensorflow as tf
    import tiny_release

    from heldout import models
    from heldout.datasets.numpy_source import NpzSource

    rng = np.random.default_rng(0)
    folder = root / arch
    names = restore_release_names(arch, spec_file, folder / "spec")
    data_path, _ = tiny_release.random_npz_data(folder, shape, *sizes, rng)
    experiment = folder / "experiment"
    tiny_release.write_npz_meta(experiment, arch, shape, data_path)
    tf.random.set_seed(0)
    model = models.build_model(arch, tiny_release.NUM_CLASSES)
    models.ensure_variables(model)
    mask = np.zeros(sizes[0], dtype=bool)
    mask[rng.permutation(sizes[0])[: sizes[0] // 2]] = True
    batch = 256 if arch == "small_inception" else 64
    tiny_release.export_run(
        experiment, 0.5, 0, model, data_path, mask, epoch=1, global_step=1, rng=rng,
        batch_size=batch,
    )  # fmt: skip
    source = NpzSource(data_path)
    rates = {mixed: images_per_second(model, source, sizes[0], batch, mixed) for mixed in (0, 1)}
    command = [
        sys.executable, "-c", "from heldout.cli.main import run; run()", "evaluate",
        f"--experiment_dir={experiment}", f"--output_dir={folder / 'records'}",
        "--outputs=margins", f"--outputs_dir={folder / 'outputs'}", f"--batch_size={batch}",
        "--scheduler=none",
    ]  # fmt: skip
    start = time.perf_counter()
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    done = subprocess.run(command, capture_output=True, text=True, check=False, env=env)
    seconds = time.perf_counter() - start
    written = (folder / "outputs" / "0.5" / "0" / "outputs.npz").is_file()
    match = re.search(r"(\d+) out of (\d+)", done.stdout)
    return {
        "model": name,
        "names": names,
        "images": sizes[0] + sizes[1],
        "float32": rates[0],
        "mixed": rates[1],
        "evaluate_s": seconds,
        "evaluate_ok": done.returncode == 0 and written,
        "match": match.group(0) if match else "?",
        "evaluate_tail": (done.stdout + done.stderr)[-400:],
    }


def backend_tests() -> str:
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         str(REPO / "tests" / "scores" / "test_backends.py")],
        capture_output=True, text=True, check=False, cwd=REPO,
    )  # fmt: skip
    lines = [x for x in done.stdout.splitlines() if re.search(r"passed|failed|error", x)]
    return lines[-1].strip("= ") if lines else f"pytest exit {done.returncode}"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cpu", action="store_true", help="Small sizes, TensorFlow's CPU.")
    parser.add_argument("--cpu_reference", default=str(REPO / "bench" / "gpu_check_cpu.json"))
    parser.add_argument("--write_reference", default=None, help="--cpu: save its figures.")
    args = parser.parse_args()
    if args.cpu:
        os.environ["CUDA_VISIBLE_DEVICES"] = "-1"
    import tensorflow as tf

    from bench import _shared

    gpus = tf.config.list_physical_devices("GPU")
    device = "CPU (--cpu)" if args.cpu else (f"GPU x{len(gpus)}" if gpus else "no GPU seen")
    reference = {}
    if not args.cpu and Path(args.cpu_reference).is_file():
        reference = json.loads(Path(args.cpu_reference).read_text())
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, arch, shape, spec_file, gpu_sizes, cpu_sizes in MODELS:
            sizes = cpu_sizes if args.cpu else gpu_sizes
            rows.append(check_model(name, arch, shape, spec_file, sizes, Path(tmp)))
    tests = backend_tests()
    if args.write_reference:
        figures = {r["model"]: {"float32": r["float32"], "mixed": r["mixed"]} for r in rows}
        figures["cpu"] = _shared.cpu_features()
        Path(args.write_reference).write_text(json.dumps(figures, indent=1) + "\n")
    print(f"device: {device}; TensorFlow {tf.__version__}; CPU: {_shared.cpu_features()}")
    if reference:
        print(f"CPU reference: {reference.get('cpu', '?')}")
    header = (
        f"{'model':<15}{'names':>6}{'images':>8}{'f32 img/s':>11}{'bf16 img/s':>11}"
        f"{'x CPU f32':>10}{'x CPU bf16':>11}  {'evaluate --outputs=margins':<28}"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        ref = reference.get(r["model"], {})
        times = [f"{r[k] / ref[k]:.0f}x" if ref.get(k) else "-" for k in ("float32", "mixed")]
        verdict = "ok" if r["evaluate_ok"] else "FAILED"
        evaluated = f"{verdict} {r['match']}, {r['evaluate_s']:.0f} s"
        print(
            f"{r['model']:<15}{r['names']:>6}{r['images']:>8}{r['float32']:>11.0f}"
            f"{r['mixed']:>11.0f}{times[0]:>10}{times[1]:>11}  {evaluated:<28}"
        )
    print(f"tf-gpu influence backend equality tests: {tests}")
    failed = [r for r in rows if not r["evaluate_ok"]]
    for r in failed:
        print(f"{r['model']}: heldout evaluate said: {r['evaluate_tail']}")
    return 1 if failed or "failed" in tests or "error" in tests else 0


if __name__ == "__main__":
    sys.exit(main())
