"""The map formats of exports (GeoJSON, GeoPackage), shared by annotations and predictions.

Each image's georeference is read from its file's tags when the export is written
(``io.geo.read_georeference``: GeoTIFF tags only, never the pixels); images
without one are written in pixel coordinates, and the file says so.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from deepblock_nb.io.annotations import AnnotationSet, write_geojson, write_gpkg
from deepblock_nb.io.geo import Georeference, read_georeference
from deepblock_nb.store import ImageRecord

__all__ = ["MAP_FORMATS", "georeferences", "write_map_file"]

MAP_FORMATS = ("geojson", "gpkg")


def georeferences(
    records: Sequence[ImageRecord], names: set[str] | None = None
) -> dict[str, Georeference | None]:
    """Image name -> its georeference (or ``None``), for the records named in ``names`` (all when None)."""
    return {rec.name: read_georeference(rec.path) for rec in records if names is None or rec.name in names}


def write_map_file(fmt: str, path: Path, boxes: AnnotationSet, records: Sequence[ImageRecord]) -> None:
    """Write ``boxes`` as ``fmt`` (one of ``MAP_FORMATS``), georeferencing the images that have boxes."""
    geo = georeferences(records, {im.file_name for im in boxes.images if len(im)})
    if fmt == "geojson":
        write_geojson(path, boxes, geo)
    else:
        write_gpkg(path, boxes, geo)
