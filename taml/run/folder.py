"""A run folder that cannot be silently corrupted: checked before any work, locked while a
run writes to it, and written file by file atomically.

Used by every mode that writes a run folder (meta_train/meta_test, and the biased-data
modes)::

    savedir = expand_savedir(cfg.savedir, "--savedir")   # '~' expanded, '' refused
    check_writable(savedir, "--savedir")                 # before data loading or training
    with RunLock(savedir):                               # a second run on it stops here
        write_json_atomic(savedir / "config.json", cfg.to_dict())

Every failure is a :class:`RunDirError` whose message is one line naming the flag to change;
command lines print it as ``error: <message>`` and exit with status 2.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import shutil
import tempfile
from pathlib import Path

from taml.run.errors import Refusal

LOCK_NAME = ".lock"
# kernel views: creating files there fails in odd ways (ENOENT, EPERM) or not at all
VIRTUAL_ROOTS = (Path("/proc"), Path("/sys"), Path("/dev"))


class RunDirError(Refusal):
    """A run folder that cannot be used; the message is one line naming the fix."""


def expand_savedir(text: str | os.PathLike | None, flag_name: str = "--savedir") -> Path:
    """``~`` and ``~user`` expanded (``--savedir=~/x`` gets no expansion from the shell, and
    would otherwise make a literal ``./~``); an empty value is refused rather than read as
    the current folder or the default."""
    if text is None or not str(text).strip():
        raise RunDirError(f"{flag_name} is empty; give a folder, or leave the flag out for "
                          "the default")
    return Path(os.path.expanduser(str(text)))


def _first_existing(path: Path) -> Path:
    """The deepest existing ancestor of ``path`` (``path`` itself when it exists)."""
    probe = path
    while not os.path.lexists(probe):
        if probe.parent == probe:
            break
        probe = probe.parent
    return probe


def check_writable(path: str | os.PathLike, flag_name: str = "--savedir") -> None:
    """Raises :class:`RunDirError` unless ``path`` is a folder this process can create
    files in, or could create as one. Nothing is left behind: a folder that does not exist
    yet is not created (a run that fails later must not leave an empty folder), the probe
    file is written in its deepest existing ancestor and removed at once.

    A real write is the test, not ``os.access``: it also catches read-only mounts, /proc,
    and a root user's writes to a folder of mode 0555 (which succeed, so are allowed)."""
    path = Path(os.path.abspath(os.path.expanduser(str(path))))
    for root in VIRTUAL_ROOTS:
        if path == root or root in path.parents:
            raise RunDirError(f"{flag_name} {path} is under {root}, a kernel view where run "
                              f"files cannot be kept; choose a folder on a disk")
    existing = _first_existing(path)
    if existing.exists() and not existing.is_dir():
        where = "is a file" if existing == path else f"is under the file {existing}"
        raise RunDirError(f"{flag_name} {path} {where}; choose a folder (or remove the file)")
    if not existing.exists():  # a dangling symlink on the way
        raise RunDirError(f"{flag_name} {path}: {existing} is a broken symbolic link; "
                          "fix the link or choose another folder")
    try:
        fd, probe = tempfile.mkstemp(prefix=".taml-write-test.", dir=existing)
    except OSError as error:
        reason = os.strerror(error.errno) if error.errno else str(error)
        if error.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
            reason = "read-only" if error.errno == errno.EROFS else "not writable by you"
        raise RunDirError(f"{flag_name} {path}: cannot create files in {existing} "
                          f"({reason}); choose a writable folder") from None
    os.close(fd)
    os.unlink(probe)


def check_free_space(path: str | os.PathLike, needed_bytes: int,
                     flag_name: str = "--savedir") -> None:
    """Raises :class:`RunDirError` when the disk holding ``path`` has less than
    ``needed_bytes`` free (a full disk otherwise shows up as a torch or numpy write error
    long after the work was done)."""
    existing = _first_existing(Path(os.path.abspath(str(path))))
    free = shutil.disk_usage(existing).free
    if free < needed_bytes:
        raise RunDirError(f"{flag_name} {path}: only {free / 2**20:.1f} MiB free on its "
                          f"disk, {needed_bytes / 2**20:.1f} MiB needed; free space or choose "
                          "another folder")


def disk_full_message(error: OSError, path: str | os.PathLike, flag_name: str) -> str:
    """One line for a failed write (full disk, quota, read-only remount)."""
    reason = os.strerror(error.errno) if error.errno else str(error)
    return (f"cannot write {path} ({reason}); free space on that disk or choose another "
            f"{flag_name}")


class RunLock:
    """An exclusive lock on a run folder for as long as a run writes to it.

    ``fcntl.flock`` on ``<folder>/.lock``: the kernel drops it when the process ends, so a
    killed run never leaves a stale lock behind; the file holds the owner's pid, which a
    second run names in its message. The folder is created on entry; when the block fails
    and the folder was created here and holds nothing but the lock, it is removed again, so
    a failed run leaves no empty folder."""

    def __init__(self, folder: str | os.PathLike, flag_name: str = "--savedir"):
        self.folder = Path(folder)
        self.flag_name = flag_name
        self.handle = None
        self.created = False

    def __enter__(self) -> RunLock:
        self.created = not self.folder.exists()
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            handle = open(self.folder / LOCK_NAME, "a+")
        except OSError as error:
            raise RunDirError(disk_full_message(error, self.folder, self.flag_name)) from None
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.seek(0)
            owner = handle.read().strip() or "unknown"
            handle.close()
            raise RunDirError(f"{self.flag_name} {self.folder} is in use by another run "
                              f"(process {owner}); wait for it to finish, stop it, or choose "
                              f"another {self.flag_name}") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self.handle = handle
        return self

    def __exit__(self, kind, value, traceback) -> None:
        # the lock file stays (unlinking it would let a third run lock a fresh inode while a
        # second still waits on the old one); only its content and the lock go
        self.handle.seek(0)
        self.handle.truncate()
        self.handle.close()  # closing the last descriptor releases the flock
        self.handle = None
        if kind is not None and self.created:
            with contextlib.suppress(OSError):  # the folder may be gone or unreadable
                if [p.name for p in self.folder.iterdir()] == [LOCK_NAME]:
                    (self.folder / LOCK_NAME).unlink()
                    self.folder.rmdir()


@contextlib.contextmanager
def atomic_writer(path: str | os.PathLike, mode: int = 0o644):
    """A binary handle on a temporary file beside ``path``; on a clean exit it is fsynced
    and renamed onto ``path``, on an error removed: a reader, a kill or a full disk sees the
    old file or the new one, never a part. ``mode`` (less the umask) because ``mkstemp``
    makes 0600 files, which other users of a shared results or data folder cannot read."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode & ~current_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    with atomic_writer(path) as handle:
        handle.write(data)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: str | os.PathLike, obj) -> None:
    """``obj`` as indented JSON; NaN and infinity are refused (they are not JSON)."""
    write_text_atomic(path, json.dumps(obj, indent=2, allow_nan=False) + "\n")


def current_umask() -> int:
    """The process's umask (read by setting it and setting it back)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask
