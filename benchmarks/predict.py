"""Tiled prediction: our overhead over the bare model, and a comparison with SAHI.

One run measures, with the same torchvision model (SSDlite320-MobileNetV3, random
weights: pretrained ones cannot be downloaded here, and speed does not depend on
them; detections are capped at 10 per tile so box counts stay realistic) and the
same 500 x 500 tiles without overlap:

1. our ``predict_image`` time divided by the bare batched model time over the same
   tiles already in memory (target <= 1.15), on the 8,000 x 8,000 image;
2. against SAHI's ``get_sliced_prediction`` (same slices, NMS at IoU 0.5, no
   full-image pass) on an 8,000 x 8,000 JPEG, a 20,000 x 20,000 PNG (no random
   access: we stream it through libvips, SAHI decodes it whole) and a 30,000 x
   30,000 tiled TIFF: wall time and peak resident memory, each method in a fresh
   process (targets: ours below SAHI on the JPEG and the PNG, and under 500 MB
   above the process before predicting).

    .venv/bin/python benchmarks/predict.py                              # all three
    .venv/bin/python benchmarks/predict.py --sizes 8000 --png-sizes    # the JPEG only

SAHI is a benchmark-only dependency (``pip install sahi``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from _memory import PeakRSS

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TILE = 500
REPEATS = 3


# -- inputs ----------------------------------------------------------------------
def _texture_tile(rng: np.random.Generator, h: int, w: int, x0: int, y0: int) -> np.ndarray:
    """``(h, w, 3)`` uint8: smooth stripes plus rectangles, cheap to make and to compress."""
    yy, xx = np.mgrid[y0 : y0 + h, x0 : x0 + w].astype(np.float32)
    base = 128 + 60 * np.sin(xx * 0.013) * np.cos(yy * 0.011)  # [h,w]
    rgb = np.stack([base, base * 0.8 + 20, 255 - base], axis=-1).astype(np.uint8)
    for _ in range(int(rng.integers(0, 6))):
        s = int(rng.integers(10, 60))
        x, y = int(rng.integers(0, max(1, w - s))), int(rng.integers(0, max(1, h - s)))
        rgb[y : y + s, x : x + s] = rng.integers(0, 256, 3)
    return rgb


def make_jpeg(path: Path, size: int) -> Path:
    from PIL import Image

    if path.exists():
        return path
    rng = np.random.default_rng(0)
    rgb = _texture_tile(rng, size, size, 0, 0)
    for _ in range(size * size // 20000):
        s = int(rng.integers(10, 60))
        x, y = rng.integers(0, size - s, 2)
        rgb[y : y + s, x : x + s] = rng.integers(0, 256, 3)
    Image.fromarray(rgb).save(path, quality=90)
    return path


def make_tiled_tiff(path: Path, size: int, tile: int = 512) -> Path:
    """A ``size x size`` RGB TIFF of 512 x 512 deflate tiles, written tile by tile."""
    import tifffile

    if path.exists():
        return path
    rng = np.random.default_rng(1)

    def tiles() -> Iterator[np.ndarray]:
        for y0 in range(0, size, tile):
            for x0 in range(0, size, tile):
                yield _texture_tile(rng, tile, tile, x0, y0)

    tmp = path.with_suffix(".partial.tif")
    tifffile.imwrite(
        tmp,
        tiles(),
        shape=(size, size, 3),
        dtype=np.uint8,
        tile=(tile, tile),
        photometric="rgb",
        compression="zlib",
        compressionargs={"level": 1},
    )
    tmp.rename(path)
    return path


# -- the model -----------------------------------------------------------------------
@dataclass
class Loaded:
    model: Any
    category_ids: list[int]
    tile_size: int
    device: Any


def make_model(device: str) -> Loaded:
    import torch
    import torchvision

    from deepblock_nb.ml.device import resolve_device

    torch.manual_seed(0)
    model = torchvision.models.detection.ssdlite320_mobilenet_v3_large(
        weights=None, weights_backbone=None, num_classes=3, score_thresh=0.05, detections_per_img=10
    )
    dev = resolve_device(device)
    return Loaded(model.eval().to(dev), [1, 2], TILE, dev)


def _memory_fields(mem: PeakRSS) -> dict[str, float]:
    """Stop the sampler; the figures in MB (the child process measures one method)."""
    mem.__exit__()
    return {
        "rss_before_mb": mem.start / 2**20,
        "peak_rss_mb": mem.peak / 2**20,
        "peak_over_before_mb": (mem.peak - mem.start) / 2**20,
    }


def _sync(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()


# -- the measured runs (each in its own process) ---------------------------------------
def run_ours(path: Path, device: str, with_pure: bool) -> dict[str, Any]:
    import torch

    from deepblock_nb.io.images import open_image
    from deepblock_nb.ml.predict import default_batch_size, plan_tiles, predict_image
    from deepblock_nb.project._prediction import STREAM_CACHE_BYTES

    loaded = make_model(device)
    batch_size = default_batch_size(loaded.device)
    with tempfile.TemporaryDirectory() as cache:
        mem = PeakRSS(0.01, lifetime=True).__enter__()
        t0 = time.perf_counter()
        with open_image(path, cache_dir=cache, cache_bytes=STREAM_CACHE_BYTES) as src:
            det = predict_image(loaded, src, None, batch_size=batch_size)
            _sync(loaded.device)
            first = time.perf_counter() - t0
            out: dict[str, Any] = {
                "method": "ours",
                "seconds": first,
                "boxes": len(det),
                "batch_size": batch_size,
                **_memory_fields(mem),
            }
            if not with_pure:
                return out
            # the same windows (tiles with their context), already decoded in memory:
            # the bare batched model
            windows = plan_tiles((src.width, src.height), loaded).windows
            tiles = [
                torch.from_numpy(src.read_region(*map(int, w))).permute(2, 0, 1).contiguous() for w in windows
            ]
            out["tiles"] = len(tiles)

            def pure() -> float:
                t = time.perf_counter()
                with torch.inference_mode():
                    for k in range(0, len(tiles), batch_size):
                        batch = [x.to(loaded.device).float().div_(255.0) for x in tiles[k : k + batch_size]]
                        res = loaded.model(batch)
                        [r["boxes"].cpu() for r in res]
                _sync(loaded.device)
                return time.perf_counter() - t

            def ours() -> float:
                t = time.perf_counter()
                predict_image(loaded, src, None, batch_size=batch_size)
                _sync(loaded.device)
                return time.perf_counter() - t

            # interleaved pairs (the first run above warmed the caches); on a busy
            # machine the best of each and the median of the paired ratios both count
            p, o = [], []
            for _ in range(REPEATS):
                p.append(pure())
                o.append(ours())
            out.update(
                pure_seconds=min(p),
                ours_seconds=min(o),
                ratio=min(o) / min(p),
                ratio_median_pairs=float(np.median(np.array(o) / np.array(p))),
            )
            return out


def run_sahi(path: Path, device: str) -> dict[str, Any]:
    from sahi.models.torchvision import TorchVisionDetectionModel
    from sahi.predict import get_sliced_prediction

    from deepblock_nb.ml.predict import default_batch_size

    loaded = make_model(device)
    det_model = TorchVisionDetectionModel(
        model=loaded.model,
        device=str(loaded.device),
        confidence_threshold=0.05,
        category_mapping={"1": "a", "2": "b"},
        load_at_init=True,
    )
    mem = PeakRSS(0.01, lifetime=True).__enter__()
    t0 = time.perf_counter()
    result = get_sliced_prediction(
        str(path),
        det_model,
        slice_height=TILE,
        slice_width=TILE,
        overlap_height_ratio=0.0,
        overlap_width_ratio=0.0,
        perform_standard_pred=False,
        postprocess_type="NMS",
        postprocess_match_metric="IOU",
        postprocess_match_threshold=0.5,
        verbose=0,
        batch_size=default_batch_size(loaded.device),
    )
    _sync(loaded.device)
    seconds = time.perf_counter() - t0
    return {
        "method": "sahi",
        "seconds": seconds,
        "boxes": len(result.object_prediction_list),
        **_memory_fields(mem),
    }


def _child(args: argparse.Namespace) -> None:
    import torch

    torch.set_num_threads(args.threads or torch.get_num_threads())
    path = Path(args.child_path)
    if args.child == "ours":
        out = run_ours(path, args.device, args.with_pure)
    else:
        out = run_sahi(path, args.device)
    print("RESULT " + json.dumps(out), flush=True)


def _spawn(method: str, path: Path, args: argparse.Namespace, with_pure: bool = False) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--child", method, "--child-path", str(path), "--device", args.device]
    if with_pure:
        cmd.append("--with-pure")
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])  # type: ignore[no-any-return]
    return {"method": method, "error": (proc.stderr or proc.stdout)[-2000:]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="*", default=[8000, 30000], help="JPEG up to 10000, else TIFF")
    ap.add_argument("--png-sizes", type=int, nargs="*", default=[20000], help="PNG images (libvips-streamed)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "deepblock-bench")
    ap.add_argument("--no-sahi", action="store_true", help="measure ours only")
    ap.add_argument("--no-ours", action="store_true", help="measure SAHI only")
    ap.add_argument("--json", type=Path, help="also write the results here")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--child-path", help=argparse.SUPPRESS)
    ap.add_argument("--with-pure", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        _child(args)
        return
    args.work.mkdir(parents=True, exist_ok=True)
    results = []
    from _bigpng import make_png

    inputs = [(size, "jpeg" if size <= 10000 else "tiff") for size in args.sizes]
    inputs += [(size, "png") for size in args.png_sizes]
    for size, kind in inputs:
        t = time.perf_counter()
        if kind == "png":
            path = make_png(args.work / f"bench_{size}.png", size)
        elif kind == "jpeg":
            path = make_jpeg(args.work / f"bench_{size}.jpg", size)
        else:
            path = make_tiled_tiff(args.work / f"bench_{size}.tif", size)
        print(
            f"{path.name}: {path.stat().st_size / 2**20:.0f} MB on disk (made in {time.perf_counter() - t:.0f} s)"
        )
        row: dict[str, Any] = {"size": size, "file": path.name}
        if not args.no_ours:
            row["ours"] = _spawn("ours", path, args, with_pure=size <= 10000)
        if not args.no_sahi:
            row["sahi"] = _spawn("sahi", path, args)
        results.append(row)
        _targets(row, kind)
        _print(row)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


def _print(row: dict[str, Any]) -> None:
    print(f"\n== {row['size']} x {row['size']} ({row['file']}) ==")
    for key in ("ours", "sahi"):
        r = row.get(key)
        if r is None:
            continue
        if "error" in r:
            print(f"{key:5s} FAILED: {r['error']}")
            continue
        print(
            f"{key:5s} {r['seconds']:8.1f} s  peak RSS {r['peak_rss_mb']:7.0f} MB "
            f"(+{r['peak_over_before_mb']:.0f} MB over {r['rss_before_mb']:.0f} MB before)  {r['boxes']} boxes"
        )
    ours = row.get("ours", {})
    if "ratio" in ours:
        print(
            f"ours / bare batched model over the same {ours['tiles']} tiles: "
            f"{ours['ours_seconds']:.2f} s / {ours['pure_seconds']:.2f} s = {ours['ratio']:.3f} "
            f"(median of paired runs {ours['ratio_median_pairs']:.3f})"
        )
    if "sahi" in row and "seconds" in row["sahi"] and "seconds" in ours:
        print(f"SAHI / ours time: {row['sahi']['seconds'] / ours['seconds']:.2f}x")


def _targets(row: dict[str, Any], kind: str) -> None:
    ours, sahi = row.get("ours", {}), row.get("sahi", {})
    if "peak_over_before_mb" not in ours:
        return
    over = ours["peak_over_before_mb"]
    print(f"[{'PASS' if over < 500 else 'MISS'}] ours: {over:.0f} MB above the process before (< 500 MB)")
    if kind in ("jpeg", "png") and "peak_rss_mb" in sahi:
        below = ours["peak_rss_mb"] < sahi["peak_rss_mb"]
        print(
            f"[{'PASS' if below else 'MISS'}] ours peak {ours['peak_rss_mb']:.0f} MB below SAHI's "
            f"{sahi['peak_rss_mb']:.0f} MB"
        )


if __name__ == "__main__":
    main()
