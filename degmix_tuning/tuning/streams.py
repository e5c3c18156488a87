"""Per-task feature streams (MTLoRA's TS-LoRA, DiTASK's task-specific warps) on any backbone in the slot.

MTLoRA runs the last block of each stage once for the shared stream and once per task: a task-adapted layer
returns `W x_shared + dW_t x_task` (DiTASK: `W'_t x_task`), norms/activations/attention act on each stream, and
each task's stage output feeds that task's decoder, while the next stage continues from the shared stream only.

Here that is done without copying any backbone code: `TaskStreamBlock` wraps a stage's last block, stacks the
block input T+1 times on the batch axis ([shared; task_1; ...; task_T]) and sets every `MultiTaskLayer` inside to
"stacked" mode, in which chunk 0 gets the shared update and chunk t gets `task_forward(chunk_0, chunk_t, task)`.
Every other op is per-sample, so chunk t is exactly MTLoRA's task stream. (BatchNorm in train mode would mix the
chunks' statistics: that only matters for CNN backbones whose BN layers train.) The block hands chunk 0 back to
the network and leaves the task chunks in a `TaskStreams` object, which the light head reads (as its
`task_features` source) after converting them to the slot's layout exactly like the shared map: the stage's own
post-block norm (PVT-v2), NHWC/token -> NCHW (prefix tokens dropped, Hiera's token order undone), the ViT pyramid
resampling, the crop, the slot's stage-output norm. That conversion is checked on the shared chunk, which must give
back the shared map; a backbone whose stage does more after its last block is refused in one line.

Two deliberate differences from MTLoRA: our maps are the stage outputs *before* the next patch merging (the slot's
convention; MTLoRA taps after it), and a `features=` cache cannot be used (the task maps need the backbone to run).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from typing import Callable

from .structure import (Stage, TunerLayer, block_targets, find_stages, network_of, replace_module,
                        require_targets, route_through_modules)


class MultiTaskLayer(TunerLayer):
    """A wrapped `nn.Linear`/`nn.Conv2d` (frozen, as `base`) with a shared update and optional per-task updates.

    Subclasses implement `shared_forward(x)` and `task_forward(x_shared, x_task, task)`.
    """

    def __init__(self, base: nn.Module, tasks: list[str]):
        super().__init__(base)
        self.tasks = list(tasks)
        self.chunks = 1  # set by TaskStreamBlock during a stacked call
        self.structure_only = False  # set by the build-time probe (probe.py): skip one-time setup such as an SVD

    def shared_forward(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def task_forward(self, x_shared: Tensor, x_task: Tensor, task: str) -> Tensor:
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:
        if self.chunks == 1 or not self.tasks:
            return self.shared_forward(x)
        if self.chunks != 1 + len(self.tasks) or x.shape[0] % self.chunks:
            raise RuntimeError(f"{type(self).__name__}: stacked input of batch {x.shape[0]} does not hold "
                               f"1 + {len(self.tasks)} streams")
        parts = x.chunk(self.chunks, dim=0)
        outs = [self.shared_forward(parts[0])]
        outs += [self.task_forward(parts[0], parts[k + 1], t) for k, t in enumerate(self.tasks)]
        return torch.cat(outs, dim=0)


class TaskStreams:
    """The task chunks of the last backbone forward, per level; called by the head to get {task: NCHW maps}.

    A plain object (not a Module): it is shared by the stream blocks and the head without registering anything twice.
    Each level's conversion to the slot's layout is checked once per block-output shape: applied to the shared chunk
    it must give the shared map the backbone returned, so a layout the slot cannot restore is refused (ValueError),
    never silently scrambled.
    """

    def __init__(self, backbone: nn.Module, tasks: list[str], stages: list[Stage], method: str = "task streams"):
        self.backbone = backbone
        self.tasks = list(tasks)
        self.stages = list(stages)
        self.num_levels = len(self.stages)
        self.method = method
        self._raw: dict[int, tuple[Tensor, ...]] = {}
        self._shared: dict[int, Tensor] = {}
        self._verified: set[tuple[int, tuple[int, ...]]] = set()

    def record(self, level: int, task_chunks: tuple[Tensor, ...], shared: Tensor | None = None) -> None:
        """The task chunks of a stage's last block output (and its shared chunk, to verify the layout with)."""
        self._raw[level] = tuple(task_chunks)
        if shared is not None:
            self._shared[level] = shared

    def __call__(self, shared_maps: list[Tensor]) -> dict[str, list[Tensor]]:
        raw, self._raw = self._raw, {}
        shared_raw, self._shared = self._shared, {}
        if sorted(raw) != list(range(self.num_levels)):
            raise RuntimeError(
                "per-task feature streams are missing: the backbone did not run in this forward. Task-stream methods "
                "(mtlora/ditask with task adapters) cannot decode cached features (model(images, features=...))"
            )
        out: dict[str, list[Tensor]] = {t: [] for t in self.tasks}
        for level, ref in enumerate(shared_maps):
            chunks = raw[level]
            if len(chunks) != len(self.tasks) or chunks[0].shape[0] != ref.shape[0]:
                raise RuntimeError(f"task stream of level {level} does not match the shared map {tuple(ref.shape)}")
            if level in shared_raw:
                self._verify(level, shared_raw[level], ref)
            for t, chunk in zip(self.tasks, chunks):
                out[t].append(self._to_map(level, chunk, ref))
        return out

    def _refuse(self, level: int, why: str) -> ValueError:
        name = getattr(self.backbone, "name", type(network_of(self.backbone)).__name__)
        return ValueError(
            f"{self.method}: the per-task streams of backbone {name!r} cannot be restored at level {level} ({why}); "
            "switch the task adapters off (mtlora: task_rank=0, ditask: task_tess=0) or use another backbone")

    def _verify(self, level: int, shared_raw: Tensor, ref: Tensor) -> None:
        key = (level, tuple(shared_raw.shape))
        if key in self._verified:
            return
        try:
            with torch.no_grad():
                mine = self._to_map(level, shared_raw.detach(), ref)
        except (RuntimeError, ValueError) as exc:
            raise self._refuse(level, str(exc).splitlines()[0]) from exc
        if not torch.allclose(mine, ref.detach(), rtol=1e-4, atol=1e-5):
            raise self._refuse(level, "its stage output is not the returned map up to a layout change")
        self._verified.add(key)

    def _to_map(self, level: int, raw: Tensor, ref: Tensor) -> Tensor:
        """A stage's last-block output in the network's layout -> the slot's NCHW map for `level` (the shared ops)."""
        bb = self.backbone
        net = network_of(bb)
        stage = self.stages[level]
        for norm in stage.tail:  # per-sample norms the stage runs after its blocks (PVT-v2)
            raw = norm(raw)
        native = list(getattr(bb, "native_sizes", []) or [])
        channels = bb.feature_info[level].num_chs
        gh, gw = native[level] if level < len(native) else ref.shape[-2:]
        reroll = getattr(net, "reroll", None)
        tap_index = stage.name.rpartition(".")[2]
        if raw.ndim == 3 and callable(reroll) and tap_index.isdigit():  # Hiera keeps tokens in mask-unit order
            raw = reroll(raw, int(tap_index)).permute(0, 3, 1, 2)
        elif raw.ndim == 3:  # tokens [B, N, C] (ViT, PVT, LeViT, Mixer): prefix tokens first, then the grid row-major
            extra = raw.shape[1] - gh * gw
            if extra < 0:
                raise RuntimeError(f"{raw.shape[1]} tokens cannot fill the {gh}x{gw} grid")
            raw = raw[:, extra:].reshape(raw.shape[0], gh, gw, raw.shape[-1]).permute(0, 3, 1, 2)
        elif raw.ndim == 4 and _is_nhwc(raw, channels, (gh, gw), net):
            raw = raw.permute(0, 3, 1, 2)  # NHWC (Swin)
        elif raw.ndim != 4 or tuple(raw.shape[1:]) != (channels, gh, gw):
            raise RuntimeError(f"block output of shape {tuple(raw.shape)} is not the {channels}-channel {gh}x{gw} map")
        if getattr(bb, "pyramid", False):
            from ..backbones.timm_backbone import _resample_to_stride

            raw = _resample_to_stride(raw, int(bb.size_divisor), bb.feature_info[level].reduction)
        raw = raw[..., : ref.shape[-2], : ref.shape[-1]]
        norms = getattr(bb, "stage_norms", None)
        if norms is not None:
            raw = norms[level](raw)
        if raw.shape != ref.shape:
            raise RuntimeError(f"task map of level {level} is {tuple(raw.shape)}, the shared map {tuple(ref.shape)}")
        return raw.contiguous()


