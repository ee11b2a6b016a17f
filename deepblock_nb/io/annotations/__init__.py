"""Annotation files in and out: COCO, COCO results, YOLO, Pascal VOC and CSV; out only:
GeoJSON and GeoPackage (map coordinates of georeferenced images, see :mod:`.geojson`).

Every reader returns an :class:`AnnotationSet` of :class:`AnnotatedImage` records
(xyxy pixels of the original image, origin top-left, category names) and raises
:class:`~deepblock_nb.errors.FormatError` naming the file and the problem; every
writer takes one and writes each file atomically. Boxes are kept as the file gives
them: clipping to the image is the caller's job.
"""

from ._common import xywh_to_xyxy, xyxy_to_xywh
from ._records import AnnotatedImage, AnnotationSet
from .coco import read_coco, write_coco
from .geojson import write_geojson
from .gpkg import write_gpkg
from .results import read_coco_results, read_csv, write_coco_results, write_csv
from .voc import read_voc, write_voc
from .yolo import DatasetImage, YoloDataset, read_yolo, read_yolo_classes, write_yolo, write_yolo_dataset

__all__ = [
    "AnnotatedImage",
    "AnnotationSet",
    "DatasetImage",
    "YoloDataset",
    "read_coco",
    "read_coco_results",
    "read_csv",
    "read_voc",
    "read_yolo",
    "read_yolo_classes",
    "write_coco",
    "write_coco_results",
    "write_csv",
    "write_geojson",
    "write_gpkg",
    "write_voc",
    "write_yolo",
    "write_yolo_dataset",
    "xywh_to_xyxy",
    "xyxy_to_xywh",
]
