"""The grid_sample deformable conv (models/deform_ops.py) against torchvision's `deform_conv2d`.

They may be swapped only if they are equivalent. Equivalence here means the same forward (float32 rounding; 1e-12
in float64) and the same input, offset, weight and bias gradients (float64) for every offset. That includes
samples outside the map, exactly on its borders and exactly on integer coordinates.

The first tests pin the torchvision conventions that the grid_sample formulation relies on:

- offset[:, 2c] is dy (rows) and offset[:, 2c+1] is dx;
- bilinear interpolation with zeros outside, so y <= -1 or y >= H gives 0;
- at an integer coordinate the offset gradient is the one-sided derivative of the cell to the right or below
  ([floor(y), floor(y) + 1]). This holds at y = -1 (the value is 0, the dy gradient comes from row 0) and at
  y = H - 1 (the gradient is 0 - v[H-1]). At y = H everything is 0.

If a torchvision upgrade changes one of these conventions, these tests fail before the equivalence tests do.
"""

from __future__ import annotations

import pytest
import torch
from torchvision.ops import deform_conv2d

from degmix_tuning import DeGMixConfig
from degmix_tuning.models import deformable_mixer
from degmix_tuning.models.deform_ops import deform_conv1x1_grid_sample
from degmix_tuning.models.deformable_mixer import ChannelDeformableConv, resolve_deform_impl
from degmix_tuning.models.degmix import DeGMixHead

F64 = torch.float64


def _inputs(b, c, h, w, offset, dtype=F64, c_out=None, seed=0):
    """x, offset, weight, bias, upstream gradient: O(1) data, drawn in float64 then cast (same values per dtype)."""
    g = torch.Generator().manual_seed(seed)
    c_out = c_out or c
    x = torch.randn(b, c, h, w, generator=g, dtype=F64)
    weight = torch.randn(c_out, c, 1, 1, generator=g, dtype=F64) / c**0.5
    bias = torch.randn(c_out, generator=g, dtype=F64)
    grad = torch.randn(b, c_out, h, w, generator=g, dtype=F64)
    return [t.to(dtype) for t in (x, offset, weight, bias, grad)]


def _run(op, x, offset, weight, bias, grad):
    """Output and gradients (input, offset, weight, bias) of op for the upstream gradient `grad`."""
    leaves = [t.detach().clone().requires_grad_(True) for t in (x, offset, weight, bias)]
    out = op(*leaves)
    grads = torch.autograd.grad(out, leaves, grad)
    return [out.detach(), *grads]


NAMES = ("output", "grad_input", "grad_offset", "grad_weight", "grad_bias")


def _assert_same(got, want, atol, rtol=0.0):
    for name, a, b in zip(NAMES, got, want):
        torch.testing.assert_close(a, b, atol=atol, rtol=rtol, msg=lambda m: f"{name}: {m}")


def _random_offsets(b, c, h, w, scale, seed=1):
    """Offsets of magnitude up to several pixels, plus whole rows and columns shifted exactly onto the borders."""
    g = torch.Generator().manual_seed(seed)
    off = scale * torch.randn(b, c, 2, h, w, generator=g, dtype=F64)
    rows = torch.arange(h, dtype=F64).view(h, 1)
    cols = torch.arange(w, dtype=F64)
    off[:, 0, 0, :, :] = -1 - rows  # channel 0 samples row y = -1 exactly
    off[:, 1, 0, :, :] = h - 1 - rows + 1e-9  # channel 1: y = H-1+1e-9 (just inside the last cell)
    off[:, 1, 1, :, :] = w - cols  # ... and x = W exactly (outside)
    if c > 2:
        off[:, 2, 1, :, :] = -1 - cols + 0.25  # channel 2: x = -0.75
    return off.reshape(b, 2 * c, h, w)


def _integer_offsets(b, c, h, w, seed=2):
    """Integer sample coordinates from -2 to H+1 (W+1), and their float64 neighbours one ulp away."""
    g = torch.Generator().manual_seed(seed)
    oy = torch.randint(-h - 2, h + 2, (b, c, 1, h, w), generator=g).to(F64)
    ox = torch.randint(-w - 2, w + 2, (b, c, 1, h, w), generator=g).to(F64)
    off = torch.cat([oy, ox], dim=2)
    side = torch.randint(-1, 2, off.shape, generator=g)  # -1: one ulp below, 0: exact, 1: one ulp above
    off = torch.where(side < 0, torch.nextafter(off, torch.tensor(-1e9, dtype=F64)), off)
    off = torch.where(side > 0, torch.nextafter(off, torch.tensor(1e9, dtype=F64)), off)
    return off.reshape(b, 2 * c, h, w)