class TaskStreamBlock(nn.Module):
    """Wraps the last block of a stage: one stacked call computes the shared and all task streams."""

    def __init__(self, block: nn.Module, level: int, streams: TaskStreams):
        super().__init__()
        self.block = block
        self.level = level
        self.streams = streams

    def forward(self, x: Tensor, *args, **kwargs) -> Tensor:
        n = 1 + len(self.streams.tasks)
        layers = [m for m in self.block.modules() if isinstance(m, MultiTaskLayer)]
        for m in layers:
            m.chunks = n
        try:
            out = self.block(torch.cat([x] * n, dim=0), *args, **kwargs)
        finally:
            for m in layers:
                m.chunks = 1
        parts = out.chunk(n, dim=0)
        self.streams.record(self.level, parts[1:], shared=parts[0])
        return parts[0]


def _is_nhwc(raw: Tensor, channels: int, grid: tuple[int, int], net: nn.Module) -> bool:
    """[B, H, W, C] rather than [B, C, H, W]; when both read alike, the network's `output_fmt` decides."""
    nhwc, nchw = tuple(raw.shape[1:]) == (*grid, channels), tuple(raw.shape[1:]) == (channels, *grid)
    return nhwc and (not nchw or str(getattr(net, "output_fmt", "NCHW")) == "NHWC")


