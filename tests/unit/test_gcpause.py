"""The collector pause shared by overlapping uploads."""

from __future__ import annotations

import gc

from energyops_ext.gcpause import cyclic_gc_paused


def test_collection_resumes_when_the_last_holder_ends() -> None:
    assert gc.isenabled()
    first, second = cyclic_gc_paused(), cyclic_gc_paused()
    first.__enter__()
    assert not gc.isenabled()
    second.__enter__()
    first.__exit__(None, None, None)
    assert not gc.isenabled()  # the other upload is still building
    second.__exit__(None, None, None)
    assert gc.isenabled()


def test_a_collector_that_was_off_stays_off() -> None:
    gc.disable()
    try:
        with cyclic_gc_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_an_error_inside_still_resumes_collection() -> None:
    try:
        with cyclic_gc_paused():
            raise ValueError("bad cell")
    except ValueError:
        pass
    assert gc.isenabled()
