"""FLOPs in the convention of the published DeGMix figures (reporting/flops.py).

The pinned totals are what ptflops 0.6.9 `get_model_complexity_info` prints for the official DeMTG code (torch-1.8
attention semantics, NYUD 4 tasks, 1x3x425x560), measured once outside the project: Swin-T 125,489,624,260,
Swin-S 145,838,040,772, Swin-L (window 12) 321,223,667,668 MACs; the README prints 125.49G / 145.84G / 321.22G.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from degmix_tuning.reporting.flops import (
    build_for_count,
    count_matmul_macs,
    count_published_convention,
    mha_macs,
    preset_flops,
)
from degmix_tuning.reporting.published import PUBLISHED_FLOPS, published_flops

OFFICIAL_PTFLOPS = {  # ptflops 0.6.9 on the official DeMTG model, 1x3x425x560, MACs
    "degmix_swin_t_nyud": 125_489_624_260,
    "degmix_swin_s_nyud": 145_838_040_772,
    "degmix_swin_l_nyud": 321_223_667_668,
}


@pytest.fixture(scope="module")
def swin_t():
    """The published configuration of Swin-T (official task interaction) on the meta device, and its count."""
    model = build_for_count("degmix_swin_t_nyud", interaction="official")
    return model, count_published_convention(model, (425, 560))


def test_swin_t_reproduces_the_published_figure(swin_t):
    _, count = swin_t
    assert count.total == OFFICIAL_PTFLOPS["degmix_swin_t_nyud"]
    assert f"{count.total / 1e9:.2f}" == published_flops("swin_t", "nyud").printed == "125.49"
    assert sum(count.parts.values()) == count.total and set(count.parts) == {"backbone", "encoder", "decoder", "heads"}


@pytest.mark.parametrize("preset", ["degmix_swin_s_nyud", "degmix_swin_l_nyud"])
def test_swin_s_and_l_reproduce_the_published_figures(preset):
    row = preset_flops(preset, interaction="official", matmul=False)
    assert row.macs == OFFICIAL_PTFLOPS[preset]
    assert row.published is not None and f"{row.macs / 1e9:.2f}" == row.published.printed


def _official_head_ptflops(c_in: int, d: int, h: int, w: int, task_channels: list[int], heads: int = 2,
                           k: int = 3, depth: int = 2, d_ff: int = 512) -> int:
    """ptflops 0.6.9's count of the official DeMTG head, module by module, written out by hand."""
    p, t = h * w, len(task_channels)
    mid, half, off = c_in // 8, d_ff // 2, 2 * k * k
    mha_per_token = d + 3 * d * d + 3 * d + heads * (2 * (d // heads) + 1) + d * (d + 1)  # length-1 sequences
    total = p * c_in * d + d  # linear1 (its LayerNorm: 0)
    block = (p * d * d + p * d  # 1x1 conv + bias
             + p * d + 2 * p * d  # GELU, BN
             + p * k * k * d * off + p * off  # offset proposal conv
             + p * k * k * off * d + p * 2 * d  # offset conv: 2k^2 -> 2d, groups=2: k^2 * 2k^2 * d per pixel
             + p * d + 2 * p * d)  # GELU, BN after the deformable op (the op itself: 0)
    total += t * depth * block
    total += t * p * mha_per_token + t * p * d * d + d  # task interaction (batch T*N, length 1) + smlp
    total += t * (p * mha_per_token + p * d * d + d)  # task queries (batch N, length 1) + smlp2
    total += t * (p * d * d_ff + d_ff + p * d_ff + p * half * half + p * half + p * half * d + d)  # gMLP
    total += sum(p * 9 * d * mid + 2 * p * mid + p * mid + p * mid * n + p * n for n in task_channels)  # heads
    return total


def test_head_count_equals_the_official_head_written_out(swin_t):
    parts = swin_t[1].parts
    head = parts["encoder"] + parts["decoder"] + parts["heads"]
    assert head == _official_head_ptflops(1440, 256, 107, 140, [40, 1, 3, 1])
    tiny = build_for_count("degmix_tuning_tiny_nyud", interaction="official")
    parts = count_published_convention(tiny, (64, 96)).parts
    assert parts["encoder"] + parts["decoder"] + parts["heads"] == _official_head_ptflops(240, 32, 16, 24, [40, 1])


def test_meta_count_equals_the_count_on_real_tensors():
    """The meta path skips the deformable op's arithmetic; the counts (module calls and shapes) are the same."""
    size = (50, 70)  # not a multiple of the patch or the window: the padded shapes count
    for mode in ("official", "global"):
        real = build_for_count("degmix_tuning_tiny_nyud", device="cpu", interaction=mode)
        meta = build_for_count("degmix_tuning_tiny_nyud", interaction=mode)
        assert count_published_convention(real, size).parts == count_published_convention(meta, size).parts
        assert count_matmul_macs(real, size).parts == count_matmul_macs(meta, size).parts
        assert real.training and real.head.mixers["depth"][0].spatial_mix[0].impl == "auto"  # restored


def test_multihead_attention_formula_and_the_sequence_first_reading():
    mha = nn.MultiheadAttention(16, 2)
    counted = {}
    from degmix_tuning.reporting.flops import MODULE_RULES

    mha.register_forward_hook(lambda m, i, o: counted.setdefault("n", MODULE_RULES[nn.MultiheadAttention](m, i, o)))
    x = torch.randn(5, 3, 16)  # sequence-first: length 5, batch 3
    mha(x, x, x)
    hd = 8
    by_hand = 3 * (5 * 16 + 3 * 5 * 16 * 16 + 3 * 5 * 16 + 2 * (5 * 5 * hd + 5 * 5 + 5 * 5 * hd) + 5 * 16 * 17)
    assert counted["n"] == by_hand == mha_macs(5, 5, 5, 3, 16, 2)


def test_matmul_count_sees_what_the_convention_leaves_out(swin_t):
    model, count = swin_t
    plain = count_matmul_macs(model, (425, 560))
    deform = 4 * 2 * 107 * 140 * 256 * 256  # T * depth * H*W * d^2: the deformable op's 1x1 channel mix
    assert plain.parts["encoder"] - deform == count.parts["encoder"] - _norms_acts_biases_of_the_encoder()
    # Swin's window-attention matmuls are in it (and no GELU): 22.30 vs 21.65 GMACs
    assert round(plain.parts["backbone"] / 1e9, 2) == 22.30 and round(count.parts["backbone"] / 1e9, 2) == 21.65


def _norms_acts_biases_of_the_encoder(p: int = 107 * 140, d: int = 256, t: int = 4, depth: int = 2) -> int:
    """What ptflops adds to the encoder's matmuls: linear1's bias (once), conv biases, GELUs, BatchNorms."""
    return d + t * depth * (p * d + 3 * p * d + p * 18 + p * 2 * d + 3 * p * d)


def test_published_figures_are_recorded_as_printed():
    printed = {(r.backbone, r.dataset): r.printed for r in PUBLISHED_FLOPS}
    assert printed == {("swin_t", "nyud"): "125.49", ("swin_s", "nyud"): "145.84", ("swin_b", "nyud"): "-",
                       ("swin_l", "nyud"): "321.22"}
    assert published_flops("swin_b", "nyud").gflops is None
    assert published_flops("swin_t", "nyud", ("semseg", "depth")) is None  # another task set: no figure


def test_models_flops_command_prints_ours_next_to_the_published_figure(capsys):
    from degmix_tuning.cli import main

    assert main(["models", "--flops", "--preset", "degmix_swin_t_nyud", "--interaction", "official",
                 "--no-matmul"]) == 0
    out = capsys.readouterr().out
    row = [line for line in out.splitlines() if "degmix_swin_t_nyud" in line]
    assert len(row) == 1 and "125.49 " in row[0] and "125.49G" in row[0] and "match" in row[0]
    assert "ptflops 0.6" in out and "3x425x560" in out


def test_published_cells_and_the_extra_row_in_the_published_configuration(monkeypatch):
    from degmix_tuning.reporting import flops

    figure = published_flops("swin_t", "nyud")

    def fake(name, size=None, interaction=None, matmul=True):
        mode = interaction or "global"
        macs = OFFICIAL_PTFLOPS.get(name, 10**9) if mode == "official" else 2 * 10**12
        pub = figure if name == "degmix_swin_t_nyud" and mode == "official" else None
        return flops.PresetFlops(name, "nyud", (), (425, 560), mode, macs, None, pub)

    monkeypatch.setattr(flops, "preset_flops", fake)
    rows = flops.preset_flops_rows(["degmix_swin_t_nyud", "degmix_tuning_swin_t_nyud"])
    assert [label for label, _ in rows] == ["degmix_swin_t_nyud", "degmix_swin_t_nyud (interaction=official)",
                                            "degmix_tuning_swin_t_nyud"]
    cells = [flops.published_cells(r) for _, r in rows]
    assert cells == [("(125.49G)", ""), ("125.49G", "match"), ("", "")]
    assert [label for label, _ in flops.preset_flops_rows(["degmix_swin_t_nyud"], interaction="global")] == [
        "degmix_swin_t_nyud"]  # a forced mode: no extra row
    off = fake("degmix_swin_t_nyud", interaction="official")
    off.macs += 10**8
    assert flops.published_cells(off) == ("125.49G", "+0.10")
    b = fake("degmix_swin_b_nyud", interaction="official")
    assert flops.published_cells(b) == ("-G", "")
