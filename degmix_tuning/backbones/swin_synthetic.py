"""`swin_synthetic`: a 2.3M-parameter Swin pretrained by this project on its own synthetic scenes.

Why it exists: without a hub cache (CPU boxes, CI) the only frozen features were random ones, so the synthetic demo
and CPU comparisons said little about what a pretrained backbone gives. These weights ship inside the package: they
were made by `recipes/pretrain_synthetic.py`, which fully trains this Swin with a DeGMix head on the PASCAL-like
synthetic scenes (semseg, human parts, saliency, normals). Downstream demos use the NYUD-like indoor scenes with
semseg (40 classes) and depth: another scene flavour, other classes, and a task (depth) the backbone never saw.

The architecture is fixed by the name (embed 32, depths 2-2-2-2, heads 1-2-4-8, window 4, `tiny_swin`'s family:
timm Swin blocks computing the official mmseg features). Weights follow the rule of every backbone in the slot:

- `pretrained=True`: the packaged weights, no network; checked against the sha256 recorded with them;
- `pretrained=False` (the default of `create_backbone` and `ModelConfig`): random init of the same architecture,
  the reference for "frozen pretrained vs frozen random" comparisons (and rebuilt by seed in `load_tuned`);
- `checkpoint_path=FILE`: other weights of this architecture, e.g. those of a new `pretrain_synthetic.py` run.

With the packaged weights, `pretrained_cfg` holds their provenance: the command, steps, data, final metrics on the
synthetic val split and the sha256 (`state_digest`) of the state.
"""

from __future__ import annotations

import json
from pathlib import Path

from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from torch import Tensor

from . import register_backbone
from .base import FeatureBackbone, state_digest
from .swin import SwinBackbone

NAME = "swin_synthetic"
TIMM_FAMILY = "swin_tiny_patch4_window7_224"  # the timm Swin class and parameter layout (as `tiny_swin`)
ARCHITECTURE = {"embed_dim": 32, "depths": (2, 2, 2, 2), "num_heads": (1, 2, 4, 8), "window_size": 4}

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights_data"
WEIGHTS_FILE = WEIGHTS_DIR / f"{NAME}.safetensors"
PROVENANCE_FILE = WEIGHTS_DIR / f"{NAME}.json"  # the same record as the file's metadata, readable without Python
METADATA_KEY = "pretrained_cfg"  # safetensors metadata entry holding the provenance as JSON


def read_packaged_weights(path: Path = WEIGHTS_FILE) -> tuple[dict[str, Tensor], dict]:
    """-> (backbone state in the slot layout, provenance), after checking the state against its recorded sha256."""
    from safetensors import safe_open

    fix = ("reinstall degmix-tuning (the wheel ships it), or make it with `python recipes/pretrain_synthetic.py`, "
           "or pass --checkpoint-path FILE")
    if not path.is_file():
        raise FileNotFoundError(f"packaged weights of {NAME!r} not found at {str(path)!r}; {fix}")
    try:
        with safe_open(str(path), framework="pt") as f:
            provenance = json.loads((f.metadata() or {})[METADATA_KEY])
            state = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as exc:  # noqa: BLE001 - a truncated or foreign file: name it and the fix
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        raise ValueError(f"packaged weights {str(path)!r} of {NAME!r} cannot be read ({reason}); {fix}") from exc
    if state_digest(state) != provenance.get("sha256"):
        raise ValueError(f"packaged weights {str(path)!r} do not match their recorded sha256; {fix}")
    return state, provenance


def _as_tuple(value):
    return tuple(value) if isinstance(value, list) else value


@register_backbone(NAME)
def swin_synthetic(*, pretrained: bool = False, checkpoint_path: str | None = None, **kwargs) -> FeatureBackbone:
    """Small Swin pretrained on synthetic PASCAL-like scenes (`pretrained=True`) or its random init (module doc)."""
    clash = {k: v for k, v in kwargs.items() if k in ARCHITECTURE and _as_tuple(v) != ARCHITECTURE[k]}
    if clash:
        raise ValueError(f"{NAME} has a fixed architecture {ARCHITECTURE}; got {clash}. Use tiny_swin for other sizes")
    kwargs = {k: v for k, v in kwargs.items() if k not in ARCHITECTURE}
    backbone = SwinBackbone(TIMM_FAMILY, checkpoint_path=checkpoint_path, **ARCHITECTURE, **kwargs)
    cfg = {"architecture": NAME, "timm_family": TIMM_FAMILY, **{k: list(v) if isinstance(v, tuple) else v
                                                               for k, v in ARCHITECTURE.items()}}
    if checkpoint_path is not None:
        cfg.update(weights=f"file {checkpoint_path}", mean=IMAGENET_DEFAULT_MEAN, std=IMAGENET_DEFAULT_STD)
    elif pretrained:
        state, provenance = read_packaged_weights()
        backbone.load_slot_state(state, str(WEIGHTS_FILE))
        backbone.weights_source = str(WEIGHTS_FILE)
        cfg.update(provenance, weights=f"packaged {WEIGHTS_FILE.name}")
        cfg["mean"], cfg["std"] = tuple(provenance["mean"]), tuple(provenance["std"])
    else:
        cfg.update(weights="random init", mean=IMAGENET_DEFAULT_MEAN, std=IMAGENET_DEFAULT_STD)
    backbone.pretrained_cfg = cfg
    return backbone


__all__ = ["ARCHITECTURE", "NAME", "PROVENANCE_FILE", "WEIGHTS_FILE", "read_packaged_weights", "swin_synthetic"]
