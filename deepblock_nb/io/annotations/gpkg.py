"""Boxes as a GeoPackage (pyogrio, optional: ``pip install deepblock-nb[geo]``).

Unlike GeoJSON, the boxes stay in each raster's own CRS (the GeoTIFF's affine
applied to the box corners; no reprojection). A GeoPackage layer has one CRS, so
there is one layer per CRS, named ``boxes_epsg_32633`` and so on, and one layer
``boxes_pixel`` with no CRS for images without georeferencing (pixel
coordinates, ``y`` down; its description says so). A file without any box holds
one empty layer ``boxes_pixel``. Fields: ``image``, ``category``, ``score``
(results only), the pixel box ``x1, y1, x2, y2``. Rings are closed and
counter-clockwise, as in :mod:`.geojson`.
"""

from __future__ import annotations

import os
import shutil
import struct
import tempfile
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from deepblock_nb.errors import DependencyError, FormatError
from deepblock_nb.io.geo import GEO_EXTRA, Georeference

from ._common import check_set
from ._records import AnnotationSet
from .geojson import PIXEL, box_rings, counter_clockwise

__all__ = ["write_gpkg"]

PIXEL_DESCRIPTION = (
    "PIXEL coordinates of images without georeferencing: x right, y down from the image's "
    "top-left corner; not map coordinates"
)


def _polygon_wkb(ring: np.ndarray) -> bytes:
    """One ``(K, 2)`` closed ring -> a little-endian WKB Polygon."""
    return struct.pack("<BIII", 1, 3, 1, len(ring)) + np.ascontiguousarray(ring, "<f8").tobytes()


def write_gpkg(
    path: str | Path,
    annotations: AnnotationSet,
    georeferences: Mapping[str, Georeference | None],
) -> None:
    """Write a GeoPackage, one Polygon feature per box, replacing ``path`` atomically.

    Args:
        path: the ``.gpkg`` file.
        annotations: boxes per image (with ``scores`` for predictions).
        georeferences: image ``file_name`` -> its georeference, or ``None`` (or absent).

    Raises:
        FormatError: a georeferenced image with boxes whose CRS is user-defined or
            unknown (names that file), or GDAL failed to write the file.
        DependencyError: pyogrio is not installed.
    """
    path = Path(path)
    check_set(annotations, path)
    try:
        from pyogrio.raw import write
    except ImportError:
        raise DependencyError(f"{path.name}: writing a GeoPackage needs pyogrio: {GEO_EXTRA}") from None
    scored = any(im.scores is not None for im in annotations.images)
    layers: dict[str, dict[str, list[Any]]] = {}
    for im in annotations.images:
        if not len(im):
            continue
        geo = georeferences.get(im.file_name)
        rings = box_rings(im.xyxy)
        crs = PIXEL
        if geo is not None:
            crs = geo.require_crs()
            rings = np.stack(geo.pixel_to_crs(rings[..., 0], rings[..., 1]), axis=-1)
        rows = layers.setdefault(crs, {"geometry": [], "image": [], "category": [], "score": [], "box": []})
        rows["geometry"] += [_polygon_wkb(r) for r in counter_clockwise(rings)]
        rows["image"] += [im.file_name] * len(im)
        rows["category"] += list(im.category)
        rows["score"] += [np.nan] * len(im) if im.scores is None else im.scores.tolist()
        rows["box"] += im.xyxy.tolist()
    if not layers:
        layers[PIXEL] = {"geometry": [], "image": [], "category": [], "score": [], "box": []}
    tmp_dir = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        tmp = tmp_dir / "out.gpkg"
        for k, (crs, rows) in enumerate(layers.items()):
            box = np.asarray(rows["box"], np.float64).reshape(-1, 4)
            fields = ["image", "category"] + (["score"] if scored else []) + ["x1", "y1", "x2", "y2"]
            data = [np.asarray(rows["image"], object), np.asarray(rows["category"], object)]
            data += [np.asarray(rows["score"], np.float64)] if scored else []
            data += [box[:, i].copy() for i in range(4)]
            with warnings.catch_warnings():  # the pixel layer has no CRS, on purpose
                warnings.simplefilter("ignore", UserWarning)
                write(
                    tmp,
                    np.asarray(rows["geometry"], object),
                    data,
                    fields,
                    layer=f"boxes_{crs.lower().replace(':', '_')}",
                    driver="GPKG",
                    geometry_type="Polygon",
                    crs=None if crs == PIXEL else crs,
                    append=k > 0,
                    layer_options={"DESCRIPTION": PIXEL_DESCRIPTION} if crs == PIXEL else None,
                )
        os.replace(tmp, path)
    except (OSError, RuntimeError) as exc:  # pyogrio's DataSourceError / DataLayerError are RuntimeErrors
        raise FormatError(f"{path.name}: could not write the GeoPackage ({exc})", path) from exc
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
