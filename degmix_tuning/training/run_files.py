"""Every write into a run folder goes through here, so that a kill at any moment leaves each file whole.

Two kinds of files:

- rewritten files (config.json, summary.json, tracker_config.json, the checkpoint's JSON files): written to
  `<name>.tmp`, flushed and fsynced, then renamed over the old file. A kill leaves either the old or the new file,
  never an empty or half one (at worst a stray `.tmp`, which the next write replaces).
- append-only logs (metrics.jsonl, log.csv, history.jsonl): each record is one `write` of whole lines, flushed and
  fsynced; a file is never truncated or rewritten in place. When a resume has to drop rows logged after its
  checkpoint, `rewrite_lines` writes the kept rows as a new file and renames it over the old one.

A failed write (full disk, read-only or unwritable folder) removes its temporary file and is re-raised as an
`OSError` naming the file and the cause (`write_errors`), which `errors.py` turns into one line.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
from pathlib import Path

TMP_SUFFIX = ".tmp"


def _fsync_dir(folder: Path) -> None:
    """Make a rename durable (the directory entry); silently skipped where directories cannot be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def fsync_file(path: str | Path) -> None:
    """Flush a file a library wrote (safetensors, torch.save) to the disk before it is renamed into place."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

def atomic_write_text(path: str | Path, text: str) -> Path:
    """Replace `path` with `text` atomically (temp file + fsync + rename)."""
    return atomic_write_bytes(path, text.encode())


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    path = Path(path)
    tmp = path.with_name(path.name + TMP_SUFFIX)
    with write_errors(path, cleanup=tmp):
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    _fsync_dir(path.parent)
    return path


def append_text(path: str | Path, text: str, header: str = "") -> None:
    """Append whole lines in one write, then flush + fsync. `header` is written first when the file is new (or was
    left empty by a kill between its creation and its first write)."""
    path = Path(path)
    with write_errors(path):
        with open(path, "ab+") as f:
            end = f.seek(0, os.SEEK_END)
            if end == 0:
                text = header + text
            else:  # a line cut short by a kill stays a line of its own: the new records remain whole lines
                f.seek(end - 1)
                if f.read(1) != b"\n":
                    text = "\n" + text
            f.write(text.encode())
            f.flush()
            os.fsync(f.fileno())


def rewrite_lines(path: str | Path, lines: list[str]) -> None:
    """Replace a log with `lines` as a new file renamed over it (never a truncation of the old one)."""
    atomic_write_text(path, "".join(line + "\n" for line in lines))


def whole_lines(path: str | Path) -> list[str]:
    """The complete lines of a log: a last line without its newline (a write cut short by a kill) is left out."""
    text = Path(path).read_text(errors="replace")
    lines = text.split("\n")
    return [line for line in lines[:-1] if line.strip()]  # the part after the last newline is incomplete


def remove_tree(path: str | Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


# --- failed writes -> OSError with an errno and the file name ---

_OS_CODE = re.compile(r"code: (\d+)")  # safetensors: "IoError(Os { code: 28, kind: StorageFull, ... })"
_TORCH_WRITE = ("inline_container", "PytorchStreamWriter", "file write failed")  # and not its reader's errors


def write_failure(exc: BaseException, path: str | Path) -> OSError | None:
    """`exc` as an OSError naming `path` when it is a failed write (full disk, read-only or unwritable folder), in
    any of the forms the writers raise: OSError with an errno, safetensors' SafetensorError carrying the OS code,
    torch.save's RuntimeError from its C++ stream writer (which loses the errno: the folder is probed instead)."""
    if isinstance(exc, OSError) and exc.errno is not None:
        if isinstance(exc, (FileNotFoundError, NotADirectoryError, IsADirectoryError)):
            return None  # not a write failure of the disk: reported as they are
        return exc if exc.filename else OSError(exc.errno, exc.strerror or os.strerror(exc.errno), str(path))
    text = str(exc)
    if type(exc).__name__ == "SafetensorError":
        m = _OS_CODE.search(text)
        if m:
            code = int(m.group(1))
            return OSError(code, os.strerror(code), str(path))
        return None
    if isinstance(exc, RuntimeError) and any(s in text for s in _TORCH_WRITE) and "PytorchStreamReader" not in text:
        code = _probe_errno(Path(path))
        first = (text.strip().splitlines() or [""])[0][:120]
        return OSError(code, f"{os.strerror(code)} (torch: {first})", str(path))
    return None


def _probe_errno(path: Path) -> int:
    """Why a write under `path` failed when the writer did not say: read-only, full, not writable, else EIO."""
    folder = path if path.is_dir() else path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        st = os.statvfs(folder)
        if st.f_flag & os.ST_RDONLY:
            return errno.EROFS
        if st.f_bavail * st.f_frsize < 1 << 20:  # under 1 MiB left
            return errno.ENOSPC
    except (OSError, AttributeError):
        pass
    if not os.access(folder, os.W_OK):
        return errno.EACCES
    return errno.EIO


@contextlib.contextmanager
def write_errors(path: str | Path, cleanup: str | Path | None = None):
    """Around a write of `path`: on failure remove `cleanup` (its temporary file or folder) and re-raise a failed
    write as an OSError naming `path` (see `write_failure`); any other error propagates unchanged."""
    try:
        yield
    except BaseException as exc:
        if cleanup is not None:
            cleanup = Path(cleanup)
            if cleanup.is_dir():
                remove_tree(cleanup)
            else:
                with contextlib.suppress(OSError):
                    cleanup.unlink()
        failure = write_failure(exc, path) if isinstance(exc, Exception) else None
        if failure is None or failure is exc:
            raise
        raise failure from exc


__all__ = ["TMP_SUFFIX", "append_text", "atomic_write_bytes", "atomic_write_text", "fsync_file", "remove_tree",
           "rewrite_lines", "whole_lines", "write_errors", "write_failure"]
