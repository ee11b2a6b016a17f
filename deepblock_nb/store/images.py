"""Images: where their pixels are, their size, split and grid."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

from deepblock_nb.errors import PathError
from deepblock_nb.io.display import DisplaySetting
from deepblock_nb.store.database import Database
from deepblock_nb.store.records import Grid, ImageRecord

__all__ = ["Images", "StagedImage"]

_COLUMNS = (
    "id, name, path, copied, hash, size, width, height, format, split, grid_rows, grid_cols, grid_overlap, "
    "reviewed, display, mpp_x, mpp_y"
)

#: what an insert needs of one image (built by the project's file staging)
StagedImage = dict[str, Any]


class Images:
    """The ``images`` table. ``root`` resolves the paths of copied images."""

    def __init__(self, db: Database, root: Path) -> None:
        self._db = db
        self._root = root

    def _record(self, r: sqlite3.Row) -> ImageRecord:
        path = Path(r["path"])
        if r["copied"]:
            path = self._root / path
        grid = (
            None
            if r["grid_rows"] is None
            else Grid(int(r["grid_rows"]), int(r["grid_cols"]), float(r["grid_overlap"]))
        )
        return ImageRecord(
            id=int(r["id"]),
            name=str(r["name"]),
            path=path,
            width=int(r["width"]),
            height=int(r["height"]),
            format=str(r["format"]),
            split=str(r["split"]),
            grid=grid,
            hash=str(r["hash"]),
            size=int(r["size"]),
            copied=bool(r["copied"]),
            reviewed=r["reviewed"] is not None,
            display=DisplaySetting.from_json(r["display"]),
            mpp=None if r["mpp_x"] is None or r["mpp_y"] is None else (float(r["mpp_x"]), float(r["mpp_y"])),
        )

    def all(self, split: str | None = None) -> list[ImageRecord]:
        if split is None:
            rows = self._db.query(f"SELECT {_COLUMNS} FROM images ORDER BY id")
        else:
            rows = self._db.query(f"SELECT {_COLUMNS} FROM images WHERE split = ? ORDER BY id", (split,))
        return [self._record(r) for r in rows]

    def by_id(self, image_id: int) -> ImageRecord | None:
        row = self._db.one(f"SELECT {_COLUMNS} FROM images WHERE id = ?", (int(image_id),))
        return None if row is None else self._record(row)

    def by_name(self, name: str) -> ImageRecord | None:
        row = self._db.one(f"SELECT {_COLUMNS} FROM images WHERE name = ?", (str(name),))
        return None if row is None else self._record(row)

    def name_taken(self, name: str) -> bool:
        return self._db.one("SELECT 1 FROM images WHERE name = ?", (name,)) is not None

    def count(self) -> int:
        return int(self._db.scalar("SELECT count(*) FROM images"))

    def insert(self, entries: list[StagedImage], split: str) -> list[int]:
        """Insert staged images (joins the caller's transaction); returns their ids.

        Each entry: ``name, stored, copied, hash, size, width, height, format`` and
        optionally ``mpp`` (``(x, y)`` microns per pixel or None; more keys are ignored). A name already taken is refused (``PathError``).
        """
        added_at = time.time()
        ids = []
        with self._db.write() as cx:
            for e in entries:
                if cx.execute("SELECT 1 FROM images WHERE name = ?", (e["name"],)).fetchone():
                    raise PathError(
                        f"{e.get('origin', e['name'])}: the project already has an image named {e['name']!r}; "
                        "rename the file or pass name=..."
                    )
                mpp = e.get("mpp")
                cur = cx.execute(
                    "INSERT INTO images(name, path, copied, hash, size, width, height, format, split, added, "
                    "mpp_x, mpp_y) VALUES (:name, :stored, :copied, :hash, :size, :width, :height, :format, "
                    ":split, :added, :mpp_x, :mpp_y)",
                    {
                        **{k: e[k] for k in ("name", "stored", "hash", "size", "width", "height", "format")},
                        "copied": int(e["copied"]),
                        "split": split,
                        "added": added_at,
                        "mpp_x": None if mpp is None else float(mpp[0]),
                        "mpp_y": None if mpp is None else float(mpp[1]),
                    },
                )
                ids.append(int(cur.lastrowid))  # type: ignore[arg-type]
        return ids

    def remove(self, image_id: int) -> None:
        """Delete an image; its boxes and predictions go with it (foreign keys)."""
        with self._db.write() as cx:
            cx.execute("DELETE FROM images WHERE id = ?", (int(image_id),))

    def set_split(self, image_id: int, split: str) -> None:
        with self._db.write() as cx:
            cx.execute("UPDATE images SET split = ? WHERE id = ?", (split, int(image_id)))

    def set_reviewed(self, image_id: int, reviewed: bool) -> None:
        with self._db.write() as cx:
            cx.execute(
                "UPDATE images SET reviewed = ? WHERE id = ?",
                (time.time() if reviewed else None, int(image_id)),
            )

    def set_display(self, image_id: int, setting: DisplaySetting) -> None:
        """Store the user's display setting (the default is stored as NULL: "auto")."""
        with self._db.write() as cx:
            cx.execute("UPDATE images SET display = ? WHERE id = ?", (setting.to_json(), int(image_id)))

    def display_stats(self, image_id: int) -> str | None:
        """The JSON of the sample statistics measured for the "auto" window, or None."""
        row = self._db.one("SELECT display_stats FROM images WHERE id = ?", (int(image_id),))
        return None if row is None else row["display_stats"]

    def set_display_stats(self, image_id: int, stats_json: str) -> None:
        with self._db.write() as cx:
            cx.execute("UPDATE images SET display_stats = ? WHERE id = ?", (stats_json, int(image_id)))

    def set_grid(self, image_id: int, grid: Grid | None) -> None:
        values = (None, None, None) if grid is None else (int(grid.rows), int(grid.cols), float(grid.overlap))
        with self._db.write() as cx:
            cx.execute(
                "UPDATE images SET grid_rows = ?, grid_cols = ?, grid_overlap = ? WHERE id = ?",
                (*values, int(image_id)),
            )
