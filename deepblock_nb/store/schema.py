"""The SQLite schema and its migrations.

``MIGRATIONS[i]`` takes a database from schema version ``i`` to ``i + 1``. A new
project runs them all; an older one runs the missing ones in one transaction.
Never edit a released migration: append a new one.
"""

from __future__ import annotations

SCHEMA_VERSION_KEY = "schema_version"

MIGRATIONS: list[str] = [
    # 0 -> 1: the first schema.
    """
    CREATE TABLE meta (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    CREATE TABLE categories (
        id    INTEGER PRIMARY KEY,
        name  TEXT NOT NULL UNIQUE,
        color TEXT NOT NULL
    );
    CREATE TABLE images (
        id           INTEGER PRIMARY KEY,
        name         TEXT NOT NULL UNIQUE,
        path         TEXT NOT NULL,      -- relative to the project when copied
        copied       INTEGER NOT NULL,   -- 1: a copy under images/, 0: a reference
        hash         TEXT NOT NULL,
        size         INTEGER NOT NULL,
        width        INTEGER NOT NULL CHECK (width > 0),
        height       INTEGER NOT NULL CHECK (height > 0),
        format       TEXT NOT NULL,
        split        TEXT NOT NULL CHECK (split IN ('train', 'evaluate', 'predict')),
        grid_rows    INTEGER,
        grid_cols    INTEGER,
        grid_overlap REAL,
        added        REAL NOT NULL
    );
    CREATE TABLE annotations (
        id          INTEGER PRIMARY KEY,
        image_id    INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,
        category_id INTEGER NOT NULL REFERENCES categories(id),
        x1 REAL NOT NULL, y1 REAL NOT NULL, x2 REAL NOT NULL, y2 REAL NOT NULL,
        -- width/height exactly as an imported file gave them (COCO xywh), so that
        -- an export writes back the same floats; NULL once the box is edited.
        src_w REAL, src_h REAL,
        source TEXT NOT NULL DEFAULT 'manual',
        CHECK (x2 > x1 AND y2 > y1)
    );
    CREATE INDEX annotations_image ON annotations(image_id);
    CREATE INDEX annotations_category ON annotations(category_id);
    CREATE TABLE runs (
        id          INTEGER PRIMARY KEY,
        model       TEXT NOT NULL,
        config      TEXT NOT NULL,       -- JSON
        status      TEXT NOT NULL,
        created     REAL NOT NULL,
        finished    REAL,
        best_score  REAL,
        epochs_done INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE history (
        run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
        seq    INTEGER NOT NULL,
        row    TEXT NOT NULL,            -- JSON object
        PRIMARY KEY (run_id, seq)
    );
    CREATE TABLE predictions (
        id          INTEGER PRIMARY KEY,
        image_id    INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,
        run_id      INTEGER REFERENCES runs(id) ON DELETE CASCADE,
        category_id INTEGER NOT NULL REFERENCES categories(id) ON DELETE CASCADE,
        x1 REAL NOT NULL, y1 REAL NOT NULL, x2 REAL NOT NULL, y2 REAL NOT NULL,
        score REAL NOT NULL
    );
    CREATE INDEX predictions_image ON predictions(image_id, run_id, score);
    CREATE TABLE evaluations (
        id      INTEGER PRIMARY KEY,
        run_id  INTEGER REFERENCES runs(id) ON DELETE CASCADE,
        created REAL NOT NULL,
        report  TEXT NOT NULL            -- JSON
    );
    """,
    # 1 -> 2: which run's predictions are an image's current ones, stated, not
    # inferred from the newest row (a re-predict that finds nothing must leave none).
    """
    CREATE TABLE current_predictions (
        image_id INTEGER PRIMARY KEY REFERENCES images(id) ON DELETE CASCADE,
        run_id   INTEGER REFERENCES runs(id) ON DELETE CASCADE,
        updated  REAL NOT NULL
    );
    INSERT INTO current_predictions(image_id, run_id, updated)
        SELECT p.image_id, p.run_id, 0 FROM predictions p
        WHERE p.id = (SELECT max(q.id) FROM predictions q WHERE q.image_id = p.image_id);
    """,
    # 2 -> 3: an image a user has reviewed ("done"): its boxes are all there is, so
    # without boxes it is a true negative for training and Evaluate.
    """
    ALTER TABLE images ADD COLUMN reviewed REAL;
    """,
    # 3 -> 4: tiles of an image a user has reviewed, kept as their windows (image
    # pixels) so that they keep their meaning when the grid changes.
    """
    CREATE TABLE reviewed_tiles (
        image_id INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,
        x INTEGER NOT NULL CHECK (x >= 0),
        y INTEGER NOT NULL CHECK (y >= 0),
        w INTEGER NOT NULL CHECK (w > 0),
        h INTEGER NOT NULL CHECK (h > 0),
        reviewed REAL NOT NULL,
        PRIMARY KEY (image_id, x, y, w, h)
    );
    """,
    # 4 -> 5: how an image is displayed (and so read by training and prediction):
    # the user's bands and intensity window as JSON (NULL: "auto"), and the
    # per-band sample statistics its "auto" window was measured from, kept so the
    # same window serves every later read (NULL: not measured yet).
    """
    ALTER TABLE images ADD COLUMN display TEXT;
    ALTER TABLE images ADD COLUMN display_stats TEXT;
    """,
    # 5 -> 6: microns per pixel of level 0 (whole-slide images, TIFF resolution tags),
    # as the file says when the image is added; NULL: unknown.
    """
    ALTER TABLE images ADD COLUMN mpp_x REAL;
    ALTER TABLE images ADD COLUMN mpp_y REAL;
    """,
    # 6 -> 7: proposals, a run's predictions offered for labelling: open until
    # accepted or corrected (then ``annotation_id`` is the box it became) or rejected
    # (kept, so that run does not propose it again).
    """
    CREATE TABLE proposals (
        id            INTEGER PRIMARY KEY,
        image_id      INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,
        run_id        INTEGER REFERENCES runs(id) ON DELETE CASCADE,
        category_id   INTEGER NOT NULL REFERENCES categories(id) ON DELETE CASCADE,
        x1 REAL NOT NULL, y1 REAL NOT NULL, x2 REAL NOT NULL, y2 REAL NOT NULL,
        score         REAL NOT NULL,
        state         TEXT NOT NULL DEFAULT 'open'
                      CHECK (state IN ('open', 'accepted', 'corrected', 'rejected')),
        annotation_id INTEGER REFERENCES annotations(id) ON DELETE SET NULL,
        created       REAL NOT NULL,
        decided       REAL,
        CHECK (x2 > x1 AND y2 > y1)
    );
    CREATE INDEX proposals_image ON proposals(image_id, state, run_id);
    """,
]

SCHEMA_VERSION = len(MIGRATIONS)
