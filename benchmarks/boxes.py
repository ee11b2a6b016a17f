"""Adding 100,000 boxes and listing them back, against plain sqlite3 in the same run.

    python benchmarks/boxes.py [--boxes 100000]

Prints the time per box for:
  - project.add_box, one call (one transaction) per box, as a labelling UI does;
  - project.add_boxes, one call for all boxes of an image (imports);
  - project.annotations, listing them back as Detections;
and the same work done with a bare sqlite3 connection (executemany into an
equivalent table, and a SELECT into numpy), with the ratios.
"""

from __future__ import annotations

import argparse
import sqlite3
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

import deepblock_nb as dbn


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--boxes", type=int, default=100_000)
    ap.add_argument("--single", type=int, default=20_000, help="boxes added one call each")
    args = ap.parse_args()
    n = args.boxes
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 900, (n, 2))
    xyxy = np.concatenate([xy, xy + rng.uniform(1, 100, (n, 2))], axis=1)
    cats = rng.integers(1, 3, n)

    with tempfile.TemporaryDirectory() as tmp:
        img = Path(tmp) / "a.png"
        Image.new("RGB", (1000, 1000)).save(img)

        # baseline: plain sqlite3, same table shape, WAL, one transaction
        cx = sqlite3.connect(Path(tmp) / "plain.db", isolation_level=None)
        cx.execute("PRAGMA journal_mode=WAL")
        cx.execute("PRAGMA synchronous=NORMAL")
        cx.execute(
            "CREATE TABLE a (id INTEGER PRIMARY KEY, image_id INT, category_id INT, x1 REAL, y1 REAL, x2 REAL, y2 REAL)"
        )
        cx.execute("CREATE INDEX ai ON a(image_id)")
        t = time.perf_counter()
        cx.execute("BEGIN")
        cx.executemany(
            "INSERT INTO a(image_id, category_id, x1, y1, x2, y2) VALUES (1, ?, ?, ?, ?, ?)",
            [(int(c), *b) for c, b in zip(cats, xyxy.tolist())],
        )
        cx.execute("COMMIT")
        base_add = time.perf_counter() - t
        t = time.perf_counter()
        rows = cx.execute(
            "SELECT id, category_id, x1, y1, x2, y2 FROM a WHERE image_id = 1 ORDER BY id"
        ).fetchall()
        np.asarray(rows, dtype=np.float64)
        base_list = time.perf_counter() - t
        cx.close()

        # baseline for single-row transactions
        cx = sqlite3.connect(Path(tmp) / "plain1.db", isolation_level=None)
        cx.execute("PRAGMA journal_mode=WAL")
        cx.execute("PRAGMA synchronous=NORMAL")
        cx.execute(
            "CREATE TABLE a (id INTEGER PRIMARY KEY, image_id INT, category_id INT, x1 REAL, y1 REAL, x2 REAL, y2 REAL)"
        )
        m = min(args.single, n)
        t = time.perf_counter()
        for c, b in zip(cats[:m].tolist(), xyxy[:m].tolist()):
            cx.execute("BEGIN IMMEDIATE")
            cx.execute(
                "INSERT INTO a(image_id, category_id, x1, y1, x2, y2) VALUES (1, ?, ?, ?, ?, ?)", (c, *b)
            )
            cx.execute("COMMIT")
        base_single = time.perf_counter() - t
        cx.close()

        p = dbn.Project.create(Path(tmp) / "p", categories=["a", "b"])
        rec = p.add_image(img)
        t = time.perf_counter()
        p.add_boxes(rec, cats, xyxy)
        ours_add = time.perf_counter() - t
        t = time.perf_counter()
        det = p.annotations(rec)
        ours_list = time.perf_counter() - t
        assert len(det) == n and np.array_equal(det.xyxy, xyxy)

        rec2 = p.add_image(img, name="b.png")
        t = time.perf_counter()
        for c, b in zip(cats[:m].tolist(), xyxy[:m]):
            p.add_box(rec2, c, b)
        ours_single = time.perf_counter() - t
        assert len(p.annotations(rec2)) == m
        p.close()

    us = 1e6
    print(f"boxes: {n:,} in one call, {m:,} one call each")
    print(f"{'':34s}{'ours us/box':>14s}{'sqlite3 us/box':>16s}{'ratio':>8s}")
    for label, ours, base, k in (
        ("add all boxes of an image", ours_add, base_add, n),
        ("add one box per call", ours_single, base_single, m),
        ("list boxes back (Detections)", ours_list, base_list, n),
    ):
        print(f"{label:34s}{ours / k * us:14.2f}{base / k * us:16.2f}{ours / base:8.2f}x")


if __name__ == "__main__":
    main()
