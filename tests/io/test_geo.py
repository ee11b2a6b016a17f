"""GeoTIFF georeferencing from the tags (io/geo.py), and the ring helpers of the map writers."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from deepblock_nb.errors import DependencyError, FormatError
from deepblock_nb.io import geo
from deepblock_nb.io.annotations import AnnotatedImage, AnnotationSet, write_geojson
from deepblock_nb.io.annotations.geojson import box_rings, counter_clockwise
from deepblock_nb.io.geo import Georeference, read_georeference

# UTM zone 33N (central meridian 15 E), 0.5 m pixels; x0 + 20 px * 0.5 m = 500000 m: the
# central meridian, where the longitude is exactly 15 degrees whatever the northing
EPSG = 32633
X0, Y0 = 499_990.0, 4_650_000.0
SX, SY = 0.5, 0.5


def write_geotiff(
    path: Path,
    *,
    width: int = 80,
    height: int = 60,
    epsg: int | None = EPSG,
    crs_key: int = 3072,
    model_type: int = 1,
    raster_type: int = 1,
    tiepoint: tuple[float, float] = (X0, Y0),
    tie_pixel: tuple[float, float] = (0.0, 0.0),
    scale: tuple[float, float] | None = (SX, SY),
    matrix: np.ndarray | None = None,
) -> Path:
    """A small RGB GeoTIFF with the GeoKeyDirectory written by hand (as GDAL writes it).

    ``matrix`` (4x4): ModelTransformationTag instead of tiepoint + pixel scale.
    ``epsg=None``: no CRS key; ``epsg=32767``: user-defined.
    """
    entries = [(1024, 0, 1, model_type), (1025, 0, 1, raster_type)]
    if epsg is not None:
        entries.append((crs_key, 0, 1, epsg))
    keys = [1, 1, 0, len(entries)] + [v for e in entries for v in e]
    tags: list[tuple[int, str, int, object, bool]] = [(34735, "H", len(keys), keys, False)]
    if matrix is not None:
        tags.append((34264, "d", 16, tuple(np.asarray(matrix, float).ravel()), False))
    else:
        tags.append((33922, "d", 6, (*tie_pixel, 0.0, *tiepoint, 0.0), False))
        if scale is not None:
            tags.append((33550, "d", 3, (*scale, 0.0), False))
    rgb = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(path, rgb, photometric="rgb", extratags=tags)
    return path


def hand_lonlat(px: float, py: float) -> tuple[float, float]:
    """The corner's lon/lat computed by hand: easting/northing from the tiepoint, then pyproj."""
    from pyproj import Transformer

    easting, northing = X0 + px * SX, Y0 - py * SY
    return Transformer.from_crs(f"EPSG:{EPSG}", "EPSG:4326", always_xy=True).transform(easting, northing)


def test_tiepoint_and_pixel_scale_give_the_affine_and_the_epsg_crs(tmp_path: Path) -> None:
    g = read_georeference(write_geotiff(tmp_path / "utm.tif"))
    assert g is not None
    assert g.crs == "EPSG:32633" and not g.pixel_is_point and g.crs_problem is None
    assert g.transform == (SX, 0.0, X0, 0.0, -SY, Y0)
    x, y = g.pixel_to_crs(np.array([0.0, 20.0, 80.0]), np.array([0.0, 10.0, 60.0]))
    assert x.tolist() == [X0, X0 + 10.0, X0 + 40.0] and y.tolist() == [Y0, Y0 - 5.0, Y0 - 30.0]


def test_lonlat_matches_a_hand_computation_and_the_central_meridian(tmp_path: Path) -> None:
    pytest.importorskip("pyproj")
    g = read_georeference(write_geotiff(tmp_path / "utm.tif"))
    assert g is not None
    lon, lat = g.pixel_to_lonlat(np.array([[7.0, 20.0]]), np.array([[13.0, 50.0]]))
    assert lon.shape == (1, 2)  # the shape of the input is kept
    for k, (px, py) in enumerate([(7.0, 13.0), (20.0, 50.0)]):
        want = hand_lonlat(px, py)
        assert abs(lon[0, k] - want[0]) < 1e-6 and abs(lat[0, k] - want[1]) < 1e-6
    assert abs(lon[0, 1] - 15.0) < 1e-9  # easting 500000 m: the zone's central meridian
    assert 41.9 < lat[0, 1] < 42.1  # northing 4.65e6 m in zone 33N: about 42 N, not lon/lat swapped


