"""Boxes as RFC 7946 GeoJSON: one Polygon Feature per box.

Boxes of a georeferenced image (:mod:`deepblock_nb.io.geo`) are written as WGS 84
longitude/latitude (pyproj): the four corners are projected, the edges between
them are straight in longitude/latitude (a box is small next to the curvature of
any projection). Boxes of other images are written in pixel coordinates (``x``
right, ``y`` down from the image's top-left corner); such a file says so in a
top-level ``"note"`` member and with ``"crs": "pixel"`` in each such feature's
properties (RFC 7946 section 6.1 allows foreign members). Georeferenced features
carry ``"crs": "OGC:CRS84"``.

Each ring is closed (first corner repeated) and counter-clockwise in the numbers
written (positive shoelace area with x right and y up), as RFC 7946 section 3.1.6
asks of exterior rings. Properties: ``image`` (name), ``category``, ``score``
(results only), the pixel box ``x1, y1, x2, y2`` and ``crs``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from deepblock_nb.errors import FormatError
from deepblock_nb.io.geo import Georeference

from ._common import atomic_write_text, check_set
from ._records import AnnotationSet, FloatArray

__all__ = ["LONLAT", "PIXEL", "box_rings", "counter_clockwise", "write_geojson"]

#: the ``crs`` property of features in pixel coordinates
PIXEL = "pixel"
#: the ``crs`` property of features in WGS 84 longitude/latitude (RFC 7946's only CRS)
LONLAT = "OGC:CRS84"


def box_rings(xyxy: FloatArray) -> FloatArray:
    """``(N, 4)`` ``xyxy`` boxes -> ``(N, 5, 2)`` closed rings of their corners in pixel
    coordinates: top-left, bottom-left, bottom-right, top-right, top-left (counter-
    clockwise on a north-up map, whose y axis points the other way)."""
    x1, y1, x2, y2 = np.asarray(xyxy, np.float64).reshape(-1, 4).T
    xs = np.stack([x1, x1, x2, x2, x1], axis=1)  # [N,5]
    ys = np.stack([y1, y2, y2, y1, y1], axis=1)  # [N,5]
    return np.stack([xs, ys], axis=-1)


def counter_clockwise(rings: FloatArray) -> FloatArray:
    """``(N, K, 2)`` closed rings, each reversed where its shoelace area is negative
    (clockwise with x right, y up). Returns a new array."""
    x, y = rings[..., 0], rings[..., 1]
    area2 = np.sum(x[:, :-1] * y[:, 1:] - x[:, 1:] * y[:, :-1], axis=1)  # [N], twice the signed area
    return np.where((area2 < 0)[:, None, None], rings[:, ::-1], rings)


def write_geojson(
    path: str | Path,
    annotations: AnnotationSet,
    georeferences: Mapping[str, Georeference | None],
) -> None:
    """Write one GeoJSON FeatureCollection (atomically), one Polygon Feature per box.

    Args:
        path: the ``.geojson`` file.
        annotations: boxes per image (with ``scores`` for predictions).
        georeferences: image ``file_name`` -> its georeference, or ``None`` (or
            absent) for an image in pixel coordinates.

    Raises:
        FormatError: a georeferenced image whose CRS is user-defined or unknown (names
            that image file), or whose boxes project to no finite longitude/latitude.
        DependencyError: pyproj is needed and not installed.
    """
    path = Path(path)
    check_set(annotations, path)
    features: list[dict[str, Any]] = []
    in_pixels: list[str] = []
    on_map = 0  # georeferenced images with boxes
    for im in annotations.images:
        if not len(im):
            continue
        geo = georeferences.get(im.file_name)
        rings = box_rings(im.xyxy)
        if geo is None:
            crs = PIXEL
            in_pixels.append(im.file_name)
        else:
            crs = LONLAT
            on_map += 1
            lon, lat = geo.pixel_to_lonlat(rings[..., 0], rings[..., 1])
            rings = np.stack([lon, lat], axis=-1)
            if not np.isfinite(rings).all():
                raise FormatError(
                    f"{geo.path.name}: some boxes of {im.file_name!r} have no finite longitude/latitude "
                    f"in {geo.crs}; check the file's georeferencing",
                    geo.path,
                )
        rings = counter_clockwise(rings)
        scores = [None] * len(im) if im.scores is None else im.scores.tolist()
        for ring, box, label, score in zip(rings.tolist(), im.xyxy.tolist(), im.category, scores):
            props: dict[str, Any] = {"image": im.file_name, "category": label}
            if score is not None:
                props["score"] = score
            props.update(x1=box[0], y1=box[1], x2=box[2], y2=box[3], crs=crs)
            features.append(
                {
                    "type": "Feature",
                    "geometry": {"type": "Polygon", "coordinates": [ring]},
                    "properties": props,
                }
            )
    doc: dict[str, Any] = {"type": "FeatureCollection"}
    if in_pixels:
        shown = ", ".join(repr(n) for n in in_pixels[:5]) + (" ..." if len(in_pixels) > 5 else "")
        doc["note"] = (
            f"{len(in_pixels)} image(s) have no georeference ({shown}): their features are in PIXEL "
            'coordinates (x right, y down from the image\'s top-left corner), marked "crs": "pixel" '
            "in their properties, not longitude/latitude."
            + (" The other features are WGS 84 longitude/latitude." if on_map else "")
        )
    doc["features"] = features
    atomic_write_text(path, json.dumps(doc, ensure_ascii=False, allow_nan=False))
