"""Step time and step memory of a training run, measured where they happen: around each optimizer step.

Why here and not in a benchmark: a comparison of tuning methods needs the cost of the exact runs it compares, under
their own data, batch and schedule, so every training run records them in `summary.json`:

    step_time_median_s   median wall time of an optimizer step (forward, backward, optimizer, zero_grad; the data
                         loading, evaluation and checkpoints between steps are not included), after `WARMUP_STEPS`
    step_memory_mb       the largest extra memory one step needed (MB = 2**20 bytes), see `StepMemory`
    step_memory_kind     what that number is, or why there is none
    step_stats_steps     how many steps the two numbers cover (after the warm-up steps dropped)

A resumed run measures the steps of its last process only (the earlier process's timings are not in the
checkpoint). Nothing is estimated: where a quantity cannot be measured it is None, with the reason in the kind.
"""

from __future__ import annotations

import ctypes
import os
import statistics
import sys
import time

WARMUP_STEPS = 2  # the first steps of a process pay for allocator growth, lazy inits and caches
MMAP_THRESHOLD = 65536  # bytes; glibc serves larger blocks with mmap, so freed tensors leave the RSS at once
_M_MMAP_THRESHOLD = -3  # mallopt parameter number (glibc malloc.h)
_mmap_threshold_pinned = os.environ.get("MALLOC_MMAP_THRESHOLD_") == str(MMAP_THRESHOLD)


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


def pin_mmap_threshold() -> bool:
    """Make glibc return freed tensors to the OS at once (as `MALLOC_MMAP_THRESHOLD_=65536` would), for this process.

    Without it glibc keeps freed heap blocks and grows its mmap threshold, so a step reuses memory already counted in
    the RSS before the step and the CPU step memory reads low. Returns whether the threshold is pinned now.
    """
    global _mmap_threshold_pinned
    if _mmap_threshold_pinned:
        return True
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        _mmap_threshold_pinned = bool(libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD))
    except (OSError, AttributeError):  # not glibc (e.g. musl): leave the allocator alone
        return False
    return _mmap_threshold_pinned


class StepMemory:
    """Peak extra memory of one step: CUDA allocator peak above the memory held before the step, or, on Linux CPU,
    the peak resident set size during the step (VmHWM, reset through /proc/self/clear_refs) minus the RSS before it.

    It covers activations, gradients and temporaries of the step, not weights or optimizer state held between steps.
    `available` is False where neither works (no CUDA, no writable clear_refs): then `stop` returns None.
    """

    def __init__(self, device: str):
        import torch

        self.torch = torch
        self.device = device
        if device == "cuda":
            self.kind = "cuda max_memory_allocated - memory_allocated before the step"
            self.available = True
        else:
            self.available = (proc_status_kb("VmHWM") is not None and os.access("/proc/self/clear_refs", os.W_OK))
            self.kind = ("RSS peak (VmHWM) - RSS before the step" if self.available else
                         "not measured: needs CUDA or Linux with a writable /proc/self/clear_refs")

    def start(self) -> int:
        if self.device == "cuda":
            self.torch.cuda.reset_peak_memory_stats()
            return self.torch.cuda.memory_allocated()
        if not self.available:
            return 0
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

    With gradient accumulation a step spans several micro-batches; their compute times add up and the memory peak
    covers all of them (the time spent loading the next micro-batch is left out).
    """

    def __init__(self, device: str, warmup: int = WARMUP_STEPS):
        self.warmup = warmup
        self.memory = StepMemory(device)
        self._sync = self.memory.torch.cuda.synchronize if device == "cuda" else (lambda: None)
        self.times: list[float] = []
        self.peaks: list[int | None] = []
        self._open = False
        self._elapsed = 0.0
        self._t0 = 0.0
        self._before = 0

    def begin(self) -> None:
        if not self._open:
            self._open, self._elapsed = True, 0.0
            self._before = self.memory.start()
        self._sync()
        self._t0 = time.perf_counter()

    def end(self, step_done: bool) -> None:
        self._sync()
        self._elapsed += time.perf_counter() - self._t0
        if step_done:
            self.times.append(self._elapsed)
            self.peaks.append(self.memory.stop(self._before))
            self._open = False

    def summary(self) -> dict:
        """The summary.json fields; the warm-up steps are dropped unless the process ran no more than them."""
        drop = self.warmup if len(self.times) > self.warmup else 0
        times, peaks = self.times[drop:], [p for p in self.peaks[drop:] if p is not None]
        kind = self.memory.kind
        if peaks and self.memory.device != "cuda":
            kind += ("; glibc mmap threshold 64 KiB" if _mmap_threshold_pinned else
                     "; glibc may reuse freed heap memory already in the RSS, so this can read low "
                     "(set MALLOC_MMAP_THRESHOLD_=65536)")
        return {
            "step_time_median_s": statistics.median(times) if times else None,
            "step_memory_mb": max(peaks) / 2**20 if peaks else None,
            "step_memory_kind": kind,
            "step_stats_steps": len(times),
            "step_stats_warmup": drop,
        }


__all__ = ["MMAP_THRESHOLD", "StepMemory", "StepStats", "WARMUP_STEPS", "pin_mmap_threshold", "proc_status_kb"]
