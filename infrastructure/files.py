"""Files only their owner may read (issue 13, E.17): the store, the read models, their WAL and SHM
files, keys, exports and bundles are created 0600 in 0700 directories.

The process umask is narrowed to 077 around each creation (so a file is never, even briefly, readable
by others) and the mode is set again after it (the umask is per process, and a file may predate this
code). SQLite creates a database's -wal, -shm and -journal files with the database file's own mode.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path

FILE_MODE = 0o600
DIR_MODE = 0o700
SQLITE_COMPANIONS = ("-wal", "-shm", "-journal")

_umask_lock = threading.Lock()


@contextlib.contextmanager
def private_umask() -> Iterator[None]:
    """umask 077 while the block runs (threads of this process that create files meanwhile wait)."""
    with _umask_lock:
        old = os.umask(0o077)
        try:
            yield
        finally:
            os.umask(old)


def private_dir(path: str | os.PathLike[str], *, tighten: bool = False) -> Path:
    """Create ``path`` (and missing parents) 0700. With ``tighten``, an existing directory we own is
    set to 0700 too (the data directory is ours; a directory the store merely sits in is not)."""
    path = Path(path)
    if not path.exists():
        with private_umask():
            path.mkdir(parents=True, exist_ok=True)
        tighten = True
    if tighten:
        _chmod_own(path, DIR_MODE)
    return path


def make_private(path: str | os.PathLike[str]) -> None:
    """Set a file we own to 0600, if it exists."""
    _chmod_own(Path(path), FILE_MODE)


def private_sqlite(path: str | os.PathLike[str]) -> None:
    """A SQLite database file and its companions: 0600 each, if they exist."""
    for suffix in ("", *SQLITE_COMPANIONS):
        make_private(f"{os.fspath(path)}{suffix}")


def _chmod_own(path: Path, mode: int) -> None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return
    if st.st_uid == os.getuid() and (st.st_mode & 0o777) != mode:
        os.chmod(path, mode)


def open_private(path: str | os.PathLike[str], flags: int = os.O_WRONLY | os.O_CREAT | os.O_TRUNC):
    """``open(path, 'wb')`` for a file created 0600 (an existing file is set to 0600 too)."""
    fd = os.open(path, flags, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)
    except OSError:
        pass
    return os.fdopen(fd, "wb")


@contextlib.contextmanager
def atomic_private_file(path: str | os.PathLike[str]) -> Iterator[object]:
    """Write ``path`` as a whole or not at all: the bytes go to a temporary name beside it (0600), which
    is renamed over ``path`` only when the block completes. On any error the temporary file is removed
    and an existing ``path`` is left exactly as it was."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    f = open_private(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    try:
        with f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