def attach_task_streams(model: nn.Module, stages: list[Stage], method: str) -> TaskStreams:
    """Wrap each stage's last block and make the head decode per-task maps; the head must support it."""
    head = model.head
    if not hasattr(head, "task_features"):
        raise ValueError(
            f"{method} with task-specific adapters needs a head that decodes per-task features (head='light'); "
            f"{type(head).__name__} fuses all tasks from one shared map. Use head='light', or switch the task "
            "adapters off (mtlora: task_rank=0, ditask: task_tess=0)"
        )
    net = network_of(model.backbone)
    streams = TaskStreams(model.backbone, list(head.tasks), stages, method)
    for level, stage in enumerate(stages):
        replace_module(net, stage.block_names[-1], TaskStreamBlock(stage.blocks[-1], level, streams))
    head.task_features = streams
    return streams


def wrap_stage_blocks(model: nn.Module, method: str, target_types: tuple[str, ...], task_exclude, streams: bool,
                      make_layer: Callable[[str, nn.Module, list[str]], nn.Module]) -> None:
    """Replace every target layer of every block with `make_layer(dotted_path, layer, layer_tasks)`.

    `layer_tasks` is the model's task list for the last block of each stage when `streams` is on (except layers
    whose leaf name is in `task_exclude`), else []. With streams, per-task feature streams are attached afterwards.
    Shared by the MTLoRA and DiTASK layouts (shared update everywhere, task-specific update at stage ends).
    """
    backbone = model.backbone
    stages = find_stages(backbone)
    tasks = list(model.head.tasks)
    net = network_of(backbone)
    route_through_modules(net)
    found = []
    for stage in stages:
        for block_name, block in zip(stage.block_names, stage.blocks):
            stage_end = streams and block is stage.blocks[-1]
            for name, layer in block_targets(block, target_types):
                layer_tasks = tasks if stage_end and name.rpartition(".")[2] not in task_exclude else []
                path = f"{block_name}.{name}"
                replace_module(net, path, make_layer(path, layer, layer_tasks))
                found.append(name)
    require_targets(found, method, backbone, target_types)
    if streams:
        attach_task_streams(model, stages, method)


__all__ = ["MultiTaskLayer", "TaskStreamBlock", "TaskStreams", "attach_task_streams", "wrap_stage_blocks"]
