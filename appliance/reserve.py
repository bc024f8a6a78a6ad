"""Disk space held back for the ledger's last, vital writes: a file next to it, given up in steps.

When the disk fills, a part the modem has already accepted must still be recorded (or it
stays `sending`, its report is lost and it is sent twice). The reserve is a preallocated
file; when a vital write hits ENOSPC/SQLITE_FULL a step of it is truncated away and the write
retried. It is grown back once the disk has room again. Blocking file calls: callers run
them in a thread.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

# Given up per release: room for a few hundred part records in the WAL (a record touches
# ~10 pages of 4 KiB), and for the -shm file SQLite must create to open a ledger at all.
RESERVE_STEP_BYTES = 1024 * 1024
# Grown back only with this much room to spare beyond it, so that the daemon does not
# flap between full and not full while the disk hovers at its limit.
REGROW_HEADROOM_BYTES = 1024 * 1024
# Kept back from vital writes for the next start: SQLite needs room for its -shm file (32 KiB)
# and the WAL header to open the ledger at all (else SQLITE_IOERR_SHMSIZE).
OPEN_RESERVE_BYTES = 256 * 1024


class Reserve:
    """A preallocated file of `target` bytes at `path`."""

    def __init__(self, path: Path, target: int) -> None:
        self.path = path
        self.target = target

    @property
    def size(self) -> int:
        try:
            return self.path.stat().st_size
        except FileNotFoundError:
            return 0

    def free_bytes(self) -> int:
        st = os.statvfs(self.path.parent)
        return st.f_bavail * st.f_frsize

    def fill(self) -> bool:
        """Grow the file to its target when the disk has room: True when it is whole and the disk
        has room beyond it (a whole reserve on a disk full to the last byte is no room to write)."""
        have = self.size
        if have >= self.target:
            return self.free_bytes() >= REGROW_HEADROOM_BYTES
        if self.free_bytes() < self.target - have + REGROW_HEADROOM_BYTES:
            return False
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            # Really allocated (not a sparse hole): truncating it later frees the blocks.
            os.posix_fallocate(fd, 0, self.target)
            os.fsync(fd)
        except OSError:
            os.ftruncate(fd, have)  # half a reserve is not whole: keep what was there
            return False
        finally:
            os.close(fd)
        return True

    def release(self, *, floor: int = 0) -> int:
        """Give up one step, never going below `floor` bytes; the bytes freed (0: nothing to give)."""
        have = self.size
        if have <= floor:
            return 0
        keep = max(floor, have - RESERVE_STEP_BYTES)
        with contextlib.suppress(FileNotFoundError):
            if keep == 0:
                self.path.unlink()
            else:
                os.truncate(self.path, keep)
        return have - keep
