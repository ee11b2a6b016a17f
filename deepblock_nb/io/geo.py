"""Georeferencing of GeoTIFF images, read from the file's tags (never its pixels).

Pixel coordinates are those of the whole package: the original full-resolution
image, ``x`` right, ``y`` down, origin at the top-left *corner* of the top-left
pixel (a box over pixel columns 0..9 is ``x1 = 0, x2 = 10``). The affine maps
them to the CRS's own coordinates (metres east/north for UTM, degrees lon/lat
for a geographic CRS)::

    X = a * x + b * y + c
    Y = d * x + e * y + f

``transform = (a, b, c, d, e, f)``, the order of rasterio's ``Affine`` and of
GDAL's geotransform rearranged. The GeoTIFF tags read:

- ModelTransformationTag (34264): a 4x4 matrix, row-major; or
- ModelTiepointTag (33922) + ModelPixelScaleTag (33550): one tiepoint
  ``(i, j, k, X, Y, Z)`` and the pixel size ``(sx, sy, sz)``, north up;
- GeoKeyDirectoryTag (34735): ProjectedCSTypeGeoKey (3072) or
  GeographicTypeGeoKey (2048) as an EPSG code, and GTRasterTypeGeoKey (1025):
  with PixelIsPoint (2) raster coordinates name pixel *centres*, so the affine is
  shifted by half a pixel (as GDAL does).

pyproj is an optional dependency (``pip install deepblock-nb[geo]``), imported
only when longitude/latitude are asked for.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from deepblock_nb.errors import DependencyError, FormatError, ImageReadError
from deepblock_nb.io.images import detect_format

if TYPE_CHECKING:
    from pyproj import Transformer

__all__ = ["WGS84", "Georeference", "read_georeference"]

FloatArray = npt.NDArray[np.float64]
Affine = tuple[float, float, float, float, float, float]

#: the CRS that GeoJSON (RFC 7946) coordinates are in: longitude, latitude on WGS 84
WGS84 = "EPSG:4326"

MODEL_PIXEL_SCALE = 33550
MODEL_TIEPOINT = 33922
MODEL_TRANSFORMATION = 34264
GEO_KEY_DIRECTORY = 34735

GT_MODEL_TYPE = 1024  # 1 projected, 2 geographic, 3 geocentric
GT_RASTER_TYPE = 1025  # 1 PixelIsArea, 2 PixelIsPoint
GEOGRAPHIC_TYPE = 2048
PROJECTED_CS_TYPE = 3072
USER_DEFINED = 32767
PIXEL_IS_POINT = 2

GEO_EXTRA = "pip install deepblock-nb[geo]"


@dataclass(frozen=True)
class Georeference:
    """Where an image lies on the map.

    Attributes:
        path: the image file the tags were read from (named by errors).
        transform: ``(a, b, c, d, e, f)``: pixel ``(x, y)`` (corner-based, y down)
            -> CRS ``(X, Y)`` = ``(a x + b y + c, d x + e y + f)``, half-pixel
            shift of PixelIsPoint files already applied.
        crs: ``"EPSG:nnnn"``, or ``None`` when the file's CRS is user-defined or
            missing (then ``crs_problem`` says which, and only the transform is usable).
        pixel_is_point: the file declares GTRasterTypeGeoKey = PixelIsPoint.
        crs_problem: why ``crs`` is ``None``, else ``None``.
    """

    path: Path
    transform: Affine
    crs: str | None
    pixel_is_point: bool = False
    crs_problem: str | None = None

    def pixel_to_crs(self, x: Any, y: Any) -> tuple[FloatArray, FloatArray]:
        """Pixel coordinates (scalars or arrays of one shape) -> the CRS's ``(X, Y)``."""
        a, b, c, d, e, f = self.transform
        xa, ya = np.asarray(x, np.float64), np.asarray(y, np.float64)
        return a * xa + b * ya + c, d * xa + e * ya + f

    def require_crs(self) -> str:
        """``crs``, or the error saying why the file has none.

        Raises:
            FormatError: the file's CRS is user-defined or missing (names the file).
        """
        if self.crs is None:
            raise FormatError(
                f"{self.path.name}: {self.crs_problem or 'the GeoTIFF names no CRS'}, so its map "
                "coordinates cannot be converted to longitude/latitude. Give the file an EPSG "
                "CRS (for example: gdal_edit.py -a_srs EPSG:32633 FILE), or export in a pixel-"
                "coordinate format such as format='coco'.",
                self.path,
            )
        return self.crs

    def crs_to_lonlat(self, x: Any, y: Any) -> tuple[FloatArray, FloatArray]:
        """The CRS's ``(X, Y)`` -> WGS 84 ``(longitude, latitude)`` in degrees (pyproj,
        ``always_xy=True``).

        Raises:
            FormatError: the file's CRS is user-defined or unknown (names the file).
            DependencyError: pyproj is not installed.
        """
        crs = self.require_crs()
        try:
            transformer = _to_wgs84(crs)
        except ImportError:
            raise DependencyError(
                f"{self.path.name}: converting map coordinates to longitude/latitude needs pyproj: "
                f"{GEO_EXTRA}"
            ) from None
        except RuntimeError as exc:  # pyproj's CRSError / ProjError
            raise FormatError(
                f"{self.path.name}: its CRS {crs} is unknown to pyproj ({exc}); give the file "
                "a known EPSG CRS",
                self.path,
            ) from None
        xa, ya = np.broadcast_arrays(np.asarray(x, np.float64), np.asarray(y, np.float64))
        lon, lat = transformer.transform(xa.ravel(), ya.ravel())
        return np.asarray(lon, np.float64).reshape(xa.shape), np.asarray(lat, np.float64).reshape(xa.shape)

    def pixel_to_lonlat(self, x: Any, y: Any) -> tuple[FloatArray, FloatArray]:
        """Pixel coordinates -> WGS 84 ``(longitude, latitude)``: both steps above."""
        return self.crs_to_lonlat(*self.pixel_to_crs(x, y))


