"""Categories: names, colours, and the boxes that use them."""

from __future__ import annotations

import sqlite3

from deepblock_nb.errors import CategoryError
from deepblock_nb.store.database import Database
from deepblock_nb.store.records import PALETTE, Category

__all__ = ["Categories"]


def _category(row: sqlite3.Row) -> Category:
    return Category(int(row["id"]), str(row["name"]), str(row["color"]))


class Categories:
    """The ``categories`` table."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def all(self) -> list[Category]:
        return [_category(r) for r in self._db.query("SELECT id, name, color FROM categories ORDER BY id")]

    def by_id(self, category_id: int) -> Category | None:
        row = self._db.one("SELECT id, name, color FROM categories WHERE id = ?", (int(category_id),))
        return None if row is None else _category(row)

    def by_name(self, name: str) -> Category | None:
        row = self._db.one("SELECT id, name, color FROM categories WHERE name = ?", (str(name),))
        return None if row is None else _category(row)

    def add(self, name: str, color: str | None = None) -> Category:
        """Insert a category (joins the caller's transaction); a taken name is refused."""
        with self._db.write() as cx:
            if cx.execute("SELECT 1 FROM categories WHERE name = ?", (name,)).fetchone():
                raise CategoryError(f"a category named {name!r} already exists")
            if color is None:
                n = cx.execute("SELECT count(*) FROM categories").fetchone()[0]
                color = PALETTE[n % len(PALETTE)]
            cur = cx.execute("INSERT INTO categories(name, color) VALUES (?, ?)", (name, color))
            return Category(int(cur.lastrowid), name, color)  # type: ignore[arg-type]

    def rename(self, category: Category, name: str) -> Category:
        with self._db.write() as cx:
            other = cx.execute("SELECT id FROM categories WHERE name = ?", (name,)).fetchone()
            if other and other["id"] != category.id:
                raise CategoryError(
                    f"cannot rename {category.name!r}: a category named {name!r} already exists"
                )
            cx.execute("UPDATE categories SET name = ? WHERE id = ?", (name, category.id))
        return Category(category.id, name, category.color)

    def recolor(self, category: Category, color: str) -> Category:
        with self._db.write() as cx:
            cx.execute("UPDATE categories SET color = ? WHERE id = ?", (color, category.id))
        return Category(category.id, category.name, color)

    def remove(self, category: Category, *, force: bool) -> int:
        """Delete a category; with ``force`` its boxes too. Returns how many boxes went."""
        with self._db.write() as cx:
            n = int(
                cx.execute(
                    "SELECT count(*) FROM annotations WHERE category_id = ?", (category.id,)
                ).fetchone()[0]
            )
            if n and not force:
                raise CategoryError(
                    f"category {category.name!r} still has {n} boxes; pass force=True to remove it with its boxes"
                )
            cx.execute("DELETE FROM annotations WHERE category_id = ?", (category.id,))
            cx.execute("DELETE FROM categories WHERE id = ?", (category.id,))
        return n

    def box_counts(self, split: str | None = None) -> dict[str, int]:
        """Boxes per category name (of one split, or all)."""
        join = "LEFT JOIN images i ON i.id = a.image_id" + (" AND i.split = ?" if split is not None else "")
        count = "count(a.id)" if split is None else "count(i.id)"
        rows = self._db.query(
            f"SELECT c.name AS name, {count} AS n FROM categories c "
            f"LEFT JOIN annotations a ON a.category_id = c.id {join} GROUP BY c.id ORDER BY c.id",
            () if split is None else (split,),
        )
        return {r["name"]: int(r["n"]) for r in rows}
