"""Mixed precision: the launcher's choice holds, a recipe's explicit choice wins over it (and says so), and the
deformable mixers' sampling positions stay float32 under any autocast."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from degmix_tuning.models.deformable_mixer import ChannelDeformableConv
from degmix_tuning.training.config import ExperimentConfig
from degmix_tuning.training.engine import train
from degmix_tuning.training.protocols import protocol_differences
from degmix_tuning.training.recipe import build_parser, config_from_args, main as recipe_main

ENV = "ACCELERATE_MIXED_PRECISION"  # what `accelerate launch --mixed_precision` and `accelerate config` set


def _tiny(out: Path, *extra: str) -> ExperimentConfig:
    return ExperimentConfig().override([
        "model.backbone=tiny_swin", "model.head.dim=32", "model.tasks=semseg,depth",
        "data.synthetic=true", "data.synthetic_n=24", "data.synthetic_size=48,64", "data.num_workers=0",
        "train.batch_size=4", "train.lr=0.05", "train.max_steps=3", "train.eval_every=0", "train.checkpoint_every=0",
        "train.log_every=1", "train.eval_at_start=false", "train.max_eval_batches=1", "train.trackers=csv",
        f"train.output_dir={out}", *extra,
    ])


def _logged_losses(run_dir: Path) -> list[float]:
    rows = [r.split(",") for r in (run_dir / "log.csv").read_text().splitlines()[1:]]
    return [float(v) for _, key, v in rows if key == "train/loss"]


def _autocast_seen(monkeypatch) -> list:
    """(enabled, dtype) of CPU autocast inside every forward of the head during training."""
    from degmix_tuning.models.multitask import MultiTaskModel

    seen = []
    real = MultiTaskModel.forward

    def recording(self, images, features=None):
        if self.training:
            seen.append((torch.is_autocast_enabled("cpu"), torch.get_autocast_dtype("cpu")))
        return real(self, images, features)

    monkeypatch.setattr(MultiTaskModel, "forward", recording)
    return seen


def test_the_launchers_bf16_holds_in_a_training_run(tmp_path, synthetic_cache, monkeypatch, capsys):
    monkeypatch.delenv(ENV, raising=False)
    result = train(_tiny(tmp_path / "fp32"), show_progress=False)
    fp32 = _logged_losses(tmp_path / "fp32")
    saved = json.loads((tmp_path / "fp32" / "config.json").read_text())
    assert saved["train"]["mixed_precision"] is None and result.summary["mixed_precision"] == "no"  # none chosen
    assert "train.mixed_precision" not in saved["protocol_overrides"]  # fp32, as the degmix protocol
    assert "mixed precision no: train.mixed_precision; the launcher chose none" in capsys.readouterr().out

    monkeypatch.setenv(ENV, "bf16")  # as `accelerate launch --mixed_precision bf16 recipe.py` leaves it
    seen = _autocast_seen(monkeypatch)
    result = train(_tiny(tmp_path / "bf16"), show_progress=False)
    out = capsys.readouterr().out
    assert seen and all(s == (True, torch.bfloat16) for s in seen)  # every training forward ran under bf16 autocast
    saved = json.loads((tmp_path / "bf16" / "config.json").read_text())
    assert saved["train"]["mixed_precision"] == "bf16"  # the precision used, recorded
    assert saved["protocol_overrides"]["train.mixed_precision"] == ["no", "bf16"]  # over the degmix protocol's fp32
    assert result.summary["mixed_precision"] == "bf16"
    assert [line for line in out.splitlines() if "mixed precision" in line] == [
        "[degmix-tuning] mixed precision bf16: the launcher's choice (ACCELERATE_MIXED_PRECISION)"]
    bf16 = _logged_losses(tmp_path / "bf16")
    assert len(bf16) == len(fp32) == 3
    assert bf16 != fp32  # a real effect: the same steps give other losses than in float32
    assert bf16 == pytest.approx(fp32, rel=0.05)  # ... and still the same training


def test_an_explicit_precision_wins_over_the_launcher_and_says_so(tmp_path, synthetic_cache, monkeypatch, capsys):
    monkeypatch.setenv(ENV, "bf16")
    seen = _autocast_seen(monkeypatch)
    result = train(_tiny(tmp_path / "no", "train.max_steps=1", "train.mixed_precision=no"), show_progress=False)
    out = capsys.readouterr().out
    assert seen and not any(enabled for enabled, _ in seen)
    assert result.summary["mixed_precision"] == "no"
    lines = [line for line in out.splitlines() if "mixed precision" in line]
    assert lines == ["[degmix-tuning] mixed precision no: set by train.mixed_precision, which wins over the "
                     "launcher's bf16 (ACCELERATE_MIXED_PRECISION)"]


def _cfg(argv: list[str]) -> ExperimentConfig:
    return config_from_args(build_parser("nyud").parse_args(argv), "nyud")


def test_the_launcher_overrides_a_protocol_value_and_a_flag_overrides_both(monkeypatch):
    monkeypatch.setenv(ENV, "bf16")
    cfg = _cfg(["--synthetic"])  # protocol degmix: fp32
    assert cfg.train.mixed_precision == "bf16"
    assert protocol_differences(cfg)["train.mixed_precision"] == ["no", "bf16"]
    cfg = _cfg(["--synthetic", "--protocol", "mtlora", "--max-steps", "2"])  # protocol mtlora: fp16
    assert cfg.train.mixed_precision == "bf16"
    assert protocol_differences(cfg)["train.mixed_precision"] == ["fp16", "bf16"]
    for argv in (["--mixed-precision", "no"], ["--set", "train.mixed_precision=no"]):
        cfg = _cfg(["--synthetic", *argv])
        assert cfg.train.mixed_precision == "no" and "train.mixed_precision" not in protocol_differences(cfg)
    # `accelerate launch` without a precision writes "no": that is no choice, the protocol's value stays
    monkeypatch.setenv(ENV, "no")
    assert _cfg(["--synthetic", "--protocol", "mtlora"]).train.mixed_precision == (
        "fp16" if torch.cuda.is_available() else "no")


@pytest.mark.skipif(torch.cuda.is_available(), reason="fp16 is refused only without CUDA")
def test_the_launchers_fp16_on_cpu_is_refused_in_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(ENV, "fp16")
    code = recipe_main("nyud", ["--synthetic", "--no-progress", "--backbone", "tiny_swin", "--output-dir",
                                str(tmp_path / "x"), "--max-steps", "1"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "fp16" in err and "CUDA" in err and "ACCELERATE_MIXED_PRECISION" in err


def test_an_unset_precision_is_the_launchers_or_no():
    assert ExperimentConfig().train.mixed_precision is None
    with pytest.raises(ValueError, match="train.mixed_precision"):
        ExperimentConfig().override(["train.mixed_precision=fp8"])


# --- deformable sampling positions under autocast -----------------------------------------------------------------

def _deform_conv(dim: int = 32) -> ChannelDeformableConv:
    torch.manual_seed(0)
    conv = ChannelDeformableConv(dim)  # absolute 1-based coordinates, as the official code
    with torch.no_grad():
        conv.offsets.proposal.weight.normal_(0, 0.05)  # zero-initialised: make the proposals non-trivial
    return conv


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_sampling_positions_stay_float32_under_autocast(dtype):
    """At 107x140 the absolute coordinates reach 140: in bf16 their spacing there is 1 px, and the offsets (up to
    ~200 px here) came out up to 1.1 px off (fp16: 0.14 px). The positions must be float32 under autocast; the
    mixer's output may differ from float32 by the rounding of values to `dtype` only."""
    conv = _deform_conv()
    x = torch.randn(2, 32, 107, 140)
    ref_offsets, ref_out = conv.offsets(x), conv(x)
    assert ref_offsets.abs().max() > 100  # far positions: where low precision hurts most
    with torch.autocast("cpu", dtype=dtype):
        offsets = conv.offsets(x)
        rounded = conv.offsets(x.to(dtype))  # as the mixer sees it: its input comes from autocast layers
        out = conv(x.to(dtype))
    assert offsets.dtype == torch.float32 and rounded.dtype == torch.float32
    # sampling positions = integer pixel grid + offsets: the position error is the offset error
    torch.testing.assert_close(offsets, ref_offsets, rtol=0, atol=1e-4)
    assert (rounded - ref_offsets).abs().max() < 0.02  # px: only the rounding of the input values
    eps = torch.finfo(dtype).eps
    assert (out.float() - ref_out).abs().max() < 4 * eps * ref_out.abs().max()
