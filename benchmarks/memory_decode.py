"""Peak memory of reading a large JPEG: libvips pyramid vs whole decode by Pillow.

Writes an ``size x size`` JPEG (streamed by libvips, so writing it is bounded in
memory), then for each path runs, in a fresh process: ``open_image`` with a new
cache folder, a 1024-px ``overview`` and 20 windows of 512 x 512. The Pillow path
is the same code with ``_raster.STREAM_MIN_PIXELS`` set out of reach.

Each measured process is the child of a small runner process that reads its peak
with ``resource.getrusage(RUSAGE_CHILDREN)``: the runner is started fresh, so
the peak it reports is the measured child's own (``ru_maxrss`` carries the peak
of the forking parent across ``exec``, and this script's parent may be large).

Usage::

    python benchmarks/memory_decode.py               # 8,000 x 8,000
    python benchmarks/memory_decode.py --size 12000
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

_MEASURED = """
import sys, time
from deepblock_nb.io import _raster
from deepblock_nb.io.images import open_image
path, cache, mode = sys.argv[1:4]
if mode == "pillow":
    _raster.STREAM_MIN_PIXELS = float("inf")
t0 = time.perf_counter()
with open_image(path, cache_dir=cache) as src:
    assert type(src).__name__ == ("PyramidSource" if mode == "vips" else "DecodedSource")
    src.overview(1024)
    for i in range(20):
        x = (i * 2713) % (src.width - 512)
        y = (i * 1931) % (src.height - 512)
        src.read_region(x, y, 512, 512)
print(f"{time.perf_counter() - t0:.2f}")
"""

_RUNNER = """
import resource, subprocess, sys
out = subprocess.run([sys.executable, "-c", sys.argv[1], *sys.argv[2:]], check=True, capture_output=True, text=True)
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # KiB on Linux
print(out.stdout.strip(), peak // 1024)
"""


def _write_jpeg(path: Path, side: int) -> None:
    import pyvips

    xy = pyvips.Image.xyz(side, side)
    noise = pyvips.Image.gaussnoise(side, side, sigma=20)
    im = ((xy[0] // 5 + xy[1] // 3) % 256).bandjoin([xy[0] * 3 % 256, noise + 128]).cast("uchar")
    im.jpegsave(str(path), Q=90)


def _measure(jpeg: Path, cache: Path, mode: str) -> tuple[float, int]:
    """``(seconds, peak RSS MB)`` of one path, in a runner and its child."""
    run = subprocess.run(
        [sys.executable, "-c", _RUNNER, textwrap.dedent(_MEASURED), str(jpeg), str(cache), mode],
        check=True,
        capture_output=True,
        text=True,
    )
    seconds, peak_mb = run.stdout.split()
    return float(seconds), int(peak_mb)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=8000, help="side of the square JPEG in pixels")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="dbn-memory-decode-") as tmp:
        jpeg = Path(tmp) / "large.jpg"
        _write_jpeg(jpeg, args.size)
        print(f"{args.size:,} x {args.size:,} JPEG, {jpeg.stat().st_size / 2**20:.0f} MB on disk")
        print("open + overview(1024) + 20 windows of 512 x 512, each path in a fresh process:")
        results = {}
        for mode in ("vips", "pillow"):
            seconds, peak = _measure(jpeg, Path(tmp) / f"cache-{mode}", mode)
            results[mode] = peak
            label = "libvips pyramid" if mode == "vips" else "Pillow whole decode"
            print(f"  {label:20s} peak RSS {peak:6,} MB   {seconds:6.2f} s")
        print(f"peak RSS ratio Pillow / libvips: {results['pillow'] / results['vips']:.1f}x")


if __name__ == "__main__":
    main()
