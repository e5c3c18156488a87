"""peft's own adapter format for the peft-backed methods (lora, dora, loha, lokr, ia3), both ways.

Why: an adapter trained here should load with plain `peft` onto the timm model inside our backbone slot, and one
made with peft on that timm model should evaluate (or keep training) here, without either side knowing the other's
file layout. Our methods call `peft.inject_adapter_in_model(config, model.backbone)`, so the tensors are peft's own;
only the names move: `backbone.model.<layer>.lora_A.default.weight` here, `base_model.model.<layer>.lora_A.weight`
in peft's file, and `target_modules` are named in the timm model (`layers.0.blocks.0.attn.qkv`).

Export folder (`export_peft`):
    adapter_config.json        peft's config (`PeftConfig.save_pretrained`), base_model_name_or_path = the timm name
    adapter_model.safetensors  peft's tensors, keyed as `PeftModel.save_pretrained` writes them
    degmix_head.safetensors    everything else of the run, so nothing is lost: the trainable state outside peft's
                               layers (the DeGMix head and its BatchNorm statistics) and the slot's frozen parts that
                               the timm model lacks (Swin's per-stage output LayerNorms); its metadata holds the run's
                               ExperimentConfig and the fingerprint of the frozen weights it was trained on
`import_peft` reads such a folder (or a plain peft adapter, with a fresh head) into a run folder for `load_tuned`.
"""

from __future__ import annotations

import copy
import datetime
import enum
import json
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from torch import Tensor, nn

from .official.checkpoint_file import file_sha256

PEFT_CONFIG_NAME = "adapter_config.json"
PEFT_WEIGHTS_NAME = "adapter_model.safetensors"
REST_NAME = "degmix_head.safetensors"
REST_FORMAT = "degmix-tuning-peft-rest/1"
PEFT_PREFIX = "base_model.model."  # what PeftModel.save_pretrained puts before every key
ADAPTER_NAME = "default"  # the adapter name our methods inject and peft loads by default
PEFT_METHODS = {"LORA": "lora", "LOHA": "loha", "LOKR": "lokr", "IA3": "ia3"}  # LORA + use_dora -> dora
TARGET_TYPES = ("linear", "conv2d")
# config fields that do not change what the adapted layers compute once the weights are loaded, or that are compared
# through the adapted layers themselves (which modules, which are feedforward)
_NOT_COMPARED = {
    "target_modules", "exclude_modules", "layers_to_transform", "layers_pattern", "feedforward_modules",
    "base_model_name_or_path", "revision", "inference_mode", "task_type", "auto_mapping", "peft_version", "peft_type",
    "init_lora_weights", "init_weights", "loftq_config", "eva_config", "corda_config", "lora_ga_config",
    "runtime_config",
}


@dataclass
class ExportResult:
    out_dir: Path
    method: str
    layers: int  # adapted layers
    peft_tensors: int
    rest_tensors: int
    timm_name: str | None
    qkv_bias_separate: bool  # the timm model must call qkv as a module (Swin-V2/EVA/BEiT) for a qkv adapter to act


@dataclass
class ImportResult:
    run_dir: Path
    method: str
    tuning_kwargs: dict
    layers: int
    head: str  # where the head came from


# --- names ---------------------------------------------------------------------------------------------------------

def _network_prefix(backbone: nn.Module) -> str:
    """Prefix of the timm network's names inside the slot ("model." for a TimmBackbone)."""
    from .tuning.structure import network_of

    return "model." if network_of(backbone) is not backbone else ""


def _timm_name(backbone: nn.Module) -> str | None:
    return getattr(backbone, "name", None) if _network_prefix(backbone) else None


def _bare(name: str) -> str:
    """`timm/swin_tiny_patch4_window7_224.ms_in1k` -> `swin_tiny_patch4_window7_224` (hub repo and weight tag off)."""
    return name.rpartition("/")[2].split(".")[0]