def _pixel(op, x, dy, dx):
    """Value and (d/d dy, d/d dx) of a single-channel op at output pixel (0, 0) with offset (dy, dx) there."""
    h, w = x.shape[-2:]
    off = torch.zeros(1, 2, h, w, dtype=F64)
    off[0, 0, 0, 0], off[0, 1, 0, 0] = dy, dx
    off.requires_grad_(True)
    out = op(x, off, torch.ones(1, 1, 1, 1, dtype=F64), torch.zeros(1, dtype=F64))[0, 0, 0, 0]
    (g,) = torch.autograd.grad(out, off)
    return out.item(), g[0, 0, 0, 0].item(), g[0, 1, 0, 0].item()


# ------------------------------------------------------------------------------------------ torchvision conventions
@pytest.mark.parametrize("op", [deform_conv2d, deform_conv1x1_grid_sample], ids=["torchvision", "grid_sample"])
def test_conventions_dy_dx_order_zero_outside_and_right_side_gradients(op):
    h, w = 4, 5
    x = (torch.arange(h * w, dtype=F64) ** 1.5).view(1, 1, h, w)  # non-linear: derivatives differ between cells
    v = x[0, 0]
    # the first offset of the pair moves along rows
    assert _pixel(op, x, 1.0, 0.0)[0] == pytest.approx(v[1, 0].item())
    assert _pixel(op, x, 0.0, 1.0)[0] == pytest.approx(v[0, 1].item())
    # zero outside: y = H, x = W, and beyond
    for dy, dx in [(h, 0.3), (0.3, w), (-1.5, 2.0), (2.0, w + 0.5), (-1.0 - 1e-12, 0.0)]:
        assert _pixel(op, x, dy, dx)[0] == 0.0
    # y = -1 and x = -1: torchvision returns an exact 0 there. grid_sample gets the coordinate through its
    # normalised round trip, so it can land a few ulps inside the map and give a rounding-size value
    # (6.7e-17 here, with |v| <= 86). Both gradients are the same (below).
    for dy, dx in [(-1.0, 0.3), (0.3, -1.0)]:
        assert _pixel(op, x, dy, dx)[0] == (0.0 if op is deform_conv2d else pytest.approx(0.0, abs=1e-14))
    # at y = -1 the value is 0 but the dy gradient is the right-side one, from row 0: (1-0.3) v[0,0] + 0.3 v[0,1]
    assert _pixel(op, x, -1.0, 0.3)[1] == pytest.approx(0.7 * v[0, 0].item() + 0.3 * v[0, 1].item())
    # at y = H every gradient is 0; at y = H-1 the dy gradient is the right-side one, 0 - v[H-1, .]
    assert _pixel(op, x, float(h), 0.0)[1:] == (0.0, 0.0)
    assert _pixel(op, x, h - 1.0, 0.0)[1] == pytest.approx(-v[h - 1, 0].item())
    assert _pixel(op, x, h - 1 + 1e-9, 0.0)[0] == pytest.approx((1 - 1e-9) * v[h - 1, 0].item())
    # interior integer position: right-side derivatives v[2,2]-v[1,2] (dy) and v[1,3]-v[1,2] (dx)
    _, gy, gx = _pixel(op, x, 1.0, 2.0)
    assert gy == pytest.approx((v[2, 2] - v[1, 2]).item()) and gx == pytest.approx((v[1, 3] - v[1, 2]).item())


# ------------------------------------------------------------------------------------------ equivalence
@pytest.mark.parametrize("batch", [1, 2])
def test_forward_float32_matches_torchvision(batch):
    c, h, w = 16, 20, 24
    args = _inputs(batch, c, h, w, _random_offsets(batch, c, h, w, scale=4.0), dtype=torch.float32)
    got = deform_conv1x1_grid_sample(*args[:4])
    want = deform_conv2d(*args[:4])
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("batch", [1, 2])
@pytest.mark.parametrize("scale", [0.7, 4.0], ids=["subpixel", "several_pixels"])
def test_forward_and_gradients_float64_match_torchvision(batch, scale):
    c, h, w = 8, 11, 14
    off = _random_offsets(batch, c, h, w, scale)
    args = _inputs(batch, c, h, w, off, c_out=6)
    _assert_same(_run(deform_conv1x1_grid_sample, *args), _run(deform_conv2d, *args), atol=1e-12)


