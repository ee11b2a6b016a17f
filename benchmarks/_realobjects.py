"""Real objects on real photographs: a seeded detection data set for the benchmarks.

Everything comes from files that ship inside registry packages (the ``bench``
extra), so nothing is downloaded at run time:

- class 1 ``coin``: the 24 coins of scikit-image's ``coins.png`` (a photograph of
  Greek coins), each cut out by threshold on the flattened image, connected
  components and the component's convex hull;
- class 2 ``flower``: the dahlia of scikit-learn's ``flower.jpg``, cut out by colour
  (orange against green), its largest component's convex hull;
- backgrounds: random crops and rescales of other photographs: scikit-learn's
  ``china.jpg``, Matplotlib's ``grace_hopper.jpg`` and scikit-image's astronaut,
  cat, coffee, rocket, camera man, motorcycle, retina, IHC stain, moon, Hubble
  deep field, brick and grass.

Each pasted object is flipped, rotated a little, scaled so the long side of its
box is 24-56 px, brightened or darkened, and blended through its mask with a
soft edge; objects overlap one another by IoU 0.05 at most. Boxes are the tight
box of the pasted mask (alpha >= 0.5), ``xyxy`` pixels.

``build_set`` writes the training / evaluation PNGs with COCO JSON;
``build_mosaic`` writes one large tiled TIFF of the same classes, band by band.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

__all__ = ["CATEGORIES", "Sample", "build_mosaic", "build_set", "preview"]

CATEGORIES = [{"id": 1, "name": "coin"}, {"id": 2, "name": "flower"}]
LONG_SIDE = (24, 56)  # pixels, the long side of an object's box
MAX_IOU = 0.05  # pasted objects overlap each other by at most this
ROTATION = 20.0  # degrees, either way
BRIGHTNESS = (0.75, 1.25)

_BACKGROUNDS = [
    ("sklearn", "datasets/images/china.jpg"),
    ("matplotlib", "mpl-data/sample_data/grace_hopper.jpg"),
    *(
        ("skimage", f"data/{name}")
        for name in (
            "astronaut.png",
            "chelsea.png",
            "coffee.png",
            "rocket.jpg",
            "camera.png",
            "motorcycle_left.png",
            "retina.jpg",
            "ihc.png",
            "moon.png",
            "hubble_deep_field.jpg",
            "brick.png",
            "grass.png",
        )
    ),
]


@dataclass
class Sample:
    """One generated image: its file, ``(width, height)``, boxes ``(N, 4)`` xyxy and category ids ``(N,)``."""

    path: Path
    size: tuple[int, int]
    xyxy: np.ndarray
    category_ids: np.ndarray


@dataclass
class _Cutout:
    rgb: np.ndarray  # (h, w, 3) uint8
    mask: np.ndarray  # (h, w) bool


@dataclass
class _Sprite:
    rgb: np.ndarray  # (h, w, 3) uint8
    alpha: np.ndarray  # (h, w) float32 in [0, 1]
    box: tuple[int, int, int, int]  # xyxy of alpha >= 0.5, sprite pixels


# -- sources -----------------------------------------------------------------------
def _package_file(package: str, relative: str) -> Path:
    path = Path(str(resources.files(package).joinpath(relative)))
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} is missing: install the benchmark extra (pip install -e '.[bench]'); "
            f"the data set is built from files inside the {package} package"
        )
    return path


def _rgb(package: str, relative: str) -> np.ndarray:
    with Image.open(_package_file(package, relative)) as im:
        return np.asarray(im.convert("RGB"))


def _hull_masks(mask: np.ndarray, min_area: int) -> list[tuple[slice, slice, np.ndarray]]:
    """Each connected component of ``mask`` of at least ``min_area`` px as (rows, cols, convex hull mask)."""
    from scipy import ndimage as ndi
    from skimage.morphology import convex_hull_image

    labels, _ = ndi.label(mask)
    out = []
    for i, (rows, cols) in enumerate(ndi.find_objects(labels), start=1):
        part = labels[rows, cols] == i
        if part.sum() >= min_area:
            out.append((rows, cols, convex_hull_image(part)))
    return out


@functools.lru_cache(maxsize=1)
def _cutouts() -> dict[int, list[_Cutout]]:
    """The real objects, per category id, cut out of their photographs."""
    from scipy import ndimage as ndi
    from skimage.filters import threshold_otsu

    coins = np.asarray(Image.open(_package_file("skimage", "data/coins.png")).convert("L"), np.float32)
    flat = coins - ndi.gaussian_filter(coins, 40)  # the lighting falls off to the bottom
    fg = ndi.binary_fill_holes(ndi.binary_opening(flat > threshold_otsu(flat), iterations=2))
    coin_cuts = []
    for rows, cols, hull in _hull_masks(fg, 600):
        grey = coins[rows, cols].astype(np.uint8)
        coin_cuts.append(_Cutout(np.repeat(grey[..., None], 3, axis=2), hull))

    flower = _rgb("sklearn", "datasets/images/flower.jpg").astype(np.int16)
    orange = (flower[..., 0] > flower[..., 1] + 30) & (flower[..., 0] > 110)
    orange = ndi.binary_fill_holes(ndi.binary_opening(orange, iterations=2))
    parts = _hull_masks(orange, 1000)
    rows, cols, hull = max(parts, key=lambda p: int(p[2].sum()))  # the whole dahlia, not the cut one
    hull = ndi.binary_dilation(hull, iterations=3)  # the pale outer petals fall below the colour test
    flower_cut = _Cutout(flower[rows, cols].astype(np.uint8), hull)
    return {1: coin_cuts, 2: [flower_cut]}


@functools.lru_cache(maxsize=1)
def _background_photos() -> list[np.ndarray]:
    return [_rgb(package, relative) for package, relative in _BACKGROUNDS]


def source_files() -> list[Path]:
    """Every photograph used (objects first, then backgrounds)."""
    objects = [
        _package_file("skimage", "data/coins.png"),
        _package_file("sklearn", "datasets/images/flower.jpg"),
    ]
    return objects + [_package_file(p, r) for p, r in _BACKGROUNDS]


# -- objects -----------------------------------------------------------------------
def _sprite(rng: np.random.Generator, cut: _Cutout) -> _Sprite:
    """One randomly transformed copy of a cutout, cropped to its mask, long side in ``LONG_SIDE``."""
    rgba = np.dstack([cut.rgb, np.where(cut.mask, 255, 0).astype(np.uint8)])
    im = Image.fromarray(rgba, "RGBA")
    if rng.random() < 0.5:
        im = im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    if rng.random() < 0.5:
        im = im.transpose(Image.Transpose.FLIP_TOP_BOTTOM)
    im = im.rotate(float(rng.uniform(-ROTATION, ROTATION)), Image.Resampling.BICUBIC, expand=True)
    im = im.crop(im.getchannel("A").point(lambda a: 255 if a >= 128 else 0).getbbox())
    long_side = float(rng.uniform(*LONG_SIDE))
    scale = long_side / max(im.size)
    w, h = max(2, round(im.width * scale)), max(2, round(im.height * scale))
    im = im.resize((w, h), Image.Resampling.LANCZOS)
    pad = 2  # room for the soft edge
    canvas = Image.new("RGBA", (w + 2 * pad, h + 2 * pad), (0, 0, 0, 0))
    canvas.paste(im, (pad, pad))
    alpha = np.asarray(canvas.getchannel("A").filter(ImageFilter.GaussianBlur(0.8)), np.float32) / 255
    rgb = np.asarray(canvas.convert("RGB"), np.float32)
    gain = rng.uniform(*BRIGHTNESS) * rng.uniform(0.93, 1.07, 3)  # [3] brightness and a slight tint
    rgb = np.clip(rgb * gain + 0.5, 0, 255).astype(np.uint8)
    ys, xs = np.nonzero(alpha >= 0.5)
    return _Sprite(rgb, alpha, (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1))


def _iou_max(box: np.ndarray, boxes: np.ndarray) -> float:
    if not len(boxes):
        return 0.0
    from deepblock_nb.core.boxes import box_iou

    return float(box_iou(box[None], boxes).max())


@dataclass
class _Placed:
    sprite: _Sprite
    x: int  # sprite origin in the image
    y: int
    category_id: int

    @property
    def xyxy(self) -> np.ndarray:
        b = self.sprite.box
        return np.array([self.x + b[0], self.y + b[1], self.x + b[2], self.y + b[3]], np.float64)


def _place(rng: np.random.Generator, n: int, image_wh: tuple[int, int], tries: int = 50) -> list[_Placed]:
    """Up to ``n`` objects of random classes, each wholly inside the image, overlapping by IoU <= ``MAX_IOU``."""
    cuts = _cutouts()
    placed: list[_Placed] = []
    boxes = np.zeros((0, 4))
    for _ in range(n):
        category_id = int(rng.integers(1, len(CATEGORIES) + 1))
        options = cuts[category_id]
        sprite = _sprite(rng, options[int(rng.integers(len(options)))])
        sh, sw = sprite.alpha.shape
        for _ in range(tries):
            x = int(rng.integers(0, image_wh[0] - sw + 1))
            y = int(rng.integers(0, image_wh[1] - sh + 1))
            p = _Placed(sprite, x, y, category_id)
            if _iou_max(p.xyxy, boxes) <= MAX_IOU:
                placed.append(p)
                boxes = np.vstack([boxes, p.xyxy])
                break
    return placed


def _paste(canvas: np.ndarray, placed: Sequence[_Placed], x0: int = 0, y0: int = 0) -> None:
    """Blend the objects into ``canvas`` (float32 ``(H, W, 3)``, whose top-left is image pixel ``(x0, y0)``), in place."""
    h, w = canvas.shape[:2]
    for p in placed:
        sh, sw = p.sprite.alpha.shape
        ax, ay = max(p.x, x0), max(p.y, y0)
        bx, by = min(p.x + sw, x0 + w), min(p.y + sh, y0 + h)
        if ax >= bx or ay >= by:
            continue
        a = p.sprite.alpha[ay - p.y : by - p.y, ax - p.x : bx - p.x, None]  # [h,w,1]
        rgb = p.sprite.rgb[ay - p.y : by - p.y, ax - p.x : bx - p.x]
        region = canvas[ay - y0 : by - y0, ax - x0 : bx - x0]
        region[...] = a * rgb + (1 - a) * region


# -- backgrounds -------------------------------------------------------------------
def _background(rng: np.random.Generator, side: int) -> np.ndarray:
    """``(side, side, 3)`` float32: a random square crop of a random photograph, rescaled and maybe flipped."""
    photos = _background_photos()
    photo = photos[int(rng.integers(len(photos)))]
    h, w = photo.shape[:2]
    crop = int(rng.uniform(0.35, 1.0) * min(h, w))
    x, y = int(rng.integers(0, w - crop + 1)), int(rng.integers(0, h - crop + 1))
    im = Image.fromarray(photo[y : y + crop, x : x + crop]).resize((side, side), Image.Resampling.BILINEAR)
    if rng.random() < 0.5:
        im = im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return np.asarray(im, np.float32)


def _to_uint8(canvas: np.ndarray) -> np.ndarray:
    return np.clip(canvas + 0.5, 0, 255).astype(np.uint8)


# -- COCO --------------------------------------------------------------------------
def _coco(samples: Sequence[Sample]) -> dict[str, Any]:
    images, annotations = [], []
    for image_id, s in enumerate(samples, start=1):
        images.append({"id": image_id, "file_name": s.path.name, "width": s.size[0], "height": s.size[1]})
        for (x1, y1, x2, y2), c in zip(s.xyxy.tolist(), s.category_ids.tolist()):
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": int(c),
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "area": (x2 - x1) * (y2 - y1),
                    "iscrowd": 0,
                }
            )
    return {"images": images, "annotations": annotations, "categories": CATEGORIES}


def _counts(samples: Sequence[Sample]) -> dict[str, int]:
    ids = np.concatenate([s.category_ids for s in samples]) if samples else np.zeros(0, int)
    return {c["name"]: int((ids == c["id"]).sum()) for c in CATEGORIES}


def _long_sides(samples: Sequence[Sample]) -> tuple[float, float]:
    xyxy = np.concatenate([s.xyxy for s in samples])
    long = np.maximum(xyxy[:, 2] - xyxy[:, 0], xyxy[:, 3] - xyxy[:, 1])
    return float(long.min()), float(long.max())


# -- public ------------------------------------------------------------------------
def _make_split(
    folder: Path, prefix: str, n: int, size: int, rng: np.random.Generator, objects: tuple[int, int]
) -> list[Sample]:
    folder.mkdir(parents=True, exist_ok=True)
    samples = []
    for i in range(n):
        canvas = _background(rng, size)
        placed = _place(rng, int(rng.integers(objects[0], objects[1] + 1)), (size, size))
        _paste(canvas, placed)
        path = folder / f"{prefix}_{i:03d}.png"
        Image.fromarray(_to_uint8(canvas)).save(path)
        xyxy = np.array([p.xyxy for p in placed]).reshape(-1, 4)
        samples.append(Sample(path, (size, size), xyxy, np.array([p.category_id for p in placed], np.int64)))
    return samples


def build_set(
    root: str | Path,
    n_train: int = 120,
    n_eval: int = 40,
    size: int = 256,
    seed: int = 0,
    objects: tuple[int, int] = (3, 8),
) -> dict[str, Any]:
    """Write ``root/train/*.png``, ``root/eval/*.png``, ``root/train.json`` and ``root/eval.json`` (COCO).

    Returns a dict: ``train`` / ``eval`` (lists of :class:`Sample`), ``train_dir``,
    ``eval_dir``, ``train_json``, ``eval_json``, ``counts`` (boxes per category name
    and split) and ``long_side`` ((min, max) box long side in px).
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    out: dict[str, Any] = {"counts": {}}
    for split, n in (("train", n_train), ("eval", n_eval)):
        samples = _make_split(root / split, split, n, size, rng, objects)
        json_path = root / f"{split}.json"
        json_path.write_text(json.dumps(_coco(samples)))
        out.update({split: samples, f"{split}_dir": root / split, f"{split}_json": json_path})
        out["counts"][split] = _counts(samples)
    out["long_side"] = _long_sides(out["train"] + out["eval"])
    return out


def build_mosaic(
    root: str | Path,
    side: int = 4096,
    seed: int = 1,
    tile: int = 256,
    per_tile: float = 5.0,
    block: int = 448,
    name: str = "mosaic",
) -> dict[str, Any]:
    """Write ``root/<name>.tif`` (``side x side`` RGB, tiled ``tile x tile``, deflate) and ``root/<name>.json``.

    The background is a patchwork of photograph crops of ``block`` px on a grid
    offset from the tiles' (so its edges are not the tiles' seams); about
    ``per_tile`` objects per ``tile x tile`` area are placed uniformly over the
    whole image, many of them across or near the tile seams. Rendered one band of
    ``tile`` rows at a time, so memory holds a band, a row of blocks and the sprites.

    Returns a dict: ``path``, ``json``, ``sample`` (a :class:`Sample`) and ``counts``.
    """
    import tifffile

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    placed = _place(rng, round(per_tile * (side / tile) ** 2), (side, side))
    off_x, off_y = (int(v) for v in rng.integers(block // 4, block, 2))
    block_seed = int(rng.integers(2**31))

    @functools.lru_cache(maxsize=2 * (side // block + 3))  # two rows of blocks: what a band can touch
    def block_at(bx: int, by: int) -> np.ndarray:
        return _to_uint8(_background(np.random.default_rng([block_seed, bx + 1000, by + 1000]), block))

    def band(y0: int) -> np.ndarray:
        h = min(tile, side - y0)
        canvas = np.empty((h, side, 3), np.float32)
        for by in range((y0 + off_y) // block - 1, (y0 + h + off_y) // block + 1):
            for bx in range(-1, (side + off_x) // block + 1):
                x_a, y_a = bx * block - off_x, by * block - off_y  # block origin in the image
                xs, xe = max(x_a, 0), min(x_a + block, side)
                ys, ye = max(y_a, y0), min(y_a + block, y0 + h)
                if xs < xe and ys < ye:
                    canvas[ys - y0 : ye - y0, xs:xe] = block_at(bx, by)[
                        ys - y_a : ye - y_a, xs - x_a : xe - x_a
                    ]
        _paste(canvas, placed, 0, y0)
        return _to_uint8(canvas)

    def tiles() -> Iterator[np.ndarray]:
        for y0 in range(0, side, tile):
            strip = band(y0)
            for x0 in range(0, side, tile):
                yield strip[:, x0 : x0 + tile]

    path = root / f"{name}.tif"
    tifffile.imwrite(
        path,
        tiles(),
        shape=(side, side, 3),
        dtype=np.uint8,
        tile=(tile, tile),
        photometric="rgb",
        compression="zlib",
        compressionargs={"level": 6},
    )
    xyxy = np.array([p.xyxy for p in placed]).reshape(-1, 4)
    sample = Sample(path, (side, side), xyxy, np.array([p.category_id for p in placed], np.int64))
    json_path = root / f"{name}.json"
    json_path.write_text(json.dumps(_coco([sample])))
    return {"path": path, "json": json_path, "sample": sample, "counts": _counts([sample])}


def preview(samples: Sequence[Sample], path: str | Path, n: int = 8, scale: int = 2) -> Path:
    """A contact sheet of the first ``n`` samples with their boxes (coin red, flower cyan), for a look."""
    colours = {1: (255, 40, 40), 2: (0, 230, 255)}
    cols = 4
    picked = list(samples[:n])
    w, h = picked[0].size
    sheet = Image.new("RGB", (cols * w * scale, -(-len(picked) // cols) * h * scale), "white")
    for i, s in enumerate(picked):
        with Image.open(s.path) as im:
            im = im.convert("RGB").resize((w * scale, h * scale), Image.Resampling.NEAREST)
        draw = ImageDraw.Draw(im)
        for box, c in zip(s.xyxy.tolist(), s.category_ids.tolist()):
            x1, y1, x2, y2 = (v * scale for v in box)
            draw.rectangle([x1, y1, x2 - 1, y2 - 1], outline=colours[int(c)], width=2)
        sheet.paste(im, ((i % cols) * w * scale, (i // cols) * h * scale))
    path = Path(path)
    sheet.save(path)
    return path