@functools.lru_cache(maxsize=32)
def _to_wgs84(crs: str) -> Transformer:
    """The transformer ``crs`` -> WGS 84 lon/lat, built once per CRS (pyproj >= 3.1
    transformers may be shared between threads). pyproj is imported here only."""
    from pyproj import Transformer

    return Transformer.from_crs(crs, WGS84, always_xy=True)


def read_georeference(path: str | Path) -> Georeference | None:
    """The georeferencing of a GeoTIFF, from the tags of its first page only.

    Returns ``None`` for an image that is not a TIFF, or a TIFF without
    ModelTransformationTag / ModelTiepointTag + ModelPixelScaleTag.

    Raises:
        ImageReadError: the file is missing, or its TIFF header cannot be read.
        FormatError: the georeferencing tags are malformed, or the file is
            georeferenced by ground control points only (several tiepoints, no
            pixel scale), which is not an affine transform.
    """
    p = Path(path)
    if detect_format(p) != "tiff":
        return None
    import tifffile

    try:
        with tifffile.TiffFile(p) as tif:
            tags = tif.pages.first.tags
            found = {
                code: np.asarray(tags[code].value, np.float64).reshape(-1)
                for code in (MODEL_PIXEL_SCALE, MODEL_TIEPOINT, MODEL_TRANSFORMATION, GEO_KEY_DIRECTORY)
                if code in tags
            }
    except (OSError, ValueError, TypeError, tifffile.TiffFileError) as exc:
        raise ImageReadError(f"{p.name}: cannot read its TIFF tags ({exc})", p) from exc
    transform = _affine(p, found)
    if transform is None:
        return None
    keys = _geo_keys(p, found.get(GEO_KEY_DIRECTORY))
    point = keys.get(GT_RASTER_TYPE) == PIXEL_IS_POINT
    if point:  # raster (0, 0) is the centre of the first pixel: our (0.5, 0.5)
        a, b, c, d, e, f = transform
        transform = (a, b, c - 0.5 * (a + b), d, e, f - 0.5 * (d + e))
    crs, problem = _crs(keys)
    return Georeference(p, transform, crs, point, problem)


