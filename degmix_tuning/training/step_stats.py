"""Step time and step memory of a training run, measured where they happen: around each optimizer step.

Why here and not only in a benchmark: a comparison of tuning methods needs the cost of the exact runs it compares,
under their own data, batch and schedule, so every training run records in `summary.json`:

    step_time_median_s   median wall time of an optimizer step (forward, backward, optimizer, zero_grad; data
                         loading, evaluation and checkpoints between steps are not included)
    step_memory_mb       the largest extra memory one step needed, in MiB (2**20 bytes), see `StepMemory`
    step_memory_kind     what that number is, or why there is none
    step_time_steps, step_memory_steps   how many steps each number covers

The first `WARMUP_STEPS` steps of a process (allocator growth, lazy initialisation) count for neither. On CUDA every
later step's memory is measured (the allocator's counters live on the host: no sync), and one step in
`CUDA_TIME_EVERY` is timed: timing waits for the GPU before and after the step (`cuda.synchronize`), which the other
steps must not do, so that the host keeps queueing work ahead of the GPU. On CPU, measuring memory needs glibc to
hand freed memory back first (`malloc_trim`), which makes that step slower, so later steps alternate: time, memory,
time, memory, ...
A resumed run measures the steps of its last process only (earlier timings are not in the checkpoint); a
multi-process job records rank 0's steps (it writes summary.json). Nothing is estimated: a quantity that was not
measured (no CUDA and no Linux /proc, or too few steps) is None.
"""

from __future__ import annotations

import ctypes
import os
import statistics
import sys
import time

WARMUP_STEPS = 2
CUDA_TIME_EVERY = 10  # on CUDA, steps WARMUP_STEPS, +10, +20, ... are timed (each one pays two synchronize)
MMAP_THRESHOLD = 65536  # bytes: benchmarks/train_step.py pins glibc's mmap threshold here (MALLOC_MMAP_THRESHOLD_)


def proc_status_kb(key: str) -> int | None:
    """A `kB` field of /proc/self/status (VmRSS, VmHWM), or None off Linux."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _malloc_trim():
    """glibc's malloc_trim, or None (another C library, another OS)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None


class StepMemory:
    """Peak extra memory of one step: the CUDA allocator's peak above what it held before the step, or, on Linux CPU,
    the peak resident set size during the step (VmHWM, reset through /proc/self/clear_refs) minus the RSS before it.

    It covers activations, gradients and temporaries of the step, not weights or optimizer state held between steps.
    glibc keeps freed memory and reuses it without the RSS growing, so a CPU reading is only meaningful when freed
    memory left the RSS first: `trim=True` calls malloc_trim before each step (the step then pays for faulting its
    pages in again); benchmarks/train_step.py instead pins the mmap threshold for the whole process.
    `available` is False where neither CUDA nor a writable clear_refs exists: then `stop` returns None.
    """

    def __init__(self, device: str, trim: bool = False):
        import torch

        self.torch = torch
        self.device = device
        self._trim = _malloc_trim() if trim and device != "cuda" else None
        if device == "cuda":
            self.available = True
            self.kind = "cuda max_memory_allocated - memory_allocated before the step"
        else:
            self.available = proc_status_kb("VmHWM") is not None and os.access("/proc/self/clear_refs", os.W_OK)
            self.kind = ("RSS peak (VmHWM) - RSS before the step" if self.available else
                         "not measured: needs CUDA or Linux with a writable /proc/self/clear_refs")
            if self.available and trim:
                self.kind += (", after malloc_trim" if self._trim else
                              ", glibc's malloc_trim missing: freed memory may be reused unseen, so it can read low")

    def start(self) -> int:
        if self.device == "cuda":
            self.torch.cuda.reset_peak_memory_stats()
            return self.torch.cuda.memory_allocated()
        if not self.available:
            return 0
        if self._trim is not None:
            self._trim(0)
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM to the current RSS
        return (proc_status_kb("VmRSS") or 0) * 1024

    def stop(self, before: int) -> int | None:
        if self.device == "cuda":
            return self.torch.cuda.max_memory_allocated() - before
        if not self.available:
            return None
        return (proc_status_kb("VmHWM") or 0) * 1024 - before


class StepStats:
    """Times and measures optimizer steps: `begin()` before each micro-batch, `end(step_done)` after it.

    With gradient accumulation a step spans several micro-batches: their compute times add up and the memory peak
    covers all of them (loading the next micro-batch is left out of the time).
    """

    def __init__(self, device: str, warmup: int = WARMUP_STEPS):
        self.warmup = warmup
        self.memory = StepMemory(device, trim=True)
        self._cuda = device == "cuda"  # measuring CUDA memory costs nothing; timing costs two syncs
        self._sync = self.memory.torch.cuda.synchronize if self._cuda else (lambda: None)
        self.steps = 0
        self.times: list[float] = []
        self.peaks: list[int] = []
        self._open = False
        self._measure_memory = self._timed = False
        self._elapsed = self._t0 = 0.0
        self._before = 0

    def _memory_turn(self) -> bool:
        after_warmup = self.steps - self.warmup
        if after_warmup < 0 or not self.memory.available:
            return False
        return self._cuda or after_warmup % 2 == 1

    def _time_turn(self) -> bool:
        after_warmup = self.steps - self.warmup
        if after_warmup < 0:
            return False
        return after_warmup % CUDA_TIME_EVERY == 0 if self._cuda else not self._measure_memory

    def begin(self) -> None:
        if not self._open:
            self._open, self._elapsed = True, 0.0
            self._measure_memory = self._memory_turn()
            self._timed = self._time_turn()
            if self._measure_memory:
                self._before = self.memory.start()
        if self._timed:
            self._sync()
        self._t0 = time.perf_counter()

    def end(self, step_done: bool) -> None:
        if self._timed:
            self._sync()
        self._elapsed += time.perf_counter() - self._t0
        if not step_done:
            return
        if self._measure_memory:
            peak = self.memory.stop(self._before)
            if peak is not None:
                self.peaks.append(peak)
        if self._timed:
            self.times.append(self._elapsed)
        self.steps += 1
        self._open = False

    def summary(self) -> dict:
        """The summary.json fields."""
        return {
            "step_time_median_s": statistics.median(self.times) if self.times else None,
            "step_memory_mb": max(self.peaks) / 2**20 if self.peaks else None,
            "step_memory_kind": self.memory.kind,
            "step_time_steps": len(self.times),
            "step_memory_steps": len(self.peaks),
        }


__all__ = ["CUDA_TIME_EVERY", "MMAP_THRESHOLD", "StepMemory", "StepStats", "WARMUP_STEPS", "proc_status_kb"]