def test_a_tiepoint_at_another_pixel_is_honoured(tmp_path: Path) -> None:
    g = read_georeference(write_geotiff(tmp_path / "t.tif", tie_pixel=(10.0, 4.0)))
    assert g is not None
    assert g.pixel_to_crs(10.0, 4.0) == (X0, Y0)
    assert g.pixel_to_crs(0.0, 0.0) == (X0 - 5.0, Y0 + 2.0)


def test_model_transformation_tag_with_rotation(tmp_path: Path) -> None:
    m = np.array([[0.4, 0.3, 0.0, X0], [0.3, -0.4, 0.0, Y0], [0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]])
    g = read_georeference(write_geotiff(tmp_path / "m.tif", matrix=m))
    assert g is not None and g.crs == "EPSG:32633"
    assert g.transform == (0.4, 0.3, X0, 0.3, -0.4, Y0)
    x, y = g.pixel_to_crs(12.0, 7.0)
    assert (x, y) == pytest.approx(tuple((m @ [12.0, 7.0, 0.0, 1.0])[:2]), abs=1e-9)


@pytest.mark.parametrize("variant", ["tiepoint", "matrix"])
def test_pixel_is_point_refers_to_the_pixel_centre(tmp_path: Path, variant: str) -> None:
    m = np.array([[SX, 0, 0, X0], [0, -SY, 0, Y0], [0, 0, 0, 0], [0, 0, 0, 1.0]])
    kw = {"matrix": m} if variant == "matrix" else {}
    area = read_georeference(write_geotiff(tmp_path / "area.tif", **kw))  # type: ignore[arg-type]
    point = read_georeference(write_geotiff(tmp_path / "point.tif", raster_type=2, **kw))  # type: ignore[arg-type]
    assert area is not None and point is not None and point.pixel_is_point
    # the tiepoint names the centre of pixel (0, 0): our (0.5, 0.5); its corner lies half a pixel off
    assert point.pixel_to_crs(0.5, 0.5) == (X0, Y0)
    assert point.pixel_to_crs(0.0, 0.0) == (X0 - SX / 2, Y0 + SY / 2)
    assert area.pixel_to_crs(0.0, 0.0) == (X0, Y0)


def test_geographic_crs(tmp_path: Path) -> None:
    pytest.importorskip("pyproj")
    path = write_geotiff(
        tmp_path / "wgs84.tif",
        epsg=4326,
        crs_key=2048,
        model_type=2,
        tiepoint=(15.0, 42.0),
        scale=(1e-4, 1e-4),
    )
    g = read_georeference(path)
    assert g is not None and g.crs == "EPSG:4326"
    lon, lat = g.pixel_to_lonlat(10.0, 20.0)
    assert abs(float(lon) - 15.001) < 1e-9 and abs(float(lat) - 41.998) < 1e-9  # x is longitude


@pytest.mark.parametrize(
    ("epsg", "problem"), [(32767, "user-defined"), (None, "names no EPSG CRS")], ids=["user", "missing"]
)
def test_a_crs_that_is_no_epsg_code_keeps_the_transform_and_fails_only_for_lonlat(
    tmp_path: Path, epsg: int | None, problem: str
) -> None:
    path = write_geotiff(tmp_path / "custom crs.tif", epsg=epsg)
    g = read_georeference(path)
    assert g is not None and g.crs is None and g.transform == (SX, 0.0, X0, 0.0, -SY, Y0)
    assert g.pixel_to_crs(2.0, 2.0) == (X0 + 1.0, Y0 - 1.0)
    with pytest.raises(FormatError, match=problem) as info:
        g.pixel_to_lonlat(2.0, 2.0)
    assert "custom crs.tif" in str(info.value) and info.value.path == path


def test_images_without_georeferencing_give_none(tmp_path: Path) -> None:
    png = tmp_path / "a.png"
    Image.fromarray(np.zeros((4, 5, 3), np.uint8)).save(png)
    plain = tmp_path / "plain.tif"
    tifffile.imwrite(plain, np.zeros((4, 5, 3), np.uint8), photometric="rgb")
    only_keys = write_geotiff(tmp_path / "no transform.tif", scale=None)  # one tiepoint, no scale
    assert read_georeference(png) is None
    assert read_georeference(plain) is None
    assert read_georeference(only_keys) is None