def _affine(p: Path, tags: dict[int, FloatArray]) -> Affine | None:
    matrix = tags.get(MODEL_TRANSFORMATION)
    if matrix is not None:
        if matrix.size != 16 or not np.isfinite(matrix).all():
            raise FormatError(f"{p.name}: ModelTransformationTag must hold 16 finite numbers", p)
        m = matrix.reshape(4, 4)
        return _checked(p, (m[0, 0], m[0, 1], m[0, 3], m[1, 0], m[1, 1], m[1, 3]))
    ties, scale = tags.get(MODEL_TIEPOINT), tags.get(MODEL_PIXEL_SCALE)
    if ties is None:
        return None
    if ties.size < 6 or ties.size % 6 or not np.isfinite(ties).all():
        raise FormatError(f"{p.name}: ModelTiepointTag must hold 6 finite numbers per tiepoint", p)
    if scale is None:
        if ties.size > 6:
            raise FormatError(
                f"{p.name}: georeferenced by {ties.size // 6} ground control points only (no "
                "ModelPixelScaleTag); warp it to an affine grid first (for example with gdalwarp)",
                p,
            )
        return None
    if scale.size < 2 or not np.isfinite(scale[:2]).all():
        raise FormatError(f"{p.name}: ModelPixelScaleTag must hold finite numbers", p)
    i, j, _, x0, y0, _ = ties[:6]
    sx, sy = scale[0], scale[1]
    # the file's y axis points north (pixel rows go south): hence -sy
    return _checked(p, (sx, 0.0, x0 - i * sx, 0.0, -sy, y0 + j * sy))


def _checked(p: Path, t: tuple[Any, ...]) -> Affine:
    a, b, c, d, e, f = (float(v) for v in t)
    if a * e - b * d == 0.0:
        raise FormatError(f"{p.name}: its georeferencing transform is degenerate (zero pixel size)", p)
    return (a, b, c, d, e, f)


def _geo_keys(p: Path, directory: FloatArray | None) -> dict[int, int]:
    """The GeoKeys stored inline (TIFFTagLocation 0) or in the directory itself."""
    if directory is None:
        return {}
    d = directory.astype(np.int64)
    if d.size < 4 or d.size < 4 + 4 * int(d[3]):
        raise FormatError(f"{p.name}: GeoKeyDirectoryTag is shorter than it says", p)
    keys: dict[int, int] = {}
    for k in range(int(d[3])):
        key, location, count, value = (int(v) for v in d[4 + 4 * k : 8 + 4 * k])
        if location == 0:
            keys[key] = value
        elif location == GEO_KEY_DIRECTORY and count == 1 and value < d.size:
            keys[key] = int(d[value])
    return keys


def _crs(keys: dict[int, int]) -> tuple[str | None, str | None]:
    model = keys.get(GT_MODEL_TYPE)
    order = (GEOGRAPHIC_TYPE, PROJECTED_CS_TYPE) if model == 2 else (PROJECTED_CS_TYPE, GEOGRAPHIC_TYPE)
    names = {PROJECTED_CS_TYPE: "ProjectedCSTypeGeoKey", GEOGRAPHIC_TYPE: "GeographicTypeGeoKey"}
    for key in order:
        code = keys.get(key)
        if code is None or code == 0:
            continue
        if code == USER_DEFINED:
            return None, f"its CRS is user-defined ({names[key]} = 32767), not an EPSG code"
        return f"EPSG:{code}", None
    if model == 3:
        return None, "its CRS is geocentric (GTModelTypeGeoKey = 3)"
    return None, "it has a transform but its GeoKeyDirectory names no EPSG CRS"
