"""The garbage collector's pace for the daemon and its batch worker.

A 1,000-item batch allocates ~50,000 short-lived objects (JSON, records, payloads) that live a
few hundred ms. At CPython's default first threshold (700) that is ~70 young collections a
batch, and whatever is still alive at each one is promoted and then scanned again in the older
generations: measured ~25 ms of collection a batch in the daemon. A larger first generation lets
a batch's objects die young; what was loaded at start (modules, phonenumbers' metadata) is
frozen out of every collection.
"""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 50_000  # allocations between young collections (CPython's default: 700)


def tune() -> None:
    """Call once the process has loaded what it keeps for its lifetime."""
    gc.collect()
    gc.freeze()
    _young, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)
