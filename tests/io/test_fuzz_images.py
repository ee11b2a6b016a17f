"""Property-based fuzzing of image probing and reading over damaged files.

Each example takes a valid tiny file of one format (PNG, APNG, JPEG, CMYK JPEG, GIF,
BMP, ICO, JPEG 2000, WebP, SVG and a dozen TIFF layouts, from ``conftest``) and
damages it: truncated at a random offset, bytes flipped, inserted, deleted,
overwritten or duplicated, with half the damage in the first bytes where headers
and tables are. The property: ``probe_image`` returns an ``ImageInfo`` or raises a
``DeepBlockError`` naming the file; so does ``open_image``, and the source it
returns reads its whole first level and an overview as ``(h, w, 3)`` uint8 or
raises one. ``max_pixels`` keeps a damaged header from asking for gigabytes.
"""

from __future__ import annotations

import io
import os
import struct
from pathlib import Path

import numpy as np
import pytest
import tifffile
from hypothesis import given
from hypothesis import strategies as st

from deepblock_nb.errors import DeepBlockError, ImageReadError
from deepblock_nb.io.images import open_image, probe_image

from ._fuzz import FUZZ, Scratch, check_outcome, mutated_bytes
from .conftest import Sample

LIMIT = 4_000_000  # pixels: a damaged size field may claim anything up to this


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Scratch:
    return Scratch(tmp_path_factory.mktemp("fuzz_images"))


def read_everything(path: Path) -> None:
    """Probe, open and read one file; only clean results or DeepBlockErrors naming it."""
    names = [str(path), path.name]
    info, _ = check_outcome(lambda: probe_image(path, max_pixels=LIMIT), names)
    if info is not None:
        assert info.width >= 1 and info.height >= 1 and info.width * info.height <= LIMIT
        assert info.levels and info.levels[0] == (info.width, info.height)
    source, _ = check_outcome(lambda: open_image(path, cache_bytes=0, max_pixels=LIMIT), names)
    if source is None:
        return
    with open_image(path, cache_bytes=0, max_pixels=LIMIT) as fresh:  # overview before any read:
        check_outcome(lambda: fresh.overview(8), names)  # JPEG draft / JPEG 2000 reduce paths
    with source:
        w, h = source.width, source.height
        assert w * h <= LIMIT
        if info is not None:
            assert (info.width, info.height) == (w, h)
        px, _ = check_outcome(lambda: source.read_region(0, 0, w, h), names)
        if px is not None:
            assert px.shape == (h, w, 3) and px.dtype == np.uint8
        for level, (lw, lh) in enumerate(source.levels[1:], start=1):
            part, _ = check_outcome(lambda: source.read_region(0, 0, lw, lh, level), names)  # noqa: B023
            if part is not None:
                assert part.shape == (lh, lw, 3)
        small, _ = check_outcome(lambda: source.overview(8), names)
        if small is not None:
            assert small.ndim == 3 and small.shape[2] == 3 and max(small.shape[:2]) <= 8


@FUZZ
@given(data=st.data())
def test_damaged_images_never_crash(samples: dict[str, Sample], scratch: Scratch, data) -> None:
    name = data.draw(st.sampled_from(sorted(samples)), label="sample")
    original = samples[name].path.read_bytes()
    damaged = data.draw(mutated_bytes(original), label="damaged")
    path = scratch.path(name)
    path.write_bytes(damaged)
    read_everything(path)


# hand-written headers and near-misses that byte damage rarely produces
ODD_FILES = {
    "magic-only.png": b"\x89PNG\r\n\x1a\n",
    "magic-only.jpg": b"\xff\xd8\xff",
    "magic-only.tif": b"II*\x00",
    "bigtiff-magic.tif": b"II+\x00\x08\x00\x00\x00",
    "magic-only.gif": b"GIF89a",
    "magic-only.bmp": b"BM",
    "short.bmp": b"BM" + b"\x00" * 40,
    "magic-only.ico": b"\x00\x00\x01\x00",
    "ico-many.ico": b"\x00\x00\x01\x00\xff\xff" + b"\x00" * 16,
    "magic-only.jp2": b"\x00\x00\x00\x0cjP  \r\n\x87\n",
    "magic-only.j2k": b"\xff\x4f\xff\x51",
    "riff.webp": b"RIFF\xff\xff\xff\xffWEBPVP8 ",
    "text.svg": b"<svg not xml",
    "inf.svg": b'<svg xmlns="http://www.w3.org/2000/svg" width="1e999" height="5"/>',
    "nan.svg": b'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 nan nan"/>',
    "huge.svg": b'<svg xmlns="http://www.w3.org/2000/svg" width="100000" height="100000"/>',
    "zero.svg": b'<svg xmlns="http://www.w3.org/2000/svg" width="0" height="5"/>',
    "html.svg": b"<html><svg></svg></html>",
    "not-svg.svg": b'<?xml version="1.0"?><!-- <svg --><root/>',
    "latin1.svg": b'<?xml version="1.0" encoding="bogus"?><svg width="5" height="5"/>',
    "notes.png": b"just some text\n",
    "mp4.png": b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 16,
    "nul.png": b"\x00",
}


