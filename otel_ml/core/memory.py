"""Resident memory that follows what is live, not the highest peak ever.

Merges, publications and checkpoints build large short-lived objects from several threads; glibc keeps what they
free in its per-thread arenas, so a process's resident size would show its highest peak rather than what it holds
(measured on a shared-mode replica: 30% of its RSS was free heap, docs/scaling.md). ``return_free_memory`` gives
it back (``malloc_trim``); the stages call it after each of those.

>>> return_free_memory()  # milliseconds; a no-op where the C library has no malloc_trim
"""

from __future__ import annotations

from collections.abc import Callable


def _malloc_trim() -> Callable[[], object] | None:
    try:
        import ctypes

        trim = ctypes.CDLL(None).malloc_trim  # glibc; other C libraries have no such call
    except (AttributeError, OSError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    return lambda: trim(0)


_trim = _malloc_trim()


def return_free_memory() -> None:
    """Return the heap that allocations freed to the system."""
    if _trim is not None:
        _trim()
