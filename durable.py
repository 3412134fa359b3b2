"""Writes that survive a kill or a power loss, the lock that says one process owns a folder, and
path re-pointing for a folder that moved: the few rules every script's files follow.
"""

import contextlib
import errno
import fcntl
import os
import re
import shutil
import socket


class Busy(Exception):
    """Another live process holds the folder's lock: one line naming it, exit 2."""


class FolderLock:
    """An exclusive lock on `folder` for this process's lifetime (fcntl.flock on `folder/.lock`): the
    kernel drops it when the process ends, kill -9 included, so a crash never leaves it stale. The
    file says who holds it (pid and host), for the refusal's line."""

    NAME = ".lock"

    def __init__(self, folder, what):
        os.makedirs(folder, exist_ok=True)
        self.folder, self.path = folder, os.path.join(folder, self.NAME)
        while True:
            self.file = open(self.path, "a+")
            try:
                fcntl.flock(self.file, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                if e.errno not in (errno.EWOULDBLOCK, errno.EACCES):
                    raise
                self.file.seek(0)
                holder = self.file.read().strip() or "another process"
                self.file.close()
                raise Busy(
                    f"{what} {folder} is in use by {holder}; wait for it to end (or stop it), then run this again"
                ) from None
            try:
                if os.path.samestat(os.stat(self.path), os.fstat(self.file.fileno())):
                    break
            except FileNotFoundError:
                pass
            self.file.close()  # its holder removed the file as it let go: lock the one there now
        self.file.seek(0)
        self.file.truncate()
        self.file.write(f"pid {os.getpid()} on host {socket.gethostname()}\n")
        self.file.flush()

    def release(self):
        """Let go, removing the file (and the folder, if nothing else is in it)."""
        if self.file.closed:
            return
        os.remove(self.path)  # while held: a process that opened it finds it gone and opens anew
        self.file.close()
        try:
            os.rmdir(self.folder)  # a run that never started leaves no empty folder
        except OSError:
            pass


@contextlib.contextmanager
def exclusive(path):
    """Wait for, then hold, an exclusive lock on the file `path` (created if need be)."""
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


def fsync_folder(folder):
    """A rename or a new file is durable only once its folder's entry is on disk."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomically(path, write, keep_previous=None):
    """`write(tmp)` writes the content; then it is fsynced and renamed over `path`, and the folder
    fsynced: after a kill or a power loss `path` holds the old content or the new, never half.
    With `keep_previous` (a path), the content being replaced is kept there first (a hard link), so
    a reader can fall back to it if the new one is ever found unreadable."""
    folder = os.path.dirname(path)
    os.makedirs(folder, exist_ok=True)
    tmp = path + ".tmp"
    write(tmp)
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    if keep_previous and os.path.exists(path):
        previous_tmp = keep_previous + ".tmp"
        if os.path.exists(previous_tmp):
            os.remove(previous_tmp)
        try:
            os.link(path, previous_tmp)
        except OSError:  # a file system without hard links
            shutil.copyfile(path, previous_tmp)
        os.replace(previous_tmp, keep_previous)
    os.replace(tmp, path)  # path always exists: the old content, then the new
    fsync_folder(folder)


def repoint(text, old, new):
    """`text` with the folder path `old` replaced by `new` where it stands as a whole path: at a
    path's start (after a quote, a space, `file://`, ...) and ending the string or followed by a
    separator, so /data/run is re-pointed in /data/run/x but not in /data/run2 or /old/data/run."""
    old = old.rstrip(os.sep)
    return re.sub(
        rf"(?<![\w.~-]){re.escape(old)}(?=$|[{re.escape(os.sep)}\"'\s,;:)\]}}])", lambda m: new.rstrip(os.sep), text
    )


def repoint_sqlite(path, old, new):
    """Every text value of the SQLite database at `path` with the folder `old` re-pointed to `new`
    (`repoint`): a local tracker store that keeps absolute paths. A value stored as bytes (JSON a
    client wrote as a blob) stays bytes."""
    import sqlite3

    def repointed(value):
        if isinstance(value, bytes):
            return repoint(value.decode(), old, new).encode()
        return repoint(value, old, new)

    with sqlite3.connect(path) as db:
        for (table,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall():
            for column in db.execute(f'PRAGMA table_info("{table}")').fetchall():
                if "CHAR" in column[2].upper() or "TEXT" in column[2].upper():
                    rows = db.execute(
                        f'SELECT rowid, "{column[1]}" FROM "{table}" WHERE CAST("{column[1]}" AS TEXT) LIKE ?',
                        (f"%{old}%",),
                    ).fetchall()
                    db.executemany(
                        f'UPDATE "{table}" SET "{column[1]}" = ? WHERE rowid = ?',
                        [(repointed(value), rowid) for rowid, value in rows],
                    )