def _leaf(name: str) -> str:
    return name.rpartition(".")[2]


def _peft_config(model: nn.Module):
    configs = getattr(model.backbone, "peft_config", None)
    return configs.get(ADAPTER_NAME) if isinstance(configs, dict) else None


def _tuner_layers(backbone: nn.Module) -> dict[str, nn.Module]:
    """{name in the backbone: peft layer} of every layer peft adapted."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    return {n: m for n, m in backbone.named_modules() if isinstance(m, BaseTunerLayer)}


def _peft_owned_keys(model: nn.Module) -> set[str]:
    """Model keys of the tensors peft's layers own (their `adapter_layer_names`), e.g. lora_A / lora_B / magnitude."""
    owned = set()
    for mname, module in _tuner_layers(model.backbone).items():
        for attr in module.adapter_layer_names:
            sub = getattr(module, attr, None)
            if isinstance(sub, nn.Module):
                owned |= {f"backbone.{mname}.{attr}.{n}" for n, _ in sub.named_parameters()}
    return owned


def _state_dict_of_peft(model: nn.Module) -> dict[str, Tensor]:
    """peft's own adapter state of the backbone, keys relative to the timm network (no adapter name, no prefix)."""
    from peft import get_peft_model_state_dict

    prefix = _network_prefix(model.backbone)
    state = get_peft_model_state_dict(model.backbone, adapter_name=ADAPTER_NAME)
    return {k[len(prefix):]: v for k, v in state.items()}


def _split_key(key: str, where: str) -> tuple[str, str]:
    """`layers.0.blocks.0.attn.qkv.lora_A.weight` -> (`layers.0.blocks.0.attn.qkv`, `lora_A.weight`)."""
    parts = key.split(".")
    for i, part in enumerate(parts):
        if part.startswith(("lora_", "hada_", "lokr_", "ia3_")):
            if i == 0:
                break
            return ".".join(parts[:i]), ".".join(parts[i:])
    raise ValueError(
        f"{where}: {key!r} is not the weight of an adapted layer (modules_to_save or trainable tokens?); "
        "degmix-tuning imports layer adapters of lora, dora, loha, lokr and ia3 only: save the adapter without "
        "modules_to_save"
    )


def _qkv_bias_separate(backbone: nn.Module) -> bool:
    """True when the slot switched timm attention modules to call `qkv` as a module (Swin-V2, EVA, BEiT): with timm's
    default (F.linear on qkv.weight) a peft adapter on qkv is skipped, so the plain-timm user must switch it too."""
    from .tuning.structure import network_of

    return any(getattr(m, "qkv_bias_separate", None) is True and getattr(m, "qkv", None) is not None
               for m in network_of(backbone).modules())  # qkv may be peft's wrapper by now: any module


