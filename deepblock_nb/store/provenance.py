"""What imported files said that no table holds, kept in the key/value ``meta`` table.

A COCO file's ``info`` object and ``licenses`` list, and its per-image fields
(``license``, ``date_captured``, ``coco_url``, ``flickr_url``), so that a COCO export
writes them back. Per-image entries are keyed by image id and carry the image name:
an id that SQLite gives again to another image after a removal does not inherit them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from deepblock_nb.store.database import Database

__all__ = ["Provenance"]

_INFO = "coco.info"
_LICENSES = "coco.licenses"
_IMAGE = "coco.image."  # + image id


class Provenance:
    """COCO header and per-image fields of imported files (JSON values in ``meta``)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def coco_header(self) -> tuple[dict[str, Any] | None, list[Any] | None]:
        """The last imported COCO ``info`` and the licenses of all COCO imports, or ``None``."""
        return self._db.get_meta(_INFO), self._db.get_meta(_LICENSES)

    def keep_coco(
        self,
        info: dict[str, Any] | None,
        licenses: list[Any] | None,
        image_fields: Mapping[int, tuple[str, dict[str, Any]]],
    ) -> None:
        """Record one COCO import (joins the caller's transaction).

        ``info`` replaces the kept one when given; ``licenses`` are merged by ``id``
        (a license of the same id is replaced); ``image_fields`` is image id ->
        (image name, fields), and images without fields drop what was kept for them.
        """
        with self._db.write() as cx:
            if info is not None:
                cx.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (_INFO, json.dumps(info)))
            if licenses is not None:
                merged: dict[Any, Any] = {}
                for lic in [*(self._db.get_meta(_LICENSES) or []), *licenses]:
                    key = lic.get("id", json.dumps(lic)) if isinstance(lic, dict) else json.dumps(lic)
                    merged[json.dumps(key)] = lic
                cx.execute(
                    "INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)",
                    (_LICENSES, json.dumps(list(merged.values()))),
                )
            for image_id, (name, fields) in image_fields.items():
                key = f"{_IMAGE}{int(image_id)}"
                if fields:
                    cx.execute(
                        "INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)",
                        (key, json.dumps({"name": name, "fields": fields})),
                    )
                else:
                    cx.execute("DELETE FROM meta WHERE key = ?", (key,))

    def coco_image_fields(self, images: Iterable[tuple[int, str]]) -> dict[int, dict[str, Any]]:
        """Image id -> kept COCO fields, for the ``(id, name)`` pairs given that have some."""
        wanted = dict(images)
        out: dict[int, dict[str, Any]] = {}
        rows = self._db.query(
            "SELECT key, value FROM meta WHERE key >= ? AND key < ?", (_IMAGE, _IMAGE[:-1] + "/")
        )
        for row in rows:
            image_id = int(row["key"][len(_IMAGE) :])
            kept = json.loads(row["value"])
            if wanted.get(image_id) == kept.get("name"):
                out[image_id] = kept["fields"]
        return out
