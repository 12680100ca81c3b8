"""Database layer: models, sessions and migrations."""

from .base import Base, utcnow
from .migrate import current_revision, head_revision, upgrade
from .session import Database, normalize_url, sqlite_url

__all__ = [
    "Base",
    "Database",
    "current_revision",
    "head_revision",
    "normalize_url",
    "sqlite_url",
    "upgrade",
    "utcnow",
]