@pytest.mark.parametrize("name", sorted(ODD_FILES))
def test_odd_files(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(ODD_FILES[name])
    read_everything(path)


@pytest.mark.parametrize("kind", ["missing", "folder", "under-a-file", "nul", "fifo", "dangling-link"])
@pytest.mark.parametrize("fn", [probe_image, open_image])
def test_paths_that_are_not_files(tmp_path: Path, kind: str, fn) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "x.png"
    if kind == "folder":
        path.mkdir()
    elif kind == "under-a-file":
        path.write_bytes(b"\x89PNG")
        path = path / "inner.png"
    elif kind == "nul":
        path = tmp_path / "x\x00.png"
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "dangling-link":
        path.symlink_to(tmp_path / "gone.png")
    with pytest.raises(ImageReadError) as info:
        fn(path)
    assert "x" in str(info.value)
    assert isinstance(info.value, DeepBlockError)


# ------------------------------------------- damaged TIFFs the fuzzing found, rebuilt


def _patch_tag(data: bytearray, code: int, value: int, bigtiff: bool = False) -> None:
    """Overwrite the inline value of tag ``code`` in the first IFD of a little-endian TIFF."""
    if bigtiff:
        ifd, entry, head = struct.unpack_from("<Q", data, 8)[0], 20, "<HHQ"
        n, first = struct.unpack_from("<Q", data, ifd)[0], ifd + 8
    else:
        ifd, entry, head = struct.unpack_from("<I", data, 4)[0], 12, "<HHI"
        n, first = struct.unpack_from("<H", data, ifd)[0], ifd + 2
    for i in range(n):
        at = first + entry * i
        if struct.unpack_from(head, data, at)[0] == code:
            struct.pack_into("<Q" if bigtiff else "<I", data, at + struct.calcsize(head), value)
            return
    raise KeyError(code)


def _tiff(image: np.ndarray, **kw: object) -> bytearray:
    buf = io.BytesIO()
    tifffile.imwrite(buf, image, metadata=None, **kw)  # type: ignore[arg-type]
    return bytearray(buf.getvalue())


def _page_loop() -> bytes:
    """Two pages of different sizes; the second's next-page offset points to itself.

    tifffile's lazy page iterator (behind ``TiffFile.series``) loops forever on it.
    """
    buf = io.BytesIO()
    with tifffile.TiffWriter(buf) as tw:
        tw.write(np.zeros((8, 8), np.uint8), contiguous=False, metadata=None)
        tw.write(np.zeros((4, 4), np.uint8), contiguous=False, metadata=None)
    data = bytearray(buf.getvalue())
    first = struct.unpack_from("<I", data, 4)[0]
    second = struct.unpack_from("<I", data, first + 2 + 12 * struct.unpack_from("<H", data, first)[0])[0]
    struct.pack_into("<I", data, second + 2 + 12 * struct.unpack_from("<H", data, second)[0], second)
    return bytes(data)


def _damaged_tiffs() -> dict[str, bytes]:
    rgb = np.arange(23 * 37 * 3, dtype=np.uint8).reshape(23, 37, 3)
    few = _tiff(rgb, photometric="rgb", compression="zlib", rowsperstrip=100)
    _patch_tag(few, 278, 5)  # RowsPerStrip 5: five strips needed, one listed
    tall = _tiff(rgb, photometric="rgb")
    _patch_tag(tall, 257, 500)  # ImageLength 500 over a memory-mappable 23-row strip
    far = _tiff(rgb, photometric="rgb", compression="zlib", bigtiff=True)
    _patch_tag(far, 273, 2**63 + 5, bigtiff=True)  # a strip offset past any int64
    return {"page-loop.tif": _page_loop(), "few-strips.tif": bytes(few), "tall.tif": bytes(tall),
            "far-strip.tif": bytes(far)}  # fmt: skip


@pytest.mark.timeout(60)
@pytest.mark.parametrize("name", ["page-loop.tif", "few-strips.tif", "tall.tif", "far-strip.tif"])
def test_damaged_tiffs_found_by_fuzzing(tmp_path: Path, name: str) -> None:
    """Each once hung, or passed the probe and then failed with a non-DeepBlockError."""
    path = tmp_path / name
    path.write_bytes(_damaged_tiffs()[name])
    read_everything(path)
    if name != "page-loop.tif":  # the probe refuses what reading would refuse
        with pytest.raises(ImageReadError, match=name):
            probe_image(path)
