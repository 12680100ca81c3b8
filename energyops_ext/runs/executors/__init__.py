"""Where runs execute: ``local`` (a sandboxed subprocess of the server, in the engine itself)
or ``dask`` (the same sandboxed subprocess, started inside a task on a Dask worker)."""

from .base import Executor

__all__ = ["Executor"]
