"""One table from exceptions to user-facing lines and exit codes, used by every entry point (CLI and recipes).

Errors a user can cause (a missing or corrupt file, an unknown name, a bad value, a busy or unwritable run folder,
a full disk, a diverged run) become one line naming the cause and the fix, and a documented exit code; anything
else is a bug and keeps its traceback. `--debug` shows the traceback of user errors too.

Exit codes: 0 success; 1 a `degmix-tuning` command failed on user input; 2 a training recipe (`recipes/tune_*.py`,
`degmix-tuning train`) failed on user input (config, data, run folder, disk); 3 training diverged (non-finite
loss); 130 interrupted (Ctrl-C, SIGINT); 143 stopped by SIGTERM (a training run first writes a checkpoint and its
adapter, see training/stop_signals.py).
"""

from __future__ import annotations

import errno
import re

EXIT_OK, EXIT_COMMAND, EXIT_RECIPE, EXIT_DIVERGED, EXIT_INTERRUPTED, EXIT_TERMINATED = 0, 1, 2, 3, 130, 143

# DataLoader workers re-raise as "Caught X in DataLoader worker process N.\nOriginal Traceback ...\nX: message"
_WORKER_LAST_LINE = re.compile(r"^(?:[\w.]+\.)?(\w+(?:Error|Exception|Diverged|Busy)): (.*)$")


def _strip_worker_traceback(text: str) -> str:
    """The original one-line message of an exception re-raised from a DataLoader worker (or `text` unchanged)."""
    if "Original Traceback" not in text:
        return text
    lines = [line for line in text.strip().splitlines() if line.strip()]
    m = _WORKER_LAST_LINE.match(lines[-1].strip()) if lines else None
    return m.group(2) if m else (lines[-1].strip() if lines else text)


def _disk_message(exc: BaseException) -> str | None:
    """A failed write (full disk, quota, read-only file system, no permission, I/O error) in any form the writers
    raise it (OSError, safetensors' SafetensorError, torch.save's RuntimeError: training/run_files.write_failure)."""
    from .training.run_files import write_failure

    failure = write_failure(exc, "") if not isinstance(exc, PermissionError) else None
    if failure is None:
        return None
    where = f" writing {failure.filename}" if failure.filename else ""
    if failure.errno in (errno.ENOSPC, errno.EDQUOT):
        what = "no space left on the device" if failure.errno == errno.ENOSPC else "disk quota exceeded"
        return f"{what}{where}; free some space or choose another --output-dir (files written before are intact)"
    if failure.errno == errno.EROFS:
        return f"read-only file system{where}; choose a writable --output-dir"
    if failure.errno in (errno.EACCES, errno.EPERM):
        return f"permission denied{where}; choose a folder you can write (e.g. --output-dir)"
    if failure.errno in (errno.EIO, errno.EFBIG):  # may be a read too: "on", not "writing"
        on = f" on {failure.filename}" if failure.filename else ""
        return (f"the file system failed{on} ({failure.strerror}); check the free space and that the folder is "
                "writable, or choose another --output-dir")
    return None


def user_message(exc: BaseException) -> str | None:
    """One line for an error the user can fix, or None for a bug (which keeps its traceback)."""
    from .training.stop_signals import TrainingInterrupted

    if isinstance(exc, TrainingInterrupted):
        return str(exc)
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted (Ctrl-C)"
    if isinstance(exc, PermissionError):
        return f"permission denied: {exc.filename or exc}; choose a folder you can write (e.g. --output-dir)"
    disk = _disk_message(exc)
    if disk is not None:
        return disk
    if isinstance(exc, (NotADirectoryError, IsADirectoryError)):
        what = "a file stands where a folder is needed" if isinstance(exc, NotADirectoryError) else (
            "a folder stands where a file is needed")
        return f"{exc.filename or exc}: {what}; choose another path"
    if isinstance(exc, KeyError):
        return _strip_worker_traceback(str(exc.args[0]) if exc.args else "unknown name")
    if isinstance(exc, (FileNotFoundError, FileExistsError, ValueError)):
        return _strip_worker_traceback(str(exc))
    if isinstance(exc, RuntimeError) and "Original Traceback" in str(exc) and "DataLoader worker" in str(exc):
        return _strip_worker_traceback(str(exc))  # a worker error whose class could not be rebuilt
    return None


def exit_code(exc: BaseException, context: str) -> int | None:
    """The exit code for a user error in `context` ("command" or "recipe"), or None for a bug."""
    from .training.engine import TrainingDiverged

    from .training.stop_signals import TrainingInterrupted

    if isinstance(exc, TrainingDiverged):
        return EXIT_DIVERGED
    if isinstance(exc, TrainingInterrupted):
        return exc.exit_code
    if isinstance(exc, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    if isinstance(exc, Exception) and user_message(exc) is None:
        return None
    return EXIT_COMMAND if context == "command" else EXIT_RECIPE


__all__ = ["EXIT_COMMAND", "EXIT_DIVERGED", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_RECIPE", "EXIT_TERMINATED",
           "exit_code", "user_message"]
