"""One writer per run directory: a lock file that a second ``train``/``resume`` is refused by.

Why: two processes training into the same directory both succeed and interleave their files
(``experiment.yaml`` from one, checkpoints from the other, lost log lines), and nothing says so.
The lock is ``run_dir/.jepalab.lock``, holding the owner's pid, host and command, so that the
refusal can say who holds it.

How a lock from a killed process is recovered: where the operating system offers advisory file
locks (``fcntl.flock`` on Linux and macOS), the lock *is* the kernel lock on that file, and the
kernel drops it when its process dies, however it dies (SIGKILL included); a leftover file
without a kernel lock is simply taken over. Where it does not (no ``fcntl``, or a network file
system that answers ENOLCK), the file's existence is the lock and it is stale when its process
is gone: same host and no process with that pid.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

from jepalab.errors import RunBusyError

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]

LOCK_FILE = ".jepalab.lock"
#: an unreadable lock file (its writer died between creating and filling it) is stale after this
UNREADABLE_STALE_S = 10.0
_BUSY_ERRNOS = {errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES}


def _holder_text(holder: dict[str, Any] | None) -> str:
    if not holder:
        return "an unknown process"
    what = f"`jepalab {holder['command']}`" if holder.get("command") else "a jepalab process"
    return f"{what} (pid {holder.get('pid', '?')} on {holder.get('host', '?')})"


def read_holder(path: str | os.PathLike) -> dict[str, Any] | None:
    """The ``{"pid", "host", "command", "time"}`` a lock file records, or ``None`` if unreadable."""
    try:
        rec = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return rec if isinstance(rec, dict) else None


def _pid_alive(pid: int) -> bool | None:
    """Whether process ``pid`` exists on this host (``None``: cannot tell on this platform)."""
    if sys.platform == "win32":  # os.kill(pid, 0) would terminate the process there
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


class RunLock:
    """Exclusive lock on a run directory, held from :meth:`acquire` until :meth:`release`.

    ``command`` (e.g. ``"train"``) is recorded for the message another process gets. Usable as a
    context manager. Raises :class:`jepalab.errors.RunBusyError` when another live process holds it.
    """

    def __init__(self, run_dir: str | os.PathLike, command: str = "train") -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_FILE
        self.command = command
        self._fd: int | None = None
        self._kernel = False
        self._created = False
        self._me = {"pid": os.getpid(), "host": socket.gethostname(), "command": command, "time": time.time()}

    # -- public ------------------------------------------------------------------------------------
    def acquire(self) -> RunLock:
        self._created = not self.run_dir.exists()  # removed again on release if left empty
        self.run_dir.mkdir(parents=True, exist_ok=True)
        for _ in range(5):  # a lost race with another process that just released or recovered
            if fcntl is not None:
                got = self._try_kernel_lock()
                if got is not None:
                    if got:
                        return self
                    continue
            if self._try_pid_file():
                return self
        raise self._busy(read_holder(self.path))

    def release(self) -> None:
        """Give the lock up (removes the lock file if it is still this process's)."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            if self._kernel:
                if self._same_file(fd):  # unlink while still locked, so no one locks an orphan
                    self.path.unlink()
            elif (read_holder(self.path) or {}).get("pid") == self._me["pid"]:
                self.path.unlink()
        except FileNotFoundError:
            pass
        finally:
            os.close(fd)
        if self._created:  # a command refused before writing anything leaves no empty directory
            try:
                self.run_dir.rmdir()
            except OSError:
                pass

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()

    # -- kernel lock (POSIX) -----------------------------------------------------------------------
    def _try_kernel_lock(self) -> bool | None:
        """True: locked. False: lost a race, retry. None: no kernel locks here, use the pid file.
        Raises RunBusyError when a live process holds the lock."""
        existed = self.path.exists()
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(fd)
            if e.errno in _BUSY_ERRNOS:
                raise self._busy(self._wait_for_holder()) from None
            if not existed:  # leave no empty file that the pid-file scheme would take for a lock
                self.path.unlink(missing_ok=True)
            return None  # e.g. ENOLCK / EOPNOTSUPP on a network file system
        if not self._same_file(fd):  # the holder released (unlinked) between our open and flock
            os.close(fd)
            return False
        self._fd, self._kernel = fd, True
        self._write_me(fd)
        return True

    def _wait_for_holder(self, timeout: float = 2.0) -> dict[str, Any] | None:
        """The holder's record; the winner of a race writes it just after taking the lock, so an
        empty file is read again for up to ``timeout`` s before the holder is called unknown."""
        deadline = time.monotonic() + timeout
        while True:
            holder = read_holder(self.path)
            if holder is not None or time.monotonic() > deadline:
                return holder
            time.sleep(0.02)

    def _same_file(self, fd: int) -> bool:
        try:
            return os.fstat(fd).st_ino == os.stat(self.path).st_ino
        except FileNotFoundError:
            return False

    # -- pid file (no kernel locks) ----------------------------------------------------------------
    def _try_pid_file(self) -> bool:
        """True: created the lock file. False: removed a stale one, retry. Raises RunBusyError."""
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            holder = read_holder(self.path)
            if not self._stale(holder):
                raise self._busy(holder) from None
            # move it aside under a unique name first: only one of several recovering processes
            # wins the rename, and a fresh lock created meanwhile is never the one removed
            aside = self.path.with_name(f"{LOCK_FILE}.stale-{os.getpid()}")
            try:
                os.replace(self.path, aside)
            except FileNotFoundError:
                return False
            if read_holder(aside) != holder:  # someone replaced it between our read and rename
                os.replace(aside, self.path)
                raise self._busy(read_holder(self.path)) from None
            aside.unlink(missing_ok=True)
            return False
        self._fd, self._kernel = fd, False
        self._write_me(fd)
        return True

    def _stale(self, holder: dict[str, Any] | None) -> bool:
        if holder is None:
            try:
                return time.time() - self.path.stat().st_mtime > UNREADABLE_STALE_S
            except FileNotFoundError:
                return True
        if holder.get("host") != self._me["host"] or not isinstance(holder.get("pid"), int):
            return False  # another machine's process: cannot tell whether it lives
        return _pid_alive(holder["pid"]) is False

    # -- helpers -----------------------------------------------------------------------------------
    def _write_me(self, fd: int) -> None:
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, json.dumps(self._me).encode())
        os.fsync(fd)

    def _busy(self, holder: dict[str, Any] | None) -> RunBusyError:
        return RunBusyError(
            f"{self.run_dir} is in use by {_holder_text(holder)}: wait until it finishes or stop it, or "
            f"write to another run directory (--run-dir). If no such process is running, delete {self.path}."
        )
