"""Time and peak memory of windowed reads on a very large tiled TIFF.

Generates (once, tile by tile, so generation is bounded in memory) a
``size x size`` RGB uint8 BigTIFF with 512-px deflate tiles under ``--dir``, then
measures, in this process:

- ``open_image``;
- one 1000 x 1000 ``read_region`` in the middle of the image (cold, then warm);
- a 1024-px ``overview`` (no pyramid: every tile is decoded once), and again with
  ``cache_dir`` (building, then reading, the derived 2048-px overview);
- a full pass over all 1000-px grid tiles (``tile_windows``/``suggest_grid``);

and, in a separate subprocess so its memory is measured on its own, the baseline
``tifffile.imread`` of the whole image. Peak memory is the highest resident set
size (RSS, sampled every 2 ms by a thread) during each step.

Then, for a format without random access: the time to the first overview of a
``--png`` side PNG (default 20,000: 1.2 GB decoded), ours (libvips streams it into a
pyramidal TIFF under ``cache/`` and reads the overview from it) against a whole-image
Pillow decode and thumbnail, each in a fresh process with its peak memory.

Usage::

    python benchmarks/large_image.py                 # 30,000 x 30,000 (~2.7 GB decoded)
    python benchmarks/large_image.py --size 8000     # a quicker run
    python benchmarks/large_image.py --png 0         # without the PNG comparison
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import tifffile
from _memory import PeakRSS

TILE = 512
MB = 1024 * 1024


def generate(path: Path, size: int) -> None:
    """Write a ``size x size`` RGB tiled deflate BigTIFF, one tile in memory at a time."""
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 24, (TILE, TILE, 3), dtype=np.uint8)
    yy, xx = np.mgrid[0:TILE, 0:TILE]

    def tiles() -> Iterator[np.ndarray]:
        for ty in range(0, size, TILE):
            for tx in range(0, size, TILE):
                y = yy + ty
                x = xx + tx
                tile = np.empty((TILE, TILE, 3), np.uint8)
                tile[..., 0] = (x // 7 + y // 13) & 255
                tile[..., 1] = ((x * y) >> 10) & 255
                tile[..., 2] = (128 + 100 * np.sin(x / 300.0) * np.cos(y / 211.0)).astype(np.uint8)
                yield tile + noise

    tmp = path.with_suffix(".tmp")
    tifffile.imwrite(
        tmp,
        tiles(),
        shape=(size, size, 3),
        dtype=np.uint8,
        tile=(TILE, TILE),
        photometric="rgb",
        compression="zlib",
        bigtiff=True,
    )
    tmp.replace(path)


def measure(name: str, fn: Callable[[], Any], results: dict[str, dict[str, float]]) -> Any:
    """Run ``fn`` once; record seconds and peak RSS (MB) under ``name``."""
    with PeakRSS() as rss:
        t0 = time.perf_counter()
        out = fn()
        dt = time.perf_counter() - t0
    results[name] = {"seconds": dt, "peak_rss_mb": rss.peak / MB}
    print(f"{name:28s} {dt * 1000:10.1f} ms   peak RSS {rss.peak / MB:8.1f} MB", flush=True)
    return out


BASELINE = """
import json, sys, threading, time, psutil, tifffile
proc = psutil.Process(); peak = [proc.memory_info().rss]; stop = threading.Event()
def sample():
    while not stop.is_set():
        peak[0] = max(peak[0], proc.memory_info().rss); time.sleep(0.002)
t = threading.Thread(target=sample, daemon=True); t.start()
kw = {} if sys.argv[2] == "default" else {"maxworkers": int(sys.argv[2])}
t0 = time.perf_counter(); a = tifffile.imread(sys.argv[1], **kw); dt = time.perf_counter() - t0
stop.set(); t.join(); peak[0] = max(peak[0], proc.memory_info().rss)
print(json.dumps({"seconds": dt, "peak_rss_mb": peak[0] / 2**20, "checksum": int(a[::97, ::89].sum())}))
"""


PNG_CHILD = """
import json, sys, tempfile, threading, time, psutil
proc = psutil.Process(); peak = [proc.memory_info().rss]; stop = threading.Event()
def sample():
    while not stop.is_set():
        peak[0] = max(peak[0], proc.memory_info().rss); time.sleep(0.002)
t = threading.Thread(target=sample, daemon=True); t.start()
before = proc.memory_info().rss
t0 = time.perf_counter()
if sys.argv[2] == "ours":
    sys.path.insert(0, sys.argv[3])
    from deepblock_nb.io.images import open_image
    with tempfile.TemporaryDirectory() as cache, open_image(sys.argv[1], cache_dir=cache) as src:
        ov = src.overview(1024)
else:
    from PIL import Image
    Image.MAX_IMAGE_PIXELS = None
    im = Image.open(sys.argv[1]); im.load(); im.thumbnail((1024, 1024)); ov = im
dt = time.perf_counter() - t0
stop.set(); t.join(); peak[0] = max(peak[0], proc.memory_info().rss)
print(json.dumps({"seconds": dt, "peak_rss_mb": peak[0] / 2**20, "over_mb": (peak[0] - before) / 2**20}))
"""


def png_overview(folder: Path, size: int) -> None:
    """Time to the first overview of a large PNG: ours against a whole Pillow decode."""
    from _bigpng import make_png

    path = make_png(folder / f"rgb_{size}.png", size)
    print(f"\n{path}: {path.stat().st_size / MB:.0f} MB on disk, {size**2 * 3 / MB:.0f} MB decoded")
    root = str(Path(__file__).resolve().parents[1])
    got = {}
    for who in ("ours", "pillow"):
        out = subprocess.run(
            [sys.executable, "-c", PNG_CHILD, str(path), who, root],
            capture_output=True,
            text=True,
            check=True,
        )
        got[who] = r = json.loads(out.stdout.strip().splitlines()[-1])
        label = "ours: open + overview 1024" if who == "ours" else "Pillow: decode + thumbnail"
        print(f"{label:28s} {r['seconds'] * 1000:10.1f} ms   peak RSS {r['peak_rss_mb']:8.1f} MB")
    print(
        f"first overview, ours / Pillow: time {got['ours']['seconds'] / got['pillow']['seconds']:.2f}x, "
        f"peak memory {got['ours']['peak_rss_mb'] / got['pillow']['peak_rss_mb']:.2f}x"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dir", default="/tmp/dbn_bench", help="folder for the generated image")
    parser.add_argument("--size", type=int, default=30_000, help="image side in pixels")
    parser.add_argument("--window", type=int, default=1000, help="window / grid tile side")
    parser.add_argument("--png", type=int, default=20_000, help="side of the PNG comparison (0: skip)")
    args = parser.parse_args()

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout
    from deepblock_nb.core.tiling import suggest_grid, tile_windows
    from deepblock_nb.io import images

    folder = Path(args.dir)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"rgb_{args.size}_tiled_deflate.tif"
    if not path.exists():
        print(f"generating {path} ...", flush=True)
        t0 = time.perf_counter()
        generate(path, args.size)
        print(f"generated in {time.perf_counter() - t0:.1f} s", flush=True)
    print(f"{path}: {path.stat().st_size / MB:.0f} MB on disk, {args.size**2 * 3 / MB:.0f} MB decoded")
    print(f"idle RSS {psutil.Process().memory_info().rss / MB:.1f} MB")

    r: dict[str, dict[str, float]] = {}
    src = measure("open_image", lambda: images.open_image(path), r)
    c = args.size // 2
    win = args.window
    measure("read_region 1000 (cold)", lambda: src.read_region(c, c, win, win), r)
    measure("read_region 1000 (warm)", lambda: src.read_region(c, c, win, win), r)
    other_x = min(c + 3 * win, args.size - win)  # another window, inside smaller images too
    measure("read_region 1000 (other)", lambda: src.read_region(other_x, 7, win, win), r)
    measure("overview 1024", lambda: src.overview(1024), r)
    images.clear_tile_cache()
    cache = folder / "cache"
    for f in cache.glob(f"{path.stem[:40]}-*.npy"):
        f.unlink()  # measure building the derived overview, then reading it
    with images.open_image(path, cache_dir=cache) as cached:
        measure("overview 1024 (build cache)", lambda: cached.overview(1024), r)
    with images.open_image(path, cache_dir=cache) as cached:
        measure("overview 1024 (from cache)", lambda: cached.overview(1024), r)

    windows = tile_windows((src.width, src.height), *suggest_grid((src.width, src.height), win))

    def full_pass() -> int:
        total = 0
        for x, y, w, h in windows.tolist():
            total += int(src.read_region(x, y, w, h)[0, 0, 0])
        return total

    measure(f"full pass ({len(windows)} tiles)", full_pass, r)
    src.close()

    bases = {}
    for workers in ("default", str(os.cpu_count() or 1)):
        out = subprocess.run(
            [sys.executable, "-c", BASELINE, str(path), workers], capture_output=True, text=True, check=True
        )
        bases[workers] = base = json.loads(out.stdout.strip().splitlines()[-1])
        label = f"tifffile.imread ({'default' if workers == 'default' else workers + ' threads'})"
        print(f"{label:28s} {base['seconds'] * 1000:10.1f} ms   peak RSS {base['peak_rss_mb']:8.1f} MB")
    full = r[f"full pass ({len(windows)} tiles)"]
    print()
    for workers, base in bases.items():
        print(
            f"full pass / imread[{workers}] time: {full['seconds'] / base['seconds']:.2f}x (target <= 1.5x), "
            f"peak memory: {full['peak_rss_mb'] / base['peak_rss_mb']:.3f}x"
        )
    print(
        f"window read: {r['read_region 1000 (cold)']['seconds'] * 1000:.1f} ms cold "
        f"(target < 100 ms), peak {r['read_region 1000 (cold)']['peak_rss_mb']:.0f} MB (target < 500 MB)"
    )
    print(f"full pass peak {full['peak_rss_mb']:.0f} MB (target < 500 MB)")
    if args.png:
        png_overview(folder, args.png)


if __name__ == "__main__":
    main()