@pytest.mark.parametrize("batch", [1, 2])
def test_integer_and_one_ulp_coordinates_pick_torchvisions_cell(batch):
    """On integer lines (and one ulp off them) both ops use the same bilinear cell, so the offset gradients, where
    bilinear interpolation has a kink, agree as well. Without `_normalised_grid`'s cell fix about 11% of integer
    positions took the other side in float64."""
    c, h, w = 6, 9, 13
    args = _inputs(batch, c, h, w, _integer_offsets(batch, c, h, w))
    _assert_same(_run(deform_conv1x1_grid_sample, *args), _run(deform_conv2d, *args), atol=1e-12)


@pytest.mark.parametrize("hw", [(1, 1), (1, 6), (5, 1), (2, 2)])
def test_tiny_maps(hw):
    """H or W = 1: align_corners=True cannot address a size-1 axis, so the op pads it with a zero row/column."""
    h, w = hw
    off = 1.7 * torch.randn(2, 6, h, w, generator=torch.Generator().manual_seed(3), dtype=F64)
    args = _inputs(2, 3, h, w, off)
    _assert_same(_run(deform_conv1x1_grid_sample, *args), _run(deform_conv2d, *args), atol=1e-12)


@pytest.mark.parametrize("batch", [1, 2])
def test_gradcheck_float64(batch):
    c, h, w = 3, 4, 5
    g = torch.Generator().manual_seed(4)
    # whole-pixel offsets from -7 to 6 (many samples outside) plus a fraction in [0.1, 0.9]: gradcheck's finite
    # differences never cross an integer line, where the bilinear derivative jumps
    off = torch.randint(-7, 7, (batch, 2 * c, h, w), generator=g) + 0.1 + 0.8 * torch.rand(
        batch, 2 * c, h, w, generator=g, dtype=F64)
    x, off, weight, bias, _ = _inputs(batch, c, h, w, off, c_out=2)
    leaves = [t.requires_grad_(True) for t in (x, off, weight, bias)]
    assert torch.autograd.gradcheck(deform_conv1x1_grid_sample, leaves, eps=1e-6, atol=1e-8)


@pytest.mark.parametrize("batch", [1, 2])
def test_rows_outside_give_zeros_exactly_where_torchvision_does(batch):
    c, h, w = 4, 7, 9
    rows = torch.arange(h, dtype=F64).view(h, 1)
    off = torch.zeros(batch, c, 2, h, w, dtype=F64)
    off[:, 0, 0] = -1 - rows - 0.5  # every row above the map
    off[:, 1, 0] = h - rows  # y = H exactly
    off[:, 2, 0] = h + 3.25  # far below
    off[:, 3, 1] = -9.0  # x far left
    off[:, :, :, 2:4] = 0.3  # two columns stay inside
    x, off, _, _, grad = _inputs(batch, c, h, w, off.reshape(batch, 2 * c, h, w))
    eye, zero = torch.eye(c, dtype=F64).view(c, c, 1, 1), torch.zeros(c, dtype=F64)  # output = the sampled maps
    got = _run(deform_conv1x1_grid_sample, x, off, eye, zero, grad)
    want = _run(deform_conv2d, x, off, eye, zero, grad)
    assert torch.equal(got[0] == 0, want[0] == 0) and (want[0] == 0).float().mean() > 0.7
    assert (got[0][want[0] == 0] == 0).all()
    assert torch.equal(got[2] == 0, want[2] == 0)  # offset gradients vanish at the same samples
    _assert_same(got, want, atol=1e-12)


def test_bad_shapes_are_rejected():
    with pytest.raises(ValueError, match="offset"):
        deform_conv1x1_grid_sample(torch.zeros(1, 3, 4, 4), torch.zeros(1, 3, 4, 4), torch.zeros(3, 3, 1, 1))
    with pytest.raises(ValueError, match="weight"):
        deform_conv1x1_grid_sample(torch.zeros(1, 3, 4, 4), torch.zeros(1, 6, 4, 4), torch.zeros(3, 3, 3, 3))


# ------------------------------------------------------------------------------------------ selection and model
def _count_calls(monkeypatch):
    calls = {"grid_sample": 0, "torchvision": 0}

    def counted(name, fn):
        def wrapper(*args, **kwargs):
            calls[name] += 1
            return fn(*args, **kwargs)
        return wrapper

    monkeypatch.setattr(deformable_mixer, "deform_conv1x1_grid_sample",
                        counted("grid_sample", deformable_mixer.deform_conv1x1_grid_sample))
    monkeypatch.setattr(deformable_mixer, "deform_conv2d", counted("torchvision", deformable_mixer.deform_conv2d))
    return calls


@pytest.mark.parametrize("impl, expected", [("auto", "grid_sample"), ("grid_sample", "grid_sample"),
                                            ("torchvision", "torchvision")])