def _save_atomically(tensors: dict[str, Tensor], path: Path, metadata: dict[str, str]) -> None:
    from .training.checkpoint import save_shared_safetensors

    save_shared_safetensors({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, path, metadata)


# --- export ----------------------------------------------------------------------------------------------------------

def export_peft(run: str | Path, out_dir: str | Path, overwrite: bool = False) -> ExportResult:
    """Write a run's adapter in peft's format (see the module docstring for the three files).

    `run` is what `load_tuned` reads (run folder, adapter file or checkpoint folder); the frozen backbone is rebuilt
    and checked against the run's fingerprint, so the stage norms written are the ones the run used.
    """
    from .backbones.base import state_digest
    from .training.checkpoint import layout_digest, load_tuned
    from .tuning.state import trainable_state

    model, cfg = load_tuned(run)
    peft_cfg = _peft_config(model)
    if peft_cfg is None:
        raise ValueError(
            f"{str(run)!r} was tuned with {cfg.tuning!r}, which peft does not implement; --format peft exports runs "
            f"of lora, dora, loha, lokr or ia3 (the run's own adapter.safetensors holds every other method)"
        )
    out = Path(out_dir)
    _check_export_dir(out, overwrite)
    prefix = _network_prefix(model.backbone)
    peft_state = _state_dict_of_peft(model)
    config = copy.deepcopy(peft_cfg)
    # the adapted layers by full name: peft may have compressed its own list to leaf suffixes ("fc1"), which could
    # also match layers the slot pruned from the timm model
    tuned = _tuner_layers(model.backbone)
    config.target_modules = sorted(n[len(prefix):] for n in tuned)
    if getattr(peft_cfg, "feedforward_modules", None) is not None:
        config.feedforward_modules = sorted(n[len(prefix):] for n, m in tuned.items()
                                            if getattr(m, "is_feedforward", False))
    config.base_model_name_or_path = _timm_name(model.backbone)
    config.inference_mode = True

    trainable = trainable_state(model)
    owned = _peft_owned_keys(model)
    if len(owned) != len(peft_state) or not owned <= set(trainable):
        raise RuntimeError(f"peft's state ({len(peft_state)} tensors) does not match its layers' trainable tensors "
                           f"({len(owned)}); this is a bug in degmix_tuning, please report it")
    rest = {k: v for k, v in trainable.items() if k not in owned}
    frozen = {f"backbone.{k}": v for k, v in model.backbone.state_dict().items()
              if prefix and not k.startswith(prefix) and f"backbone.{k}" not in rest}
    rebuilt = {k: v for k, v in model.state_dict().items() if k not in trainable}
    qkv_separate = _qkv_bias_separate(model.backbone)
    meta = {
        "format": REST_FORMAT,
        "config": json.dumps(cfg.to_dict()),
        "frozen_keys": json.dumps(sorted(frozen)),  # in the file for plain-timm users; load_tuned rebuilds them
        "timm_model": json.dumps({"name": _timm_name(model.backbone), "backbone": cfg.model.backbone,
                                  "backbone_kwargs": cfg.model.backbone_kwargs, "img_size": cfg.model.img_size,
                                  "qkv_bias_separate": qkv_separate}),
        "rebuilt_state_sha256": json.dumps(state_digest(rebuilt)),
        "rebuilt_layout_sha256": json.dumps(layout_digest(rebuilt)),
    }
    out.mkdir(parents=True, exist_ok=True)
    config.save_pretrained(str(out))
    _save_atomically({PEFT_PREFIX + k: v for k, v in peft_state.items()}, out / PEFT_WEIGHTS_NAME, {"format": "pt"})
    _save_atomically({**rest, **frozen}, out / REST_NAME, meta)
    return ExportResult(out, cfg.tuning, len(tuned), len(peft_state), len(rest) + len(frozen),
                        _timm_name(model.backbone), qkv_separate)


def _check_export_dir(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise ValueError(f"{str(out)!r} is a file; pass a folder to export into")
    present = [n for n in (PEFT_CONFIG_NAME, PEFT_WEIGHTS_NAME, REST_NAME) if (out / n).exists()]
    if present and not overwrite:
        raise ValueError(f"{str(out)!r} already holds {', '.join(present)}; choose another folder or pass --overwrite")


# --- reading a peft adapter ------------------------------------------------------------------------------------------

def read_peft_adapter(adapter_dir: str | Path):
    """-> (peft config, tensors keyed relative to the base model, degmix-tuning method name). One-line errors."""
    from peft.mapping import PEFT_TYPE_TO_CONFIG_MAPPING

    from .config import read_json

    folder = Path(adapter_dir)
    if not folder.is_dir():
        raise FileNotFoundError(f"peft adapter folder {str(folder)!r} does not exist; pass the folder that "
                                f"save_pretrained wrote ({PEFT_CONFIG_NAME} + {PEFT_WEIGHTS_NAME})")
    config_file, weights_file = folder / PEFT_CONFIG_NAME, folder / PEFT_WEIGHTS_NAME
    if not config_file.is_file():
        raise FileNotFoundError(f"{str(folder)!r} has no {PEFT_CONFIG_NAME}; pass a folder written by peft's "
                                "save_pretrained (or `degmix-tuning export --format peft`)")
    if not weights_file.is_file():
        other = " (it has adapter_model.bin: save it again with safe_serialization=True)" if (
            folder / "adapter_model.bin").is_file() else ""
        raise FileNotFoundError(f"{str(folder)!r} has no {PEFT_WEIGHTS_NAME}{other}; degmix-tuning reads peft's "
                                "safetensors file only")
    data = read_json(config_file, "peft adapter config")
    peft_type = str(data.get("peft_type")) if isinstance(data, dict) else None
    if peft_type not in PEFT_METHODS:
        raise ValueError(
            f"{str(config_file)!r} is a peft {peft_type} adapter; degmix-tuning's peft methods are lora and dora "
            f"(LORA), loha (LOHA), lokr (LOKR) and ia3 (IA3): train one of those"
        )
    try:
        config = PEFT_TYPE_TO_CONFIG_MAPPING[peft_type].from_pretrained(str(folder))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{str(config_file)!r} is not a readable peft {peft_type} config: {exc}") from None
    method = "dora" if peft_type == "LORA" and getattr(config, "use_dora", False) else PEFT_METHODS[peft_type]
    try:
        with safe_open(str(weights_file), framework="pt") as f:
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as exc:  # noqa: BLE001 - any reader error means the same thing to the user
        raise ValueError(f"{str(weights_file)!r} is not a readable safetensors file: {exc}") from None
    tensors = {k[len(PEFT_PREFIX):] if k.startswith(PEFT_PREFIX) else k: v for k, v in tensors.items()}
    if not tensors:
        raise ValueError(f"{str(weights_file)!r} holds no tensors; save the adapter again")
    return config, tensors, method


def read_rest(path: str | Path) -> tuple[dict[str, Tensor], dict]:
    """`degmix_head.safetensors` -> (tensors, metadata with JSON values decoded)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{str(path)!r} does not exist; `degmix-tuning export --format peft` writes it "
                                f"as OUT/{REST_NAME}")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = dict(f.metadata() or {})
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as exc:  # noqa: BLE001
        raise ValueError(f"{str(path)!r} is not a readable safetensors file: {exc}") from None
    if meta.get("format") != REST_FORMAT:
        raise ValueError(f"{str(path)!r} is not a degmix-tuning head file (format {meta.get('format')!r}); pass the "
                         f"{REST_NAME} that `degmix-tuning export --format peft` wrote")
    return tensors, {k: (json.loads(v) if k != "format" else v) for k, v in meta.items()}


# --- from the adapter's layers to our tuning config ------------------------------------------------------------------

def _layer_type(module: nn.Module) -> str | None:
    if isinstance(module, nn.Linear):
        return "linear"
    if isinstance(module, nn.Conv2d):
        return "conv2d"
    return None


def derive_tuning_kwargs(backbone: nn.Module, config, layers: dict[str, dict[str, Tensor]], method: str,
                         where: str) -> dict:
    """Our method's fields that make it adapt exactly `layers` (names relative to the timm network) the way `config`
    does; refuses (one line) layers outside the blocks, a partial choice, or layers the backbone does not have."""
    from .tuning.structure import network_of, target_names

    net, prefix = network_of(backbone), _network_prefix(backbone)
    base = config.base_model_name_or_path
    mine = _timm_name(backbone)
    if base and mine and _bare(base) != _bare(mine):
        raise ValueError(f"{where} was made for the base model {base!r}, not {mine!r}; pass the --preset/--config of "
                         f"a model whose backbone is {_bare(base)}")
    types = {}
    for name in sorted(layers):
        try:
            module = net.get_submodule(name)
        except AttributeError:
            module = None
        types[name] = _layer_type(module) if module is not None else None
        if types[name] is None:
            raise ValueError(
                f"{where} adapts {name!r}, which the backbone {mine or type(net).__name__} has no Linear/Conv2d "
                f"layer for: it was made for another base model ({base or 'not recorded'}); pass the matching "
                "--preset/--config"
            )
    adapted = {prefix + n for n in layers}
    candidates = set(target_names(backbone, TARGET_TYPES))
    outside = sorted(n[len(prefix):] for n in adapted - candidates)
    if outside:
        raise ValueError(
            f"{where} adapts {outside[:3]}{' ...' if len(outside) > 3 else ''} outside the backbone's blocks, which "
            f"degmix-tuning's {method} never adapts; make the adapter with those layers excluded (peft "
            f"exclude_modules={outside[:3]}) or with target_modules naming block layers only"
        )
    present = set(types.values())
    existing = {_layer_type(net.get_submodule(n[len(prefix):])) for n in candidates}
    target_types = TARGET_TYPES if present >= existing else tuple(t for t in TARGET_TYPES if t in present)
    candidates = target_names(backbone, target_types)
    exclude = tuple(sorted({_leaf(n) for n in candidates} - {_leaf(n) for n in adapted}))
    expected = set(target_names(backbone, target_types, exclude))
    if expected != adapted:
        missing = sorted(n[len(prefix):] for n in expected - adapted)
        raise ValueError(
            f"{where} adapts some {_leaf(missing[0])!r} layers but not {missing[:3]}; degmix-tuning's {method} adapts "
            f"a layer name in every block or in none: make the adapter with target_modules covering every block"
        )
    kwargs: dict = {"target_types": list(target_types), "exclude": list(exclude)}
    if method in ("lora", "dora"):
        kwargs.update(r=int(config.r), alpha=float(config.lora_alpha), dropout=float(config.lora_dropout))
    elif method in ("loha", "lokr"):
        kwargs.update(r=int(config.r), alpha=float(config.alpha))
    else:
        kwargs["feedforward"] = _feedforward_leaves(config, layers, types, where)
    return kwargs


def _feedforward_leaves(config, layers: dict[str, dict[str, Tensor]], types: dict[str, str], where: str) -> list[str]:
    """IA3: which layer names scale their input. Read from the vector's shape ((1, in) vs (out, 1) on a Linear), else
    by peft's rule on the config (a list: the name ends with an entry; a str: a full regex match)."""
    import re

    rule = config.feedforward_modules or []
    feedforward = {}
    for name, params in layers.items():
        vector = params.get("ia3_l")
        if types[name] == "linear" and vector is not None and vector.ndim == 2 and vector.shape[0] != vector.shape[1]:
            feedforward[name] = vector.shape[0] == 1
        elif isinstance(rule, str):
            feedforward[name] = re.fullmatch(rule, name) is not None
        else:
            feedforward[name] = any(name.endswith(r) for r in rule)
    leaves = sorted({_leaf(n) for n, ff in feedforward.items() if ff})
    mixed = sorted(n for n, ff in feedforward.items() if (_leaf(n) in leaves) != ff)
    if mixed:
        raise ValueError(f"{where} treats {_leaf(mixed[0])!r} as feedforward in some blocks only ({mixed[:3]}); "
                         "degmix-tuning's ia3 scales a layer name on its input in every block or in none")
    return leaves


def _as_set(value):
    """Field values compared as a run's config holds them: numbers by value, name lists in any order."""
    value = _normal(value)
    return sorted(map(str, value)) if isinstance(value, list) else value


def _normal(value):
    """A config value in comparable form: sets sorted, tuples as lists, enums as their values."""
    if isinstance(value, (set, frozenset, tuple, list)):
        items = [_normal(v) for v in value]
        return sorted(items, key=repr) if isinstance(value, (set, frozenset)) else items
    if isinstance(value, dict):
        return {str(k): _normal(v) for k, v in value.items()}
    if isinstance(value, enum.Enum):  # PeftType is a str enum: compare and print its value
        return value.value
    return value


def compare_configs(ours, theirs, method: str, where: str) -> None:
    """Every setting of the adapter's peft config that changes the computation must be the one our method uses."""
    mine, given = ours.to_dict(), theirs.to_dict()
    for key in sorted((set(mine) | set(given)) - _NOT_COMPARED):
        if _normal(mine.get(key)) != _normal(given.get(key)):  # 8 == 8.0; lists item by item; sets in any order
            raise ValueError(f"{where} sets peft {key}={given.get(key)!r}, which degmix-tuning's {method} does not "
                             f"use (it has {mine.get(key)!r}); make the adapter without it")


# --- import ----------------------------------------------------------------------------------------------------------

def import_peft(
    adapter_dir: str | Path,
    out_dir: str | Path,
    model_config=None,
    checkpoint_path: str | None = None,
    pretrained: bool | None = None,
    method: str | None = None,
    seed: int | None = None,
    head: bool | str | Path = True,
    data_overrides: list[str] | tuple[str, ...] = (),
    overwrite: bool = False,
    allow_backbone_mismatch: bool = False,
) -> ImportResult:
    """A peft adapter made on the timm model of our backbone slot -> a run folder `load_tuned`/`evaluate` read.

    Args:
        adapter_dir: the folder `save_pretrained` (or `export_peft`) wrote.
        model_config: a preset name or `ModelConfig`; None takes the one recorded in `degmix_head.safetensors`.
        checkpoint_path / pretrained: the frozen weights the adapter was trained on (recorded for load_tuned).
        method: the tuning method expected (refused if the adapter is another one); None accepts the adapter's.
        seed: `train.seed` of the run (random-init frozen weights and a fresh head are built from it).
        head: True reads `<adapter_dir>/degmix_head.safetensors` when present, a path reads that file, False keeps
            a fresh head (seeded).
        allow_backbone_mismatch: accept frozen weights other than those the head file's run was trained on.
    """
    from .backbones.base import state_digest
    from .models.factory import ModelConfig, create_model
    from .official.importer import PROVENANCE_FILE, _check_out_dir, _data_config, _verify_reload
    from .training.checkpoint import ADAPTER_NAME as RUN_ADAPTER, save_adapter
    from .training.config import ExperimentConfig
    from .tuning import apply_tuning, get_tuning_config_cls, trainable_state

    folder = Path(adapter_dir)
    where = str(folder)
    config, tensors, found = read_peft_adapter(folder)
    if method is not None and method != found:
        raise ValueError(f"{where!r} holds a peft {_normal(config.peft_type)} adapter (degmix-tuning method "
                         f"{found!r}), not {method!r}; pass --method {found} or a {method} adapter")
    method = found
    out = Path(out_dir).absolute()
    _check_out_dir(out, overwrite)

    rest_path = Path(head) if isinstance(head, (str, Path)) else (folder / REST_NAME if head else None)
    if head is True and not rest_path.is_file():
        rest_path = None
    rest, rest_meta = read_rest(rest_path) if rest_path is not None else ({}, {})
    recorded = ExperimentConfig.from_dict(rest_meta["config"]) if rest_meta else None
    if recorded is not None and recorded.tuning != method:
        raise ValueError(f"{str(rest_path)!r} was exported from a {recorded.tuning!r} run but {where!r} is a {method} "
                         f"adapter; pass the folder both were exported into, or --no-head")

    if model_config is None and recorded is None:
        raise ValueError(f"{where!r} has no {REST_NAME} recording the model; pass --preset or --config naming the "
                         "model whose backbone the adapter was made on")
    if model_config is None:
        mcfg = copy.deepcopy(recorded.model)
    elif isinstance(model_config, str):
        from .models.presets import get_preset

        mcfg = get_preset(model_config)
    else:
        mcfg = copy.deepcopy(model_config)
    updates = {}
    if checkpoint_path is not None:
        updates.update(checkpoint_path=str(Path(checkpoint_path).absolute()), pretrained=False)
    if pretrained:
        updates.update(pretrained=True, checkpoint_path=None)
    if updates:
        mcfg = ModelConfig.from_dict({**mcfg.to_dict(), **updates})

    if recorded is None:
        exp = ExperimentConfig(model=mcfg, data=_data_config(mcfg.dataset, data_overrides), tuning=method)
    else:
        exp = ExperimentConfig.from_dict({**recorded.to_dict(), "model": mcfg.to_dict()})
        if data_overrides:
            exp.data = exp.data.override([o.strip()[len("data."):] for o in _data_overrides(data_overrides)])
    exp.train.output_dir = str(out)
    if seed is not None:
        exp.train.seed = int(seed)

    with torch.random.fork_rng(devices=[]):  # as training and load_tuned build it: seeded, backbone first
        torch.manual_seed(exp.train.seed)
        model = create_model(mcfg)
    layers: dict[str, dict[str, Tensor]] = {}
    for key, value in tensors.items():
        layer, param = _split_key(key, f"{where}/{PEFT_WEIGHTS_NAME}")
        layers.setdefault(layer, {})[param] = value
    derived = derive_tuning_kwargs(model.backbone, config, layers, method, repr(where))
    kwargs = dict(recorded.tuning_kwargs) if recorded is not None else {}
    if recorded is not None:
        as_run = {**get_tuning_config_cls(method)().to_dict(), **kwargs}
        for key, value in derived.items():
            if _as_set(as_run.get(key)) != _as_set(value):
                raise ValueError(f"{where!r}: the adapter has {key}={value!r} but {str(rest_path)!r} comes from a run "
                                 f"with {key}={as_run.get(key)!r}; pass the folder both were exported into, or "
                                 "--no-head")
    kwargs.update(derived)
    apply_tuning(model, method, **kwargs)
    exp.tuning_kwargs = kwargs
    compare_configs(_peft_config(model), config, method, repr(where))
    _load_peft_tensors(model, tensors, repr(where))

    trainable = trainable_state(model)
    owned = _peft_owned_keys(model)
    if rest_path is not None:
        _load_rest(model, trainable, owned, rest, rest_meta, rest_path, allow_backbone_mismatch)
    head_origin = (f"{rest_path.absolute()} (sha256 {file_sha256(rest_path)[:12]})" if rest_path is not None
                   else f"fresh init (seed {exp.train.seed}; not trained)")
    provenance = {
        "file": str((folder / PEFT_WEIGHTS_NAME).absolute()),
        "sha256": file_sha256(folder / PEFT_WEIGHTS_NAME),
        "format": "peft",
        "peft_type": str(_normal(config.peft_type)),
        "peft_version": getattr(config, "peft_version", None),
        "base_model_name_or_path": config.base_model_name_or_path,
        "tuning": method,
        "tuning_kwargs": kwargs,
        "head": head_origin,
        "imported_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    if rest_path is not None and "rebuilt_state_sha256" in rest_meta:
        rebuilt = {k: v for k, v in model.state_dict().items() if k not in trainable}
        provenance["frozen_weights_as_exported"] = state_digest(rebuilt) == rest_meta["rebuilt_state_sha256"]
    out.mkdir(parents=True, exist_ok=True)
    save_adapter(model, out / RUN_ADAPTER, exp.to_dict(), {"imported_from": provenance})
    _verify_reload(model, out)
    exp.save(out / "config.json")
    (out / PROVENANCE_FILE).write_text(json.dumps(provenance, indent=2) + "\n")
    return ImportResult(out, method, kwargs, len(layers), head_origin)


def _data_overrides(overrides) -> list[str]:
    bad = [o for o in overrides if not o.split("=", 1)[0].strip().startswith("data.")]
    if bad:
        raise ValueError(f"--set {bad[0]!r}: only data.* fields can be set here; the model comes from the adapter's "
                         "head file or --preset/--config")
    return list(overrides)


@torch.no_grad()
def _load_peft_tensors(model: nn.Module, tensors: dict[str, Tensor], where: str) -> None:
    """Load the adapter's tensors with peft's own loader after checking names and shapes; then require that peft's
    state of the backbone is exactly the file's (bit for bit, in the model's dtype)."""
    from peft import set_peft_model_state_dict

    expected = _state_dict_of_peft(model)
    missing, unexpected = sorted(set(expected) - set(tensors)), sorted(set(tensors) - set(expected))
    if missing or unexpected:
        raise ValueError(f"{where} does not fit degmix-tuning's layers: missing {missing[:3]}, unexpected "
                         f"{unexpected[:3]}; make the adapter with the same peft method and options")
    for key, value in tensors.items():
        if tuple(value.shape) != tuple(expected[key].shape):
            raise ValueError(f"{where}: {key} has shape {tuple(value.shape)}, the backbone's layer needs "
                             f"{tuple(expected[key].shape)}; it was made for another base model or rank")
    prefix = _network_prefix(model.backbone)
    cast = {k: v.to(expected[k].dtype) for k, v in tensors.items()}
    result = set_peft_model_state_dict(model.backbone, {prefix + k: v for k, v in cast.items()},
                                       adapter_name=ADAPTER_NAME)
    loaded = _state_dict_of_peft(model)
    differ = [k for k in cast if not torch.equal(loaded[k], cast[k])]
    if result.unexpected_keys or differ:
        raise RuntimeError(f"peft did not load {where} exactly ({(result.unexpected_keys or differ)[:3]}); this is a "
                           "bug in degmix_tuning, please report it")


@torch.no_grad()
def _load_rest(model: nn.Module, trainable: dict[str, Tensor], owned: set[str], rest: dict[str, Tensor], meta: dict,
               path: Path, allow_backbone_mismatch: bool) -> None:
    """The head file: its trainable part is loaded; its frozen part (stage norms) must equal the rebuilt backbone's,
    and the frozen weights must be the exported run's (its fingerprint), unless allowed."""
    import warnings

    from .backbones.base import state_digest
    from .tuning.state import key_mismatch

    frozen_keys = set(meta.get("frozen_keys", []))
    head = {k: v for k, v in rest.items() if k not in frozen_keys}
    mismatch = key_mismatch({k: v for k, v in trainable.items() if k not in owned}, head)
    if mismatch:
        raise ValueError(f"{str(path)!r} does not fit the model built here: {mismatch}; import with the model it was "
                         f"exported from (no --preset/--config), or --no-head")
    state = model.state_dict()
    differ = sorted(k for k in frozen_keys if k not in state or not torch.equal(state[k], rest[k]))
    rebuilt = {k: v for k, v in state.items() if k not in trainable}
    digest = meta.get("rebuilt_state_sha256")
    if differ or (digest is not None and state_digest(rebuilt) != digest):
        what = f" (e.g. {differ[0]})" if differ else ""
        msg = (f"{str(path)!r} comes from a run on other frozen backbone weights than the ones built here{what}; pass "
               f"the weights that run used (--checkpoint-path / --pretrained / --seed)")
        if not allow_backbone_mismatch:
            raise ValueError(msg + ", or accept the difference with --allow-backbone-mismatch")
        warnings.warn(msg + "; imported anyway (allow_backbone_mismatch)", stacklevel=3)
    for key, value in head.items():
        if tuple(value.shape) != tuple(trainable[key].shape):
            raise ValueError(f"{str(path)!r}: {key} has shape {tuple(value.shape)}, the model "
                             f"{tuple(trainable[key].shape)}; import with the model it was exported from")
        trainable[key].copy_(value)


__all__ = [
    "ExportResult", "ImportResult", "PEFT_CONFIG_NAME", "PEFT_WEIGHTS_NAME", "REST_NAME", "compare_configs",
    "derive_tuning_kwargs", "export_peft", "import_peft", "read_peft_adapter", "read_rest",
]
