"""Test helper: make the depth head's output NaN from its n-th call on (a divergence at a step the test chooses)."""

from __future__ import annotations


def nan_depth_from_call(monkeypatch, first: int) -> dict:
    """From the `first`-th call of the depth head (1-based; one call per training step) its output is NaN.
    Returns the call counter ({"n": calls so far})."""
    from degmix_tuning.models.heads import TaskHead

    real_forward = TaskHead.forward
    calls = {"n": 0}

    def poisoned(self, x, size):
        out = real_forward(self, x, size)
        if out.shape[1] == 1:  # the depth head
            calls["n"] += 1
            if calls["n"] >= first:
                out = out * float("nan")
        return out

    monkeypatch.setattr(TaskHead, "forward", poisoned)
    return calls
