"""Database access: the engine and transactions (`database`), tables, types and migrations."""

from workflow_engine.db.database import Database

__all__ = ["Database"]
