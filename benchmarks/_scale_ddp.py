"""Training throughput on 1 and 2 processes (torchrun, DistributedDataParallel, Gloo on the CPU).

Generates one small data set (``deepblock_nb.demo.synthetic_scene``), then trains
the ``small`` preset on it twice through ``deepblock-nb train`` under torchrun:
``--nproc_per_node=1`` with 2 torch threads, and ``--nproc_per_node=2`` with 1
thread each, so both use the same cores. The figure is the trainer's own
``images_per_s`` of each epoch after the first (all ranks' images over the
training time; process start, imports, scoring and checkpoints are not in it),
and the 2-process / 1-process ratio. On a machine with 2 cores the two processes
share those cores; the ratio then says what the gradient exchange costs more than
what a second device would bring.

    .venv/bin/python benchmarks/_scale_ddp.py            # 48 images, 4 epochs
    .venv/bin/python benchmarks/_scale_ddp.py --quick    # 24 images, 3 epochs
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SIDE = 256
BATCH = 8  # per process


def _project(folder: Path, n_images: int) -> Path:
    import deepblock_nb as dbn
    from deepblock_nb.demo import SHAPES, synthetic_scene

    project = dbn.Project.create(folder, categories=list(dict.fromkeys(SHAPES)))
    rng = np.random.default_rng(0)
    try:
        for k in range(n_images):
            rgb, xyxy, cls = synthetic_scene(rng, SIDE, SIDE, n_objects=5)
            rec = project.add_image(rgb, split="train", name=f"train{k}.png")
            for box, c in zip(xyxy, cls):
                project.add_box(rec, SHAPES[int(c)], box.tolist())
    finally:
        project.close()
    return folder


def _train(path: Path, processes: int, threads: int, epochs: int) -> list[float]:
    """Images per second of each epoch after the first, with ``processes`` ranks."""
    import deepblock_nb as dbn

    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "CUDA_VISIBLE_DEVICES": "", "PYTHONPATH": str(ROOT)}
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}",
        "-m", "deepblock_nb.cli", "train", str(path), "--epochs", str(epochs), "--model", "small",
        "--device", "cpu", "--batch-size", str(BATCH), "--seed", "0", "--json", "--quiet",
        "--options", json.dumps({"num_workers": 0}),
    ]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"{processes} process(es) failed:\n{done.stderr[-3000:]}")
    run_id = int(json.loads(done.stdout.strip().splitlines()[-1])["run"])
    project = dbn.Project.open(path)
    try:
        rows = project._store.runs.history(run_id)
        config = project._store.runs.get(run_id)["config"]  # type: ignore[index]
    finally:
        project.close()
    assert config["world_size"] == processes, config
    return [float(r["images_per_s"]) for r in rows if r.get("kind") == "epoch" and r["epoch"] > 1]


def ddp_throughput(quick: bool) -> None:
    """Print training images/s on 1 and 2 processes (Gloo, CPU) and their ratio."""
    n_images, epochs = (24, 3) if quick else (48, 4)
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as tmp:
        path = _project(Path(tmp) / "proj", n_images)
        print(f"{n_images} images of {SIDE} px, small preset, batch {BATCH} per process, {epochs} epochs, "
              f"{cores} cores")  # fmt: skip
        results: dict[int, Any] = {}
        for processes in (1, 2):
            threads = max(1, cores // processes)
            speeds = _train(path, processes, threads, epochs)
            results[processes] = statistics.median(speeds)
            print(
                f"  {processes} process(es) x {threads} thread(s): {results[processes]:6.1f} images/s "
                f"(epochs 2..{epochs}: {', '.join(f'{s:.1f}' for s in speeds)})"
            )
        print(f"  ratio 2 / 1 processes: {results[2] / results[1]:.2f}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer images and epochs")
    ddp_throughput(ap.parse_args().quick)
