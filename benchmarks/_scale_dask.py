"""Prediction throughput on a Dask LocalCluster (1 and 2 workers) against a local predict.

Trains the ``small`` preset 15 epochs on 48 generated scenes
(``deepblock_nb.demo.synthetic_scene``), then predicts ``n_images`` generated
1024 x 1024 images (tiled TIFFs) three ways, each after one warm-up run (worker
start, imports and model load are not counted): a local predict in this process,
and ``project.predict(..., client=...)`` on a LocalCluster of 1 and of 2 worker
processes of 1 thread each. Prints images per second, the 2-worker / 1-worker
ratio, and the bytes moved per image: task inputs sent to the workers (pickled
task arguments) and results sent back (the task stream's ``nbytes``).

    .venv/bin/python benchmarks/_scale_dask.py            # 16 images
    .venv/bin/python benchmarks/_scale_dask.py --quick    # 6 images, 6 epochs

Needs the cluster extra (``pip install -e '.[cluster]'``).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SIDE = 1024
#: (name, workers, the workers' environment: None keeps Dask's ``distributed.nanny.pre-spawn-environ``,
#: which sets OMP_NUM_THREADS=1 and MALLOC_TRIM_THRESHOLD_=65536)
CLUSTERS: list[tuple[str, int, dict[str, Any] | None]] = [
    ("1 worker x 1 thread, Dask defaults", 1, None),
    ("2 workers x 1 thread, Dask defaults", 2, None),
    (
        "2 workers x 1 thread, no MALLOC_TRIM_THRESHOLD_",
        2,
        dict.fromkeys(("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"), 1),
    ),
]


def _train(project: Any, quick: bool) -> int:
    from deepblock_nb.demo import SHAPES, synthetic_scene

    rng = np.random.default_rng(0)
    for k in range(24 if quick else 48):
        rgb, xyxy, cls = synthetic_scene(rng, 256, 256, n_objects=5)
        rec = project.add_image(rgb, split="train", name=f"train{k}.png")
        for box, c in zip(xyxy, cls):
            project.add_box(rec, SHAPES[int(c)], box.tolist())
    job = project.train(epochs=6 if quick else 15, model="small", device="cpu").wait()
    if job.error is not None:
        raise job.error
    return int(job.result)


def _images(project: Any, folder: Path, n: int) -> list[Any]:
    import tifffile

    from deepblock_nb.demo import synthetic_scene

    rng = np.random.default_rng(1)
    records = []
    for k in range(n):
        rgb, _, _ = synthetic_scene(rng, SIDE, SIDE, n_objects=40, size_range=(20, 56))
        path = folder / f"scene{k}.tif"
        tifffile.imwrite(path, rgb, tile=(256, 256), photometric="rgb", compression="zlib")
        records.append(project.add_image(path, split="predict", copy=False))
    return records


def _timed(project: Any, run_id: int, records: list[Any], client: Any = None) -> float:
    start = time.perf_counter()
    job = project.predict(records, run=run_id, device="cpu", client=client).wait()
    if job.error is not None:
        raise job.error
    return time.perf_counter() - start


def _boxes(project: Any, records: list[Any]) -> list[tuple[np.ndarray, ...]]:
    found = [project.predictions(r, threshold=0.0) for r in records]
    return [(d.xyxy, d.class_id, d.confidence) for d in found]


def _equal(a: list[tuple[np.ndarray, ...]], b: list[tuple[np.ndarray, ...]]) -> bool:
    return all(all(np.array_equal(u, v) for u, v in zip(x, y)) for x, y in zip(a, b))


def _largest_difference(a: list[tuple[np.ndarray, ...]], b: list[tuple[np.ndarray, ...]]) -> str:
    """How far two predicts of the same images are apart: box counts, else coordinates and scores."""
    na, nb = sum(len(x[0]) for x in a), sum(len(x[0]) for x in b)
    if any(len(x[0]) != len(y[0]) for x, y in zip(a, b)):
        return f"{na} vs {nb} boxes"
    dxy = max((float(np.abs(x[0] - y[0]).max()) for x, y in zip(a, b) if len(x[0])), default=0.0)
    dsc = max((float(np.abs(x[2] - y[2]).max()) for x, y in zip(a, b) if len(x[0])), default=0.0)
    return f"same {na} boxes, largest difference {dxy:.2g} px, score {dsc:.2g}"


def _nbytes(value: Any) -> int:
    """A task stream record's result size: an int, or a dict of sizes by key."""
    return int(sum(value.values()) if isinstance(value, dict) else value or 0)


