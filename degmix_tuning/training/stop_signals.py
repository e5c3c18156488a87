"""SIGTERM and SIGINT (Ctrl-C) stop a training run cleanly instead of killing it between checkpoints.

While a run trains, the first signal only sets a flag: the loop finishes the optimizer step it is in, writes a
checkpoint and the adapter of that step, writes summary.json, releases the run folder and raises
`TrainingInterrupted`, which the entry points turn into one line and exit code 143 (SIGTERM) or 130 (SIGINT).
A second signal stops at once (the last checkpoint stays the resumable one). Outside the loop (building the model,
loading data) the first signal stops at once: there is no step to save yet.

Job schedulers (Slurm, Kubernetes) send SIGTERM some seconds before SIGKILL: the checkpoint is written in that
grace period. In a multi-process job the processes agree on the step to stop at on the next logging step
(`train.log_every`), the one step that already waits for every process.
"""

from __future__ import annotations

import signal
import threading

SIGNAL_NAMES = {signal.SIGTERM: "SIGTERM", signal.SIGINT: "SIGINT (Ctrl-C)"}


class TrainingInterrupted(Exception):
    """A run stopped by SIGTERM/SIGINT; the message names the step and the checkpoint to resume from."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + int(self.signum)  # the shell's convention: 143 for SIGTERM, 130 for SIGINT


class StopSignals:
    """Installs the handlers for the duration of a run (main thread only; elsewhere it does nothing)."""

    def __init__(self):
        self.requested: int | None = None  # the first signal received
        self.in_loop = False  # inside the training loop: a signal is a request, honoured after the step
        self._previous: dict[int, object] = {}

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is threading.main_thread():
            for sig in SIGNAL_NAMES:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> bool:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()
        return False

    def _handle(self, signum, frame) -> None:
        name = SIGNAL_NAMES.get(signum, str(signum))
        if self.in_loop and self.requested is None:
            self.requested = signum
            print(f"[degmix-tuning] {name} received: finishing this step, then writing a checkpoint "
                  "(send it again to stop at once)", flush=True)
            return
        raise TrainingInterrupted(f"stopped at once by {name}; nothing after the last checkpoint was saved: "
                                  "resume with --resume latest", signum)

    def stop_message(self, step: int, checkpoint) -> TrainingInterrupted:
        name = SIGNAL_NAMES.get(self.requested, str(self.requested))
        return TrainingInterrupted(f"stopped by {name} at step {step}; checkpoint {checkpoint} and the adapter of "
                                   "this step are written: continue with --resume latest", self.requested)


__all__ = ["SIGNAL_NAMES", "StopSignals", "TrainingInterrupted"]
