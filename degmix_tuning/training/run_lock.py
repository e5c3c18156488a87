"""One training process per run folder: an advisory lock held for the whole run.

Two runs (or two `--resume`s) on one folder would delete each other's temporary checkpoints and interleave their
`metrics.jsonl` rows. The lock is `flock` on `<run>/.lock`: the kernel drops it when the process ends, however it
ends, so a killed run never leaves a stale lock behind. Only the main process of a multi-process job takes it.
The holder removes `.lock` when it is done (a finished run folder holds no lock file); a process that locked a
file which was removed meanwhile retries on the new one, so two processes never both hold the folder.
"""

from __future__ import annotations

import os
from pathlib import Path

try:
    import fcntl
except ImportError:  # not on POSIX: no lock (documented), nothing else changes
    fcntl = None

from ..runtime import is_main_launch_process

LOCK_NAME = ".lock"


class RunFolderBusy(FileExistsError):
    """Another live process holds the run folder."""


class RunFolderLock:
    def __init__(self, run_dir: str | Path, enabled: bool = True):
        self.path = Path(run_dir) / LOCK_NAME
        self.enabled = enabled and fcntl is not None
        self._fd: int | None = None

    def __enter__(self) -> "RunFolderLock":
        if not self.enabled:
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
                os.close(fd)
                raise RunFolderBusy(
                    f"run folder {str(self.path.parent)!r} is in use by another run (pid {holder}); wait for it to "
                    "finish or choose another --output-dir"
                ) from None
            try:
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)  # the holder removed the file after we opened it: lock the current one
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return self

    def __exit__(self, *exc) -> bool:
        if self._fd is not None:
            try:
                self.path.unlink()  # still locked: a waiting process re-checks the file after locking it
            except OSError:
                pass
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
        return False


__all__ = ["LOCK_NAME", "RunFolderBusy", "RunFolderLock", "is_main_launch_process"]