def test_ground_control_points_only_are_refused_by_name(tmp_path: Path) -> None:
    path = tmp_path / "gcps.tif"
    ties = (0, 0, 0, X0, Y0, 0, 80, 0, 0, X0 + 40, Y0, 0, 0, 60, 0, X0, Y0 - 30, 0)
    tifffile.imwrite(
        path, np.zeros((60, 80, 3), np.uint8), photometric="rgb", extratags=[(33922, "d", 18, ties, False)]
    )
    with pytest.raises(FormatError, match=r"gcps\.tif.*ground control points"):
        read_georeference(path)


def test_only_the_tags_are_read_never_the_pixels(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_geotiff(tmp_path / "utm.tif")

    def no_pixels(*args: object, **kwargs: object) -> None:
        raise AssertionError("the pixels were decoded")

    monkeypatch.setattr(tifffile.TiffPage, "asarray", no_pixels)
    monkeypatch.setattr(tifffile.TiffFile, "asarray", no_pixels)
    g = read_georeference(path)
    assert g is not None and g.crs == "EPSG:32633"


def test_without_pyproj_lonlat_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    g = read_georeference(write_geotiff(tmp_path / "utm.tif"))
    assert g is not None
    geo._to_wgs84.cache_clear()
    monkeypatch.setitem(sys.modules, "pyproj", None)  # import pyproj -> ImportError
    try:
        with pytest.raises(DependencyError, match=r"pip install deepblock-nb\[geo\]") as info:
            g.pixel_to_lonlat(1.0, 1.0)
        assert isinstance(info.value, ImportError) and "utm.tif" in str(info.value)
        assert g.pixel_to_crs(2.0, 0.0) == (X0 + 1.0, Y0)  # the transform needs no pyproj
    finally:
        geo._to_wgs84.cache_clear()


# -- rings ----------------------------------------------------------------------------------
def _area2(rings: np.ndarray) -> np.ndarray:
    x, y = rings[..., 0], rings[..., 1]
    return np.sum(x[:, :-1] * y[:, 1:] - x[:, 1:] * y[:, :-1], axis=1)


@pytest.mark.parametrize(
    "transform",
    [
        None,  # pixel coordinates, y down
        (0.5, 0.0, X0, 0.0, -0.5, Y0),  # north up
        (0.5, 0.0, X0, 0.0, 0.5, Y0),  # south up: the ring flips orientation
        (0.4, 0.3, X0, 0.3, -0.4, Y0),  # rotated
    ],
    ids=["pixel", "north-up", "south-up", "rotated"],
)
def test_rings_are_closed_and_counter_clockwise(transform: tuple[float, ...] | None) -> None:
    xyxy = np.array([[0.0, 0.0, 10.0, 4.0], [3.0, 5.0, 4.0, 6.0]])  # a 1-pixel box too
    rings = box_rings(xyxy)
    assert rings.shape == (2, 5, 2) and (rings[:, 0] == rings[:, -1]).all()
    assert {tuple(p) for p in rings[0].tolist()} == {(0.0, 0.0), (0.0, 4.0), (10.0, 4.0), (10.0, 0.0)}
    if transform is not None:
        g = Georeference(Path("x.tif"), transform, "EPSG:32633")  # type: ignore[arg-type]
        rings = np.stack(g.pixel_to_crs(rings[..., 0], rings[..., 1]), axis=-1)
    before = rings.copy()
    out = counter_clockwise(rings)
    assert (rings == before).all()  # the input is not changed
    assert (_area2(out) > 0).all() and (out[:, 0] == out[:, -1]).all()
    assert box_rings(np.zeros((0, 4))).shape == (0, 5, 2)


def test_an_empty_set_is_an_empty_feature_collection(tmp_path: Path) -> None:
    out = tmp_path / "empty.geojson"
    aset = AnnotationSet(["car"], [AnnotatedImage("a.png", 4, 4, np.zeros((0, 4)), [])])
    write_geojson(out, aset, {})
    assert json.loads(out.read_text()) == {"type": "FeatureCollection", "features": []}