def test_impl_selection_on_cpu(monkeypatch, impl, expected):
    calls = _count_calls(monkeypatch)
    conv = ChannelDeformableConv(4, impl=impl)
    conv(torch.randn(1, 4, 5, 6))
    assert calls == {"grid_sample": int(expected == "grid_sample"), "torchvision": int(expected == "torchvision")}


def test_auto_keeps_torchvision_off_cpu_and_names_are_validated():
    assert resolve_deform_impl("auto", torch.device("cpu")) == "grid_sample"
    assert resolve_deform_impl("auto", torch.device("cuda")) == "torchvision"  # not tested there: not by default
    assert resolve_deform_impl("grid_sample", torch.device("cuda")) == "grid_sample"
    with pytest.raises(ValueError, match="deform_impl"):
        DeGMixConfig(deform_impl="fast")
    with pytest.raises(ValueError, match="deform_impl"):
        ChannelDeformableConv(4, impl="fast")


def test_autocast_runs_both_impls_in_float32():
    torch.manual_seed(0)
    conv = ChannelDeformableConv(8)
    x = torch.randn(2, 8, 6, 7)
    outs = {}
    for impl in ("grid_sample", "torchvision"):
        conv.impl = impl
        with torch.autocast("cpu", dtype=torch.bfloat16):
            outs[impl] = conv(x)
    assert outs["grid_sample"].dtype == outs["torchvision"].dtype == torch.float32
    torch.testing.assert_close(outs["grid_sample"], outs["torchvision"], atol=1e-5, rtol=1e-5)


def _head(impl: str) -> DeGMixHead:
    torch.manual_seed(0)
    cfg = DeGMixConfig(dim=16, gate_hidden=32, interaction="pixel", deform_impl=impl)
    head = DeGMixHead([8, 16, 32, 64], {"semseg": 5, "depth": 1}, cfg).double()
    with torch.no_grad():
        for p in head.parameters():  # opens the zero-initialised offset proposal and gates
            p.add_(0.05 * torch.randn_like(p))
    return head


@pytest.mark.parametrize("batch", [1, 2])
def test_whole_head_same_outputs_and_gradients_with_both_impls(monkeypatch, batch):
    calls = _count_calls(monkeypatch)
    heads = {impl: _head(impl) for impl in ("grid_sample", "torchvision")}
    sd_gs, sd_tv = heads["grid_sample"].state_dict(), heads["torchvision"].state_dict()
    assert list(sd_gs) == list(sd_tv) and all(torch.equal(sd_gs[k], sd_tv[k]) for k in sd_gs)  # no new keys
    g = torch.Generator().manual_seed(5)
    feats = [torch.randn(batch, ch, *hw, generator=g, dtype=F64)
             for ch, hw in zip([8, 16, 32, 64], [(8, 10), (4, 5), (2, 3), (1, 2)])]
    res = {}
    for impl, head in heads.items():
        out = head(feats, (16, 20))
        loss = sum((o * torch.linspace(-1, 1, o.numel(), dtype=F64).view_as(o)).sum() for o in out.values())
        res[impl] = (out, dict(zip([n for n, _ in head.named_parameters()],
                                   torch.autograd.grad(loss, list(head.parameters())))))
    assert calls["grid_sample"] == calls["torchvision"] == 2 * 2  # 2 tasks x 2 mixer blocks each
    (out_gs, grad_gs), (out_tv, grad_tv) = res["grid_sample"], res["torchvision"]
    for t in out_tv:
        torch.testing.assert_close(out_gs[t], out_tv[t], atol=1e-10, rtol=0)
    for n in grad_tv:
        torch.testing.assert_close(grad_gs[n], grad_tv[n], atol=1e-10, rtol=1e-10, msg=lambda m: f"{n}: {m}")


@pytest.mark.gpu
@pytest.mark.parametrize("scale", [0.7, 4.0], ids=["subpixel", "several_pixels"])
def test_on_cuda_grid_sample_matches_torchvision_in_float64(scale):
    """The check that decides whether "auto" may pick grid_sample on CUDA too (GRID_SAMPLE_DEVICES is CPU only)."""
    c, h, w = 8, 11, 14
    args = [t.cuda() for t in _inputs(2, c, h, w, _random_offsets(2, c, h, w, scale), c_out=6)]
    _assert_same(_run(deform_conv1x1_grid_sample, *args), _run(deform_conv2d, *args), atol=1e-12)
    cpu = _run(deform_conv2d, *[t.cpu() for t in args])
    _assert_same([t.cpu() for t in _run(deform_conv2d, *args)], cpu, atol=1e-12)  # CUDA op = CPU op
