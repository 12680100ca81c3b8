"""The cyclic garbage collector held off while bulk work builds objects by the hundred thousand.

A year of blocks is half a million cells: Python objects that hold no cycles, whose creation
alone triggers full collections that walk every object alive, about a tenth of an upload's
time. Uploads on several threads at once share one pause: collection resumes when the last
of them ends (collections that were off before stay off).
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_lock = threading.Lock()
_holders = 0
_resume = False


@contextmanager
def cyclic_gc_paused() -> Iterator[None]:
    global _holders, _resume
    with _lock:
        if _holders == 0:
            _resume = gc.isenabled()
            gc.disable()
        _holders += 1
    try:
        yield
    finally:
        with _lock:
            _holders -= 1
            if _holders == 0 and _resume:
                gc.enable()
