"""Secret key files next to the ledger (command.key, session.key, callback.key): made once, kept.

Here, not in appliance/, because the watchdog reads command.key too and never imports appliance/;
the daemon already uses watchdog.commands. A key file is written atomically (a temp file, fsync,
link, fsync of the directory), so a power cut leaves either no file or a whole one. An existing file
that is empty or damaged is an error naming it, never silently replaced: receivers and stored
digests depend on the old key. On a full disk at first start the key lives in memory for this run.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import secrets
from collections.abc import Callable
from pathlib import Path

_LOGGER = logging.getLogger(__name__)

_NO_ROOM = (errno.ENOSPC, errno.EDQUOT)
_UNSAVED: dict[Path, bytes] = {}  # keys this process could not save: one per file, logged once


class DamagedKey(OSError):
    """A key file exists but holds no valid key."""


def load_or_make(path: Path, make: Callable[[], bytes], valid: Callable[[bytes], bool]) -> bytes:
    """The content of the key file at `path`; made 0600 from `make()` when there is none.

    Raises DamagedKey when the file exists but `valid` refuses it (restore it or delete it)."""
    data = _read(path, valid)
    if data is not None:
        return data
    if path in _UNSAVED:
        return _UNSAVED[path]
    data = make()
    try:
        _create(path, data)
    except FileExistsError:
        pass  # another process made it first: its key is the key
    except OSError as exc:
        if exc.errno not in _NO_ROOM:
            raise
        _LOGGER.warning("cannot save %s (disk full): using a key for this run only", path)
        _UNSAVED[path] = data
        return data
    saved = _read(path, valid)
    if saved is None:
        raise DamagedKey(errno.ENOENT, "the key file vanished while it was made", str(path))
    return saved


def _read(path: Path, valid: Callable[[bytes], bool]) -> bytes | None:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    if not valid(data):
        raise DamagedKey(
            errno.EINVAL,
            "key file is empty or damaged (restore it from a backup, or delete it to make a new key)",
            str(path),
        )
    return data


def _create(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.link(tmp, path)  # atomic, never over an existing file, complete once visible
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    """The new name survives a power cut only once its directory is on disk."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
