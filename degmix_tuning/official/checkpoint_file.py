"""Read a released official checkpoint (PyTorch-Lightning 1.1 `.ckpt`) without pytorch_lightning and without
running code from the file; keep only its `state_dict` and the few facts that say where it came from."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from torch import Tensor

from ..restricted_pickle import load_untrusted

# Top-level entries of a Lightning checkpoint that identify the training run (recorded, never interpreted).
RUN_FACTS = ("pytorch-lightning_version", "epoch", "global_step")
# Parts of the official LightningModule that hold no model weights (loss buffers, metric states): skipped.
NON_MODEL_PREFIXES = ("criterion.", "metrics_dict.")

_FIX = "pass the .ckpt file of a released DeGMix model (download it again if it may be truncated)"


@dataclass
class OfficialCheckpoint:
    path: Path
    sha256: str
    state_dict: dict[str, Tensor]  # `module.` (DDP) prefixes removed
    facts: dict = field(default_factory=dict)  # Lightning version / epoch / global_step, those present
    reader: str = "weights_only"  # "weights_only" or "restricted" (the file holds non-tensor Python objects)

    def part(self, prefix: str) -> dict[str, Tensor]:
        """Entries under `prefix` (e.g. "head."), with the prefix removed, in file order."""
        return {k[len(prefix):]: v for k, v in self.state_dict.items() if k.startswith(prefix)}

    def provenance(self) -> dict:
        return {"file": self.path.name, "sha256": self.sha256, "bytes": self.path.stat().st_size, **self.facts}


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _first_line(exc: BaseException, limit: int = 160) -> str:
    text = str(exc).strip().splitlines()
    line = next((t.strip() for t in text if t.strip()), "")
    line = f"{type(exc).__name__}: {line}" if line else type(exc).__name__
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _starts_like_torch_file(path: Path) -> bool:
    """torch.save writes a zip archive (torch>=1.6) or, in the legacy format, a pickle (protocol 2: 0x80 0x02)."""
    with open(path, "rb") as f:
        head = f.read(4)
    return head.startswith(b"PK\x03\x04") or head[:1] == b"\x80" or path.suffix == ".safetensors"


def _torch_load(path: Path):
    """-> (object, reader). `weights_only=True` first; only a refused global falls back to the restricted unpickler."""
    if not _starts_like_torch_file(path):
        raise ValueError(f"{str(path)!r} is not a PyTorch checkpoint (neither a zip archive nor a pickle); {_FIX}")
    try:
        return load_untrusted(path)
    except Exception as exc:  # noqa: BLE001 - corrupt zip, not a torch file, TorchScript archive, ...
        raise ValueError(f"{str(path)!r} is not a readable PyTorch checkpoint ({_first_line(exc)}); {_FIX}") from exc


def _state_dict_of(obj, path: Path) -> dict:
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        return obj["state_dict"]
    if isinstance(obj, dict) and obj and all(isinstance(v, Tensor) for v in obj.values()):
        return obj  # a bare state dict (someone saved `model.state_dict()` of the official model)
    if isinstance(obj, dict):
        keys = ", ".join(repr(k) for k in list(obj)[:6] if isinstance(k, str))
        raise ValueError(
            f"{str(path)!r} has no 'state_dict' entry (top-level keys: {keys or 'none'}); {_FIX}"
        )
    raise ValueError(f"{str(path)!r} holds a {type(obj).__name__}, not a checkpoint dict with a 'state_dict'; {_FIX}")


def read_official_checkpoint(path: str | Path) -> OfficialCheckpoint:
    """Load `path` on CPU; errors are one line naming the file and the fix."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist; {_FIX}")
    obj, reader = _torch_load(path)
    state = _state_dict_of(obj, path)
    cleaned: dict[str, Tensor] = {}
    for key, value in state.items():
        if not isinstance(key, str) or not isinstance(value, Tensor):
            raise ValueError(
                f"{str(path)!r}: state_dict entry {key!r} is a {type(value).__name__}, not a tensor; {_FIX}"
            )
        cleaned[key[len("module."):] if key.startswith("module.") else key] = value
    if len(cleaned) != len(state):
        raise ValueError(f"{str(path)!r}: state_dict has the same key with and without a 'module.' prefix; {_FIX}")
    facts = {}
    if isinstance(obj, dict):
        facts = {k: obj[k] for k in RUN_FACTS if isinstance(obj.get(k), (int, str)) and not isinstance(obj[k], bool)}
    return OfficialCheckpoint(path=path, sha256=file_sha256(path), state_dict=cleaned, facts=facts, reader=reader)


__all__ = ["NON_MODEL_PREFIXES", "OfficialCheckpoint", "RUN_FACTS", "file_sha256", "read_official_checkpoint"]