def _on_cluster(
    project: Any, run_id: int, records: list[Any], workers: int, environ: dict[str, Any] | None = None
) -> dict[str, float]:
    import cloudpickle
    import dask
    from distributed import Client, LocalCluster, get_task_stream

    settings = {} if environ is None else {"distributed.nanny.pre-spawn-environ": environ}
    with (
        dask.config.set(settings),
        LocalCluster(
            n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=40
        ) as cluster,
        Client(cluster) as client,
    ):
        _timed(project, run_id, records[:workers], client)  # warm-up: imports, model load per worker
        sent: list[int] = []
        submit = client.submit

        def counting(fn: Any, *args: Any, **kwargs: Any) -> Any:
            sent.append(len(cloudpickle.dumps((fn, args))))
            return submit(fn, *args, **kwargs)

        client.submit = counting  # type: ignore[method-assign]
        with get_task_stream(client) as ts:
            seconds = _timed(project, run_id, records, client)
        client.submit = submit  # type: ignore[method-assign]
        tasks = [t for t in ts.data if "deepblock-predict" in str(t["key"])]
        back = sum(_nbytes(t.get("nbytes", 0)) for t in tasks)
    n = len(records)
    return {"seconds": seconds, "tasks": len(tasks), "sent": sum(sent) / n, "back": back / n}


def dask_throughput(n_images: int, quick: bool) -> None:
    """Print images per second of a local predict and of LocalClusters of 1 and 2 workers."""
    import torch

    import deepblock_nb as dbn
    from deepblock_nb.demo import SHAPES

    with tempfile.TemporaryDirectory() as tmp:
        project = dbn.Project.create(Path(tmp) / "proj", categories=list(SHAPES))
        t0 = time.perf_counter()
        run_id = _train(project, quick)
        print(f"trained run {run_id} (small preset) in {time.perf_counter() - t0:.0f} s")
        records = _images(project, Path(tmp), n_images)
        _timed(project, run_id, records[:1])  # warm-up
        local = _timed(project, run_id, records)
        default = _boxes(project, records)
        boxes = sum(len(b[0]) for b in default)
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # as a Dask worker runs torch (OMP_NUM_THREADS=1)
        local_1 = _timed(project, run_id, records)
        torch.set_num_threads(threads)
        expected = _boxes(project, records)
        ckpt = next(p for p in (project.run_dir(run_id) / n for n in ("best.pt", "last.pt")) if p.is_file())
        ckpt_mb = ckpt.stat().st_size / 1e6
        rows: dict[str, dict[str, Any]] = {}
        for name, w, environ in CLUSTERS:
            rows[name] = _on_cluster(project, run_id, records, w, environ)
            found = _boxes(project, records)
            rows[name]["workers"] = w
            rows[name]["vs local"] = (
                "exactly equal" if _equal(default, found) else _largest_difference(default, found)
            )
        differ = _largest_difference(default, expected)
        project.close()
    n = n_images
    print(f"{n} images of {SIDE} x {SIDE} px, {os.cpu_count()} CPU cores, {boxes} stored boxes (score floor)")
    print(f"local predict, {threads} torch threads: {n / local:6.2f} images/s  ({local:.1f} s)")
    print(f"local predict, 1 torch thread:  {n / local_1:6.2f} images/s  ({local_1:.1f} s)")
    for name, row in rows.items():
        print(
            f"LocalCluster {name}: {n / row['seconds']:6.2f} images/s ({row['seconds']:.1f} s, {row['tasks']:.0f} "
            f"tasks; per image {row['sent']:.0f} B sent, {row['back']:.0f} B back); vs local: {row['vs local']}"
        )
    one, two, tuned = (rows[name]["seconds"] for name, _, _ in CLUSTERS)
    print(f"2 workers / 1 worker (Dask defaults): {one / two:.2f}x;  2 workers / local: {local / two:.2f}x")
    print(f"2 workers without MALLOC_TRIM_THRESHOLD_ / local: {local / tuned:.2f}x")
    print(f"checkpoint read once per worker from the shared folder: {ckpt_mb:.1f} MB")
    print(f"local {threads} torch threads vs 1 torch thread: {differ}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--images", type=int, default=None, help="images to predict (default 16; 6 with --quick)"
    )
    parser.add_argument("--quick", action="store_true", help="fewer images, shorter training")
    args = parser.parse_args()
    dask_throughput(args.images or (6 if args.quick else 16), args.quick)
