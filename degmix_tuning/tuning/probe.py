"""The structure check after a tuning method is applied: one forward of the tuned backbone, once, at build time.

Backbones differ in ways no module listing shows: a parent may compute with a child's `.weight` directly (an
adapter on that child then trains nothing), a stage may do more after its last block than the task streams can
replay, a network may shrink its maps below the declared strides. So `apply_tuning` runs the tuned backbone once,
without gradients, on a small seeded input (`backbone.probe_size()`), and refuses in one line (ValueError) when it
fails, breaks the slot contract, leaves an adapted layer uncalled, or its task streams do not restore to the shared
maps. DiTASK's layers compute with their base weight during the probe, so no SVD is paid for it.
"""

from __future__ import annotations

import torch
from torch import nn

from .streams import MultiTaskLayer
from .structure import TunerLayer


def _adapter_layers(backbone: nn.Module) -> list[tuple[str, nn.Module]]:
    """Every wrapper a method put into the backbone: ours (`TunerLayer`) and peft's tuner layers."""
    try:
        from peft.tuners.tuners_utils import BaseTunerLayer
    except ImportError:  # pragma: no cover - peft is a dependency
        BaseTunerLayer = ()  # noqa: N806
    return [(n, m) for n, m in backbone.named_modules() if isinstance(m, (TunerLayer, BaseTunerLayer))]


def probe_tuned_model(model: nn.Module, cfg) -> None:
    """Run the tuned backbone once; raise one ValueError line when the method cannot work on it."""
    backbone = model.backbone
    if not hasattr(backbone, "probe_size"):
        return
    name = getattr(backbone, "name", type(backbone).__name__)
    layers = _adapter_layers(backbone)
    calls = {id(m): 0 for _, m in layers}

    def count(module, args):
        calls[id(module)] += 1

    handles = [m.register_forward_pre_hook(count) for _, m in layers]
    structure_only = [m for m in backbone.modules() if isinstance(m, MultiTaskLayer)]
    h, w = backbone.probe_size()
    param = next(backbone.parameters(), None)
    x = torch.randn(1, 3, h, w, generator=torch.Generator().manual_seed(0))
    if param is not None:
        x = x.to(device=param.device, dtype=param.dtype)
    training = backbone.training
    try:
        backbone.eval()
        for m in structure_only:
            m.structure_only = True
        with torch.no_grad():
            feats = backbone(x)
            backbone.check_features(x, feats)
            streams = getattr(model.head, "task_features", None)
            if streams is not None:
                streams(feats)
    except ValueError:
        raise
    except Exception as exc:  # noqa: BLE001 - an unsupported backbone/method pair: one line, the cause chained
        reason = (str(exc).strip().splitlines() or [""])[0][:200]
        raise ValueError(f"{cfg.method}: backbone {name!r} fails on a {h}x{w} test input once tuned "
                         f"({type(exc).__name__}: {reason}); this method does not support this backbone, choose "
                         "another method or backbone") from exc
    finally:
        for handle in handles:
            handle.remove()
        for m in structure_only:
            m.structure_only = False
        backbone.train(training)
    idle = [n for n, m in layers if calls[id(m)] == 0]
    if idle:
        leaves = sorted({n.rpartition(".")[2] for n in idle})
        fix = (f"leave them out with exclude={','.join(leaves)}" if hasattr(cfg, "exclude")
               else "choose another method or backbone")
        raise ValueError(f"{cfg.method}: {len(idle)} adapted layers of backbone {name!r} never run in its forward "
                         f"(e.g. {idle[0]}: its parent computes with the layer's weight directly), so their adapters "
                         f"would train nothing; {fix}")


__all__ = ["probe_tuned_model"]
