"""Which weights the backbone starts from: never random by accident, always printed and recorded.

On real data a tuning method that freezes backbone weights (every method but `full`) needs real weights:
`--checkpoint-path FILE` (the official DeGMix runs freeze the mmseg UperNet Swin of `OFFICIAL_BACKBONE_FILES`) or
`--pretrained` (timm/hub weights). `--random-backbone` trains on frozen random features on purpose. Every run
records `describe()`'s answer (source, file and sha256, hub tag, a digest of the loaded weights) in its
`config.json`-adjacent `summary.json` and prints it as one line.
"""

from __future__ import annotations

from pathlib import Path

from ..official.checkpoint_file import file_sha256

# the frozen slot of the DeGMix tables: the backbone part of mmseg's UperNet ADE20K checkpoints
# (DeMTG b3be4ef src/model/backbones/swin.py l.11-15, loaded by swin_t/swin_s/swin_b l.954-1020)
OFFICIAL_BACKBONE_FILES = {
    "swin_t": "upernet_swin_tiny_patch4_window7_512x512_160k_ade20k_pretrain_224x224_1K_20210531_112542-e380ad3e.pth",
    "swin_s": "upernet_swin_small_patch4_window7_512x512_160k_ade20k_pretrain_224x224_1K_20210526_192015-ee2fff1c.pth",
    "swin_b": "upernet_swin_base_patch4_window7_512x512_160k_ade20k_pretrain_224x224_22K_20210526_211650-762e2178.pth",
}
OFFICIAL_BACKBONE_URL = "https://download.openmmlab.com/mmsegmentation/v0.5/swin/{stem}/{file}"


def official_file_url(backbone: str) -> str | None:
    name = OFFICIAL_BACKBONE_FILES.get(backbone)
    return OFFICIAL_BACKBONE_URL.format(stem=name.rsplit("_", 2)[0], file=name) if name else None


def freezes_backbone_weights(tuning: str) -> bool:
    """Every method starts from a frozen backbone (tuning/base.py) and only `full` unfreezes all of it."""
    return tuning != "full"


def require_real_weights(cfg) -> None:
    """Refuse, before anything is built, frozen random backbone weights on real data (unless asked for)."""
    m = cfg.model
    real_data = not cfg.data.synthetic
    if not real_data or m.pretrained or m.checkpoint_path or cfg.random_backbone:
        return
    if not freezes_backbone_weights(cfg.tuning):
        return
    official = OFFICIAL_BACKBONE_FILES.get(m.backbone)
    hint = (f" (the official DeGMix runs freeze {official}, from {official_file_url(m.backbone)})" if official
            else "")
    raise ValueError(
        f"the frozen {m.backbone} backbone would keep random weights: pass --checkpoint-path FILE{hint} or "
        f"--pretrained (timm/hub weights), or --random-backbone to train on random frozen features on purpose"
    )


def describe(cfg, backbone) -> dict:
    """What the backbone was built from: {"source": file|hub|packaged|random, ...} plus a digest of its weights
    (the same digest adapter files record for the weights they do not hold)."""
    from ..backbones.base import state_digest

    m = cfg.model
    out: dict = {"backbone": m.backbone, "frozen": freezes_backbone_weights(cfg.tuning)}
    pcfg = dict(getattr(backbone, "pretrained_cfg", None) or {})
    if m.checkpoint_path:
        out.update(source="file", file=str(Path(m.checkpoint_path).absolute()), file_sha256=file_sha256(m.checkpoint_path))
    elif m.pretrained:
        if str(pcfg.get("weights", "")).startswith("packaged"):  # weights shipped with the package
            out.update(source="packaged", tag=pcfg["weights"].split(" ", 1)[-1])
        else:
            out.update(source="hub", tag=pcfg.get("hf_hub_id")
                       or ".".join(x for x in (pcfg.get("architecture"), pcfg.get("tag")) if x) or m.backbone)
    else:
        out.update(source="random", seed=cfg.train.seed)
    out["weights_sha256"] = state_digest(backbone.state_dict())
    return out


def one_line(info: dict) -> str:
    role = "frozen" if info["frozen"] else "trained"
    where = {"file": lambda: f"file {info['file']} (sha256 {info['file_sha256'][:16]}...)",
             "hub": lambda: f"hub weights {info['tag']}",
             "packaged": lambda: f"packaged weights {info['tag']}",
             "random": lambda: f"RANDOM init (seed {info['seed']})"}[info["source"]]()
    return f"backbone weights ({role}): {info['backbone']} from {where}; weights sha256 {info['weights_sha256'][:16]}..."
