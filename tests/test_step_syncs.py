"""A training step queues GPU work and returns: only log steps and timed steps may wait for the device.

There is no GPU here, so the syncs are counted on CPU where they would happen on a GPU: every op that needs a
value on the host (`item`, `bool`, `float`, `nonzero`, masked selection, ...), every copy to the host (`cpu`,
`numpy`, `tolist`) and `torch.cuda.synchronize`. The runs take the code path of a CUDA device: torchvision's
deformable conv (`auto` picks it off the CPU) and no CPU-only input check.
"""

from __future__ import annotations

import collections
import traceback
from pathlib import Path

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from degmix_tuning.training import engine
from degmix_tuning.training.config import ExperimentConfig
from degmix_tuning.training.engine import TrainingDiverged, train

# aten ops whose result the host must wait for (a value, or an output size that depends on the data)
SYNC_OPS = {"_local_scalar_dense", "is_nonzero", "nonzero", "masked_select", "equal", "allclose", "unique_dim",
            "_unique", "_unique2", "unique_consecutive", "repeat_interleave", "masked_scatter"}
HOST_COPIES = ("cpu", "numpy", "tolist")


class SyncCounter(TorchDispatchMode):
    """Counts host syncs while `on`, by where they come from (the innermost lines of this package)."""

    def __init__(self, monkeypatch):
        super().__init__()
        self.on = False
        self.counts: collections.Counter = collections.Counter()
        for name in HOST_COPIES:
            real = getattr(torch.Tensor, name)

            def copy(t, *args, _real=real, _name=name, **kwargs):
                self._count(_name)
                return _real(t, *args, **kwargs)

            monkeypatch.setattr(torch.Tensor, name, copy)
        monkeypatch.setattr(torch.cuda, "synchronize", lambda *a, **k: self._count("cuda.synchronize"))

    def _count(self, what: str) -> None:
        if self.on:
            ours = [f for f in traceback.extract_stack() if "degmix_tuning" in f.filename]
            self.counts[(what, " < ".join(f"{Path(f.filename).name}:{f.lineno}" for f in ours[-2:][::-1]))] += 1

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func._overloadpacket.__name__ in SYNC_OPS:
            self._count(func._overloadpacket.__name__)
        return func(*args, **(kwargs or {}))


def _gpu_code_path(monkeypatch) -> None:
    from degmix_tuning import losses
    from degmix_tuning.models import deformable_mixer, multitask

    monkeypatch.setattr(deformable_mixer, "GRID_SAMPLE_DEVICES", ())  # "auto" -> torchvision, as on CUDA
    monkeypatch.setattr(losses, "EAGER_CHECK_DEVICES", (), raising=False)  # NaN/inf losses: read when due
    # the input check runs on CPU only (where it costs no sync); raising=False: the name is new
    monkeypatch.setattr(multitask, "FINITE_INPUT_CHECK_DEVICES", (), raising=False)


def _count_per_step(monkeypatch, counter: SyncCounter) -> dict:
    """{step: syncs} for every optimizer step of the next run (its `train_step` and `on_step_end`); "epoch": the
    steps of one epoch."""
    per_step: dict = collections.defaultdict(collections.Counter)
    real_step, real_end = engine.train_step, engine.on_step_end

    def counted(fn, run, step, *args):
        per_step["epoch"] = len(run.train_loader)
        counter.on, counter.counts = True, per_step[step]
        try:
            return fn(run, *args)
        finally:
            counter.on = False

    monkeypatch.setattr(engine, "train_step", lambda run, batch: counted(real_step, run, run.progress.step + 1,
                                                                          batch))
    monkeypatch.setattr(engine, "on_step_end", lambda run, loss, parts: counted(real_end, run, run.progress.step,
                                                                                 loss, parts))
    return per_step


def _cfg(out: Path, *extra: str) -> ExperimentConfig:
    return ExperimentConfig().override([
        "model.backbone=tiny_swin", "model.head.dim=32", "model.tasks=semseg,depth",
        "data.synthetic=true", "data.synthetic_n=24", "data.synthetic_size=48,64", "data.num_workers=0",
        "data.scale_range=1,1", "data.flip=false", "data.photometric=false",  # cacheable (feature_cache=memory)
        "train.batch_size=4", "train.lr=0.05", "train.max_steps=12", "train.log_every=5", "train.eval_every=0",
        "train.checkpoint_every=0", "train.eval_at_start=false", "train.max_eval_batches=1", "train.trackers=csv",
        "train.clip_grad_norm=1.0", f"train.output_dir={out}", *extra,
    ])


