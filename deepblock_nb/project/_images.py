"""Images for the Project: adding them, marking them reviewed, and reading their pixels
under their display setting (bands and intensity window).

The display setting is the one home of how an image's samples become 8-bit RGB:
``open_image`` (the viewer, Divide, prediction) and the training tiles
(``Training._tile_items`` puts ``display`` in each ``TileItem``) all take it from
``display``. The "auto" window is measured once per image on the raw samples of a
small overview (``io.images.measure_samples``) and kept in the store, so every
later read, in this session or another, uses the same window.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from deepblock_nb.errors import ArgumentError, DisplayError, ImageReadError
from deepblock_nb.io.display import Display, SampleStats, parse_setting, resolve
from deepblock_nb.io.images import ImageSource, measure_samples, open_image
from deepblock_nb.project._checks import check_split, tile_window
from deepblock_nb.store import ImageRecord
from deepblock_nb.store.files import ImageSourceLike, Staging

if TYPE_CHECKING:
    from deepblock_nb.project._project import ImageLike, Project

__all__ = ["ImageService"]


class ImageService:
    """The image methods of a Project (each Project method is a thin wrapper of one here)."""

    def __init__(self, project: Project) -> None:
        self._p = project
        self._images = project._store.images
        self._measure_lock = threading.Lock()  # one measurement per image, even from many threads

    # -- adding ---------------------------------------------------------------
    def add_images(
        self, sources: Iterable[ImageSourceLike], split: str, copy: bool, names: Sequence[str] | None
    ) -> list[ImageRecord]:
        split = check_split(split)
        if isinstance(sources, (str, Path, bytes, bytearray, np.ndarray)):
            raise ArgumentError("add_images takes a list of sources; use add_image for one")
        sources = list(sources)
        if names is not None and len(names) != len(sources):
            raise ArgumentError(f"got {len(names)} names for {len(sources)} images")
        with self.staging() as staging:
            entries = [
                staging.stage(src, copy, None if names is None else names[i]) for i, src in enumerate(sources)
            ]
            with self._p._store.write():
                ids = self.insert(staging, entries, split)
        return [self._p.image(i) for i in ids]

    def staging(self) -> Staging:
        return Staging(self._p.path, self._images.name_taken)

    def insert(self, staging: Staging, entries: list[dict[str, Any]], split: str) -> list[int]:
        """Record staged images inside the caller's transaction and announce them after it."""
        staging.check_names(entries)
        ids = self._images.insert(entries, split)
        staging.commit(entries)  # temporary names become final inside the transaction
        if ids:
            self._p._emit("images", action="added", images=[self._p.image(i) for i in ids])
        return ids

    # -- reviewing ------------------------------------------------------------
    def set_reviewed(self, image: ImageLike, reviewed: bool, tile: Any) -> ImageRecord:
        if not isinstance(reviewed, bool):
            raise ArgumentError(f"reviewed is True or False, not {reviewed!r}")
        rec = self._p.image(image)
        if tile is None:
            self._images.set_reviewed(rec.id, reviewed)
        else:
            self._p._store.reviews.set(rec.id, tile_window(rec, tile), reviewed)
        new = self._p.image(rec.id)
        self._p._emit("images", action="reviewed" if tile is None else "tile_reviewed", images=[new])
        return new

    # -- pixels ---------------------------------------------------------------
    def _file(self, rec: ImageRecord) -> Path:
        if not rec.path.is_file():
            raise ImageReadError(
                f"{rec.path}: the file of image {rec.name!r} is missing (was it moved or deleted?)", rec.path
            )
        return rec.path

    def open_image(self, image: ImageLike, cache_bytes: int | None) -> ImageSource:
        rec = self._p.image(image)
        path = self._file(rec)
        return open_image(
            path, cache_dir=self._p.path / "cache", cache_bytes=cache_bytes, display=self.display(rec)
        )

    def stats(self, rec: ImageRecord) -> SampleStats:
        """The image's sample statistics for the display defaults: stored, else measured once and stored."""
        text = self._images.display_stats(rec.id)
        if text is None:
            with self._measure_lock:
                text = self._images.display_stats(rec.id)
                if text is None:
                    stats = measure_samples(self._file(rec), self._p.path / "cache")
                    self._images.set_display_stats(rec.id, stats.to_json())
                    return stats
        return SampleStats.from_json(text)

    def display(self, image: ImageLike) -> Display:
        rec = self._p.image(image)
        try:
            return resolve(self.stats(rec), rec.display)
        except DisplayError as exc:  # a stored setting is checked when set: only a replaced file gets here
            raise DisplayError(f"image {rec.name!r}: {exc}") from None

    def set_display(self, image: ImageLike, bands: Any, window: Any) -> ImageRecord:
        rec = self._p.image(image)
        try:
            setting = parse_setting(bands, window)
            resolve(self.stats(rec), setting)  # checks it against the image's bands
        except DisplayError as exc:
            raise DisplayError(f"image {rec.name!r}: {exc}") from None
        self._images.set_display(rec.id, setting)
        new = self._p.image(rec.id)
        self._p._emit("images", action="display", images=[new])
        return new
