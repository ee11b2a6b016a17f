"""export_predictions / export_annotations in map formats: GeoJSON (lon/lat) and GeoPackage."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import deepblock_nb as dbn
from deepblock_nb.core.detections import Detections
from tests.conftest import write_png
from tests.io.test_geo import X0, Y0, hand_lonlat, write_geotiff

pytest.importorskip("pyproj")

BOX = [10.0, 20.0, 30.0, 26.0]  # pixels of the 80 x 60 GeoTIFF


def _seed_predictions(
    project: dbn.Project, image: Any, xyxy: list[list[float]], cats: list[int], scores: list[float]
) -> None:
    """Store predictions as a finished predict job does (the run becomes the image's current one)."""
    rec = project.image(image)
    run_id = project._store.runs.create("test", {})
    det = Detections(np.asarray(xyxy, float), np.asarray(cats), np.asarray(scores, float))
    project._store.predictions.replace(rec.id, run_id, det)


def _load(path: Path) -> dict[str, Any]:
    def refuse(name: str) -> None:
        raise AssertionError(f"{name} is not JSON")

    return json.loads(path.read_text(encoding="utf-8"), parse_constant=refuse)  # type: ignore[no-any-return]


def _ring_ok(ring: list[list[float]]) -> bool:
    """Closed, 5 positions, counter-clockwise (positive shoelace area, x right, y up)."""
    r = np.asarray(ring)
    x, y = r[:, 0], r[:, 1]
    return r.shape == (5, 2) and (r[0] == r[-1]).all() and float(np.sum(x[:-1] * y[1:] - x[1:] * y[:-1])) > 0


def _corners(ring: list[list[float]]) -> set[tuple[float, float]]:
    return {(round(p[0], 9), round(p[1], 9)) for p in ring}


@pytest.fixture
def geo_project(tmp_path: Path, project: dbn.Project) -> dbn.Project:
    tif = project.add_image(write_geotiff(tmp_path / "src" / "scene.tif"), split="predict")
    project.add_box(tif, "car", BOX)
    _seed_predictions(project, tif, [BOX, [0.0, 0.0, 5.0, 5.0]], [1, 2], [0.9, 0.3])
    return project


def _check_georeferenced(feature: dict[str, Any], category: str) -> None:
    props = feature["properties"]
    assert props["image"] == "scene.tif" and props["category"] == category
    assert [props[k] for k in ("x1", "y1", "x2", "y2")] == BOX and props["crs"] == "OGC:CRS84"
    assert feature["type"] == "Feature" and feature["geometry"]["type"] == "Polygon"
    (ring,) = feature["geometry"]["coordinates"]
    assert _ring_ok(ring)
    x1, y1, x2, y2 = BOX
    got = np.asarray(ring[:4])
    for px, py in [(x1, y1), (x1, y2), (x2, y2), (x2, y1)]:  # every corner, by hand
        lon, lat = hand_lonlat(px, py)
        assert np.min(np.abs(got - [lon, lat]).max(axis=1)) < 1e-6, (px, py)
    assert 14.9 < got[:, 0].min() and got[:, 0].max() < 15.1 and 41.9 < got[:, 1].min() < 42.1


def test_predictions_geojson_in_lonlat(geo_project: dbn.Project, tmp_path: Path) -> None:
    out = geo_project.export_predictions(tmp_path / "out" / "preds.geojson", format="geojson", threshold=0.5)
    assert out == tmp_path / "out" / "preds.geojson"
    doc = _load(out)
    assert doc["type"] == "FeatureCollection" and "note" not in doc
    (feature,) = doc["features"]  # the 0.3 box is under the threshold
    _check_georeferenced(feature, "car")
    assert feature["properties"]["score"] == pytest.approx(0.9)
    everything = _load(
        geo_project.export_predictions(tmp_path / "all.geojson", format="GeoJSON", threshold=0.0)
    )
    assert sorted(f["properties"]["score"] for f in everything["features"]) == pytest.approx([0.3, 0.9])


def test_annotations_geojson_in_lonlat(geo_project: dbn.Project, tmp_path: Path) -> None:
    doc = _load(geo_project.export_annotations(tmp_path / "boxes.geojson", format="geojson"))
    (feature,) = doc["features"]
    _check_georeferenced(feature, "car")
    assert "score" not in feature["properties"] and "note" not in doc


def test_an_image_without_georeference_is_written_in_pixels_and_says_so(
    project: dbn.Project, tmp_path: Path
) -> None:
    png = project.add_image(write_png(tmp_path / "src" / "photo.png"), split="predict")
    project.add_box(png, "person", [1, 2, 11, 8])
    _seed_predictions(project, png, [[1.0, 2.0, 11.0, 8.0]], [2], [0.8])
    for out in (
        project.export_predictions(tmp_path / "p.geojson", format="geojson"),
        project.export_annotations(tmp_path / "a.geojson", format="geojson"),
    ):
        doc = _load(out)
        assert "'photo.png'" in doc["note"] and "PIXEL" in doc["note"] and "longitude/latitude" in doc["note"]
        (feature,) = doc["features"]
        assert feature["properties"]["crs"] == "pixel" and feature["properties"]["image"] == "photo.png"
        (ring,) = feature["geometry"]["coordinates"]
        assert _ring_ok(ring) and _corners(ring) == {(1.0, 2.0), (1.0, 8.0), (11.0, 8.0), (11.0, 2.0)}


def test_mixed_images_each_say_their_frame(geo_project: dbn.Project, tmp_path: Path) -> None:
    png = geo_project.add_image(write_png(tmp_path / "src" / "photo.png"), split="predict")
    geo_project.add_box(png, "person", [1, 2, 11, 8])
    doc = _load(geo_project.export_annotations(tmp_path / "a.geojson", format="geojson"))
    frames = {f["properties"]["image"]: f["properties"]["crs"] for f in doc["features"]}
    assert frames == {"scene.tif": "OGC:CRS84", "photo.png": "pixel"}
    assert "1 image(s)" in doc["note"] and "other features are WGS 84" in doc["note"]


def test_a_user_defined_crs_names_the_file_and_writes_nothing(project: dbn.Project, tmp_path: Path) -> None:
    rec = project.add_image(write_geotiff(tmp_path / "src" / "custom.tif", epsg=32767), split="predict")
    project.add_box(rec, "car", BOX)
    _seed_predictions(project, rec, [BOX], [1], [0.9])
    out = tmp_path / "x.geojson"
    with pytest.raises(dbn.FormatError, match=r"custom\.tif.*user-defined") as info:
        project.export_predictions(out, format="geojson")
    assert Path(str(info.value.path)).name == "custom.tif"
    with pytest.raises(dbn.FormatError, match=r"custom\.tif.*user-defined"):
        project.export_annotations(out, format="geojson")
    assert not out.exists() and list(tmp_path.glob(".x.geojson*")) == []
    # the pixel formats are not concerned
    assert project.export_predictions(tmp_path / "x.csv", format="csv").is_file()


def test_unknown_formats_name_the_file_and_the_choices(project: dbn.Project, tmp_path: Path) -> None:
    with pytest.raises(dbn.FormatError, match=r"out\.shp: unknown prediction format 'shp'.*geojson"):
        project.export_predictions(tmp_path / "out.shp", format="shp")
    with pytest.raises(dbn.ArgumentError, match=r"out\.shp: unknown annotation format 'shp'.*geojson"):
        project.export_annotations(tmp_path / "out.shp", format="shp")
    with pytest.raises(dbn.ArgumentError, match=r"unknown annotation format 'geojson'"):
        project.import_annotations(tmp_path / "in.geojson", format="geojson")  # export only
    assert not (tmp_path / "out.shp").exists()


def test_predictions_geopackage_in_the_rasters_crs(geo_project: dbn.Project, tmp_path: Path) -> None:
    pytest.importorskip("pyogrio")
    from pyogrio import list_layers
    from pyogrio.raw import read

    png = geo_project.add_image(write_png(tmp_path / "src" / "photo.png"), split="predict")
    _seed_predictions(geo_project, png, [[1.0, 2.0, 11.0, 8.0]], [2], [0.8])
    out = geo_project.export_predictions(tmp_path / "preds.gpkg", format="gpkg", threshold=0.5)
    assert sorted(name for name, _ in list_layers(out)) == ["boxes_epsg_32633", "boxes_pixel"]
    meta, _, geometry, fields = read(out, layer="boxes_epsg_32633")
    assert "32633" in meta["crs"] and list(meta["fields"]) == [
        "image",
        "category",
        "score",
        "x1",
        "y1",
        "x2",
        "y2",
    ]
    assert (
        fields[0].tolist() == ["scene.tif"] and fields[1].tolist() == ["car"] and fields[2].tolist() == [0.9]
    )
    ring = np.frombuffer(geometry[0][13:], "<f8").reshape(-1, 2)  # WKB polygon: 13 bytes of header
    x1, y1, x2, y2 = BOX
    want = {(X0 + x * 0.5, Y0 - y * 0.5) for x, y in [(x1, y1), (x1, y2), (x2, y2), (x2, y1)]}
    assert _ring_ok(ring.tolist()) and _corners(ring.tolist()) == want
    meta, _, geometry, fields = read(out, layer="boxes_pixel")
    assert meta["crs"] is None and fields[0].tolist() == ["photo.png"]
    ring = np.frombuffer(geometry[0][13:], "<f8").reshape(-1, 2)
    assert _corners(ring.tolist()) == {(1.0, 2.0), (1.0, 8.0), (11.0, 8.0), (11.0, 2.0)}