@pytest.mark.parametrize("cache, precision", [("off", "no"), ("memory", "no"), ("off", "bf16")])
def test_steps_between_log_steps_do_not_sync(tmp_path, synthetic_cache, monkeypatch, cache, precision):
    _gpu_code_path(monkeypatch)
    counter = SyncCounter(monkeypatch)
    per_step = _count_per_step(monkeypatch, counter)
    with counter:
        train(_cfg(tmp_path / cache, f"train.feature_cache={cache}", f"train.mixed_precision={precision}"),
              show_progress=False)
    # the feature cache reads each image's size once, at its first sighting (the first epoch)
    first = per_step["epoch"] + 1 if cache == "memory" else 1
    assert first < 10
    quiet = [s for s in range(first, 12) if s % 5]  # 12 is the last step: it evaluates
    syncs = {s: dict(per_step[s]) for s in quiet if per_step[s]}
    assert syncs == {}, f"steps that are neither log nor timed steps synced: {syncs}"
    assert sum(per_step[5].values()) > 0  # a log step reads the losses (a sync, allowed)


@pytest.mark.parametrize("deferred", [False, True])
def test_a_nan_loss_between_log_steps_names_its_step_and_task(tmp_path, synthetic_cache, monkeypatch, deferred):
    """On CPU the loss is checked at once (before NaN reaches the weights); on a GPU at the next step that syncs (here
    the checkpoint of step 4): the message is the same, and no checkpoint holds the diverged weights."""
    from head_poisoning import nan_depth_from_call

    from degmix_tuning import losses

    if deferred:  # the GPU's path; the deformable op stays grid_sample: torchvision's CPU op crashes on NaN offsets
        monkeypatch.setattr(losses, "EAGER_CHECK_DEVICES", ())

    # depth goes NaN at step 3: not a log step; checked at the checkpoint of step 4
    calls = nan_depth_from_call(monkeypatch, 3)
    cfg = _cfg(tmp_path / "nan", "train.checkpoint_every=2", "train.log_every=10", "train.max_steps=6")
    with pytest.raises(TrainingDiverged, match=r"loss became nan at step 3 in task 'depth'; last good checkpoint: "
                                               r".*step_2"):
        train(cfg, show_progress=False)
    assert calls["n"] == (4 if deferred else 3)  # deferred: step 4 ran before its checkpoint read the record
    assert sorted(p.name for p in (tmp_path / "nan" / "checkpoints").iterdir()) == ["step_2"]


def test_step_stats_sync_only_on_the_steps_they_time(monkeypatch):
    """On CUDA a step is timed between two `cuda.synchronize`: only a sample of the steps may pay for that."""
    from degmix_tuning.training.step_stats import WARMUP_STEPS, StepStats

    syncs: list[int] = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda *a, **k: syncs.append(stats.steps))
    for name, value in (("reset_peak_memory_stats", None), ("memory_allocated", 1000),
                        ("max_memory_allocated", 5000)):
        monkeypatch.setattr(torch.cuda, name, lambda *a, _v=value, **k: _v)
    stats = StepStats("cuda")
    n = 42
    for _ in range(n):
        stats.begin()
        stats.end(step_done=True)
    timed = sorted(set(syncs))
    assert len(timed) == len(stats.times) >= 3  # the median has several steps to go on
    assert len(syncs) == 2 * len(timed) and len(timed) <= (n - WARMUP_STEPS) // 10 + 1
    assert len(stats.peaks) == n - WARMUP_STEPS  # memory needs no sync: every step after the warm-up
    assert stats.summary()["step_memory_mb"] == 4000 / 2**20


def test_memory_cache_hits_do_not_sync_and_a_changed_image_is_refused_later(tiny_model, monkeypatch):
    from degmix_tuning.training.feature_cache import FeatureCache, FeatureCacheError

    cache = FeatureCache("k", "memory")
    images = torch.randn(3, 3, 32, 32)
    counter = SyncCounter(monkeypatch)
    with counter:
        counter.on = True
        first = cache.batch_features(tiny_model.extract_features, images, ["a", "b", "c"])
        again = cache.batch_features(lambda x: pytest.fail("should not recompute"), images, ["a", "b", "c"])
        partial = cache.batch_features(tiny_model.extract_features, torch.cat([images[1:2], images[:1] + 1]),
                                       ["b", "d"])
        counter.on = False
    assert dict(counter.counts) == {}
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert (cache.stats.hits, cache.stats.misses) == (4, 4)
    for level, (cached, new) in enumerate(zip(first, tiny_model.extract_features(images[:1] + 1))):
        assert torch.equal(partial[level][0], cached[1])  # "b" from the cache
        torch.testing.assert_close(partial[level][1], new[0], rtol=1e-5, atol=1e-6)  # "d" computed
    cache.check()  # nothing changed so far
    flipped = images.flip(-1)  # the same ids with other pixels: the transforms are random after all
    cache.batch_features(tiny_model.extract_features, flipped, ["a", "b", "c"])
    with pytest.raises(FeatureCacheError, match="image 'a' produced a different input tensor"):
        cache.check()
