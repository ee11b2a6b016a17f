"""The project on disk: SQLite schema and migrations, records, change events."""

from deepblock_nb.store.database import Database
from deepblock_nb.store.events import TOPICS, Events
from deepblock_nb.store.records import SPLITS, Category, Grid, ImageRecord

__all__ = ["SPLITS", "TOPICS", "Category", "Database", "Events", "Grid", "ImageRecord"]
