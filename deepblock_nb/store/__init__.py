"""The project on disk: SQLite schema and migrations, one repository per kind of
record (categories, images, annotations, runs, predictions, proposals), and change events.

All SQL of deepblock_nb lives in this package.
"""

import sqlite3
from contextlib import AbstractContextManager
from pathlib import Path

from deepblock_nb.store.annotations import Annotations, ExportBoxes, ImportedBox
from deepblock_nb.store.categories import Categories
from deepblock_nb.store.database import Database
from deepblock_nb.store.events import TOPICS, Events
from deepblock_nb.store.images import Images, StagedImage
from deepblock_nb.store.predictions import Predictions
from deepblock_nb.store.proposals import PROPOSAL_STATES, Proposals
from deepblock_nb.store.provenance import Provenance
from deepblock_nb.store.records import SPLITS, Category, Grid, ImageRecord
from deepblock_nb.store.reviews import Reviews
from deepblock_nb.store.runs import RUN_STATUSES, Runs

__all__ = [
    "PROPOSAL_STATES",
    "RUN_STATUSES",
    "SPLITS",
    "TOPICS",
    "Annotations",
    "Categories",
    "Category",
    "Database",
    "Events",
    "ExportBoxes",
    "Grid",
    "ImageRecord",
    "Images",
    "ImportedBox",
    "Predictions",
    "Proposals",
    "Provenance",
    "Reviews",
    "Runs",
    "StagedImage",
    "Store",
]


class Store:
    """The repositories of one project database, sharing its connections and transactions."""

    def __init__(self, db: Database, root: Path) -> None:
        self.db = db
        self.categories = Categories(db)
        self.images = Images(db, root)
        self.reviews = Reviews(db)
        self.annotations = Annotations(db)
        self.runs = Runs(db)
        self.predictions = Predictions(db)
        self.provenance = Provenance(db)
        self.proposals = Proposals(db)

    def write(self) -> AbstractContextManager[sqlite3.Connection]:
        """One transaction over any of the repositories (``with store.write(): ...``)."""
        return self.db.write()
