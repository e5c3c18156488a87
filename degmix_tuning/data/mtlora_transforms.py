"""Joint image+label transforms of the MTLoRA / DiTASK training code, in torch (no OpenCV).

Source: github.com/scale-lab/MTLoRA @333a375 (DiTASK @7541c55 has the same transforms: its data/custom_transforms.py
differs only in whitespace and its mtl_ds.py only in the samplers). "mtl_ds" is data/mtl_ds.py, "ct" is
data/custom_transforms.py, "helpers" is data/helpers.py.

Train (`get_transformations`, mtl_ds l.833-862), in this order:
1. horizontal flip with p = 0.5 (ct l.192-209, numpy `random.random() < 0.5`): every array is mirrored
   (cv2.flip code 1) and the x component of the normals (channel 0) changes sign;
2. scale + rotate (ct l.24-88): PASCAL `ScaleNRotate(rots=(-20, 20), scales=(.75, 1.25))` (mtl_ds l.846-852):
   angle = 40 u1 - 20 degrees, scale = 0.5 u2 + 0.75 (two uniform draws, in that order; the formula centres the
   range on 0 degrees / 1.0 whatever the tuple's midpoint, so only centred ranges are accepted here); NYUD
   `ScaleNRotate(rots=[0], scales=[1.0, 1.2, 1.5])` (mtl_ds l.838-844): angle 0, scale picked from the list.
   cv2.getRotationMatrix2D(centre (w/2, h/2), angle, scale) + cv2.warpAffine to the SAME h x w, border constant 0
   (cv2's defaults), interpolation per label (`flagvals`, mtl_ds l.741-804): image and normals cubic, semseg,
   human_parts, sal, edge and depth nearest. Zoom-out leaves a zero border in every array: image black, semseg /
   human_parts / sal / edge background 0 (not ignore), normals 0 (-> ignore at step 4), depth 0 (-> ignore).
   Before warping, the normals' in-plane component is rotated by the same angle (ct l.74-80:
   n0' = r sin(phi + a), n1' = r cos(phi + a) with phi = atan2(n0, n1), r = |(n0, n1)|; written here as the
   equivalent n0 cos a + n1 sin a, n1 cos a - n0 sin a). After warping, depth is divided by the scale (ct l.83-84).
3. fixed resize to `size` (ct l.94-154, helpers l.60-87; TRAIN.SCALE = (IMG_SIZE, IMG_SIZE), mtl_ds l.818-823), the
   aspect ratio is not kept: image and normals cubic (cv2.INTER_CUBIC), all other labels nearest (cv2.INTER_NEAREST);
   then the normals are renormalised, n / (|n| + float64 eps) (ct l.144-150);
4. ignore regions (ct l.266-292): normals with |n| == 0 -> 255 on all channels; a human_parts map that is all 0
   -> all 255 (also an image whose person was zoomed or rotated out of view); depth 0 -> 255.
   Semseg keeps its 255 pixels; nothing else is marked ignore.
5. to tensor + normalise (ct l.298-341): the image is cast to uint8 (`tmp.astype(np.uint8)`: truncation toward 0,
   and values that cubic interpolation pushed below 0 or above 255 wrap around modulo 256 as numpy does on x86-64,
   e.g. -1.5 -> 255, 256.5 -> 0; C leaves this undefined), then / 255 and ImageNet mean/std.
Eval (mtl_ds l.864-870): steps 3-5 only, with the same interpolation table (config FLAGVALS, not INFER_FLAGVALS):
every validation image and label is resized to `size` (448 x 448 in the released configs), and the metrics are
computed at that size on the resized labels (main.py l.466-484 never maps predictions back to native size).

Input/output convention: that of transforms.py (`to_tensors`: image float 0..255 [3,H,W]; semseg / human_parts /
sal int64 [H,W]; depth / normals / edge float32 [C,H,W]; 255 = ignore; normals/depth/parts already marked 255 by the
readers). The readers' 255 marks are first turned back into MTLoRA's raw encoding (invalid normals and depth 0, a
person-free human_parts map all 0) so that interpolation sees what MTLoRA's arrays hold, and step 4 marks them again.
Other keys pass through unchanged.

How OpenCV is reproduced without it (opencv is not a dependency). OpenCV's arithmetic is written out in torch:
- cubic resize (`resize_cubic`): cv2.resize INTER_CUBIC as OpenCV computes it for float64 input: horizontal then
  vertical pass, source position (i + 0.5) * in / out - 0.5 in float32, OpenCV's interpolateCubic weights (A = -0.75)
  in float32, replicated border, float64 sums. torch's own bicubic `interpolate` differs by up to 0.007 on 0..255,
  enough to flip ~0.06% of the uint8 values, hence not used.
- nearest resize: source index floor(i * in / out) in float64, clipped, as cv2.INTER_NEAREST.
- warps (`warp_affine`): cv2.invertAffineTransform of the same matrix, then warpAffine's fixed point: positions
  times 1024, rounded; nearest takes floor((X + 512) / 1024); cubic keeps 1/32 pixel and uses float32 products of
  the 1/32-pixel weight table, taps outside the image read 0 (BORDER_CONSTANT). torch's grid_sample at exact
  positions differs from OpenCV's 1/32-pixel ones by up to 1/64 pixel (image values off by a few units at sharp
  edges, some nearest labels taken from the neighbouring pixel) and, at integer positions, gives tiny non-zero
  weights that turn invalid (zero) normals next to valid ones into valid unit vectors.
- checked against MTLoRA's own transforms (OpenCV 4.10, float64; PASCAL and NYUD pipelines, flips, angles -20..16,
  scales 0.8..1.5, 375x500 / 333x480 / 480x640 inputs): image, semseg, human_parts, sal and edge identical, ignore
  masks identical, normals and depth equal to float32 rounding. One difference remains where OpenCV's border
  pixels (within 2 pixels of the source edge) sum their taps one by one: last-bit differences there.
  `python tests/fixtures/mtlora_protocol/generate.py <MTLoRA checkout> --check-transforms` repeats the check
  (it needs opencv; this module does not).
- speed: about 0.1-0.15 s per 375x500 PASCAL training sample on one CPU thread (MTLoRA's OpenCV code: ~0.035 s),
  ~0.04 s for evaluation; DataLoader workers hide it on a machine with a few cores per GPU.
- internally float64 (MTLoRA's arrays are float64); outputs are float32 / int64 as in transforms.py.
- randomness comes from the `numpy.random.Generator` passed in (MTLoRA draws from numpy's global RNG), consumed in
  MTLoRA's order: flip, then angle, then scale.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..tasks import IGNORE_INDEX
# hflip (ct l.192-209): mirror every array, negate normals x; MTLoRA's invalid normals are 0 here, so the
# 255-aware flip of the ATRC pipeline negates them to -0 exactly as MTLoRA does
from .transforms import CLASS_LABELS, DENSE_LABELS, IMAGENET_MEAN, IMAGENET_STD, LABEL_KEYS, hflip, normalize

CUBIC = ("image", "normals")  # cv2.INTER_CUBIC in MTLoRA's FLAGVALS (mtl_ds l.741, l.781, l.809); the rest nearest
NORMALS_EPS = float(np.finfo(np.float64).eps)  # ct l.147-148: np.finfo(float).eps

# augmentation of each dataset in get_transformations (mtl_ds l.838-852)
AUGMENTATION = {
    "pascal": {"rotation_range": (-20.0, 20.0), "scale_range": (0.75, 1.25)},
    "nyud": {"rotation_choices": (0.0,), "scale_choices": (1.0, 1.2, 1.5)},
}


# ------------------------------------------------------------------------------------------- raw encoding in/out
def to_mtlora_encoding(sample: dict) -> dict:
    """Readers' 255 marks -> MTLoRA's raw arrays: invalid normals and depth 0, a person-free parts map all 0;
    every array float64 (semseg/parts/sal [H,W], others [C,H,W])."""
    out = dict(sample)
    for key, value in sample.items():
        if key == "image":
            out[key] = value.to(torch.float64)
        elif key == "normals":
            v = value.to(torch.float64)
            invalid = (v == IGNORE_INDEX).any(dim=0, keepdim=True)
            out[key] = torch.where(invalid, torch.zeros((), dtype=v.dtype), v)
        elif key == "depth":
            v = value.to(torch.float64)
            out[key] = torch.where(v == IGNORE_INDEX, torch.zeros((), dtype=v.dtype), v)
        elif key == "human_parts":
            v = value.to(torch.float64)
            out[key] = torch.zeros_like(v) if bool((v == IGNORE_INDEX).all()) else v
        elif key in LABEL_KEYS:
            out[key] = value.to(torch.float64)
    return out


def add_ignore_regions(sample: dict) -> dict:
    """ct l.266-292: zero normals -> 255 (all channels), an all-zero human_parts map -> 255, depth 0 -> 255."""
    out = dict(sample)
    if "normals" in sample:
        n = sample["normals"]
        zero = (n * n).sum(dim=0, keepdim=True) == 0
        out["normals"] = torch.where(zero, torch.full((), float(IGNORE_INDEX), dtype=n.dtype), n)
    if "human_parts" in sample and bool((sample["human_parts"] == 0).all()):
        out["human_parts"] = torch.full_like(sample["human_parts"], float(IGNORE_INDEX))
    if "depth" in sample:
        d = sample["depth"]
        out["depth"] = torch.where(d == 0, torch.full((), float(IGNORE_INDEX), dtype=d.dtype), d)
    return out


def from_mtlora_encoding(sample: dict, mean, std, image_cast: str = "wrap") -> dict:
    """ct l.298-341: uint8 cast of the image (see module doc), / 255, mean/std; labels to transforms.py dtypes."""
    out = dict(sample)
    for key, value in sample.items():
        if key == "image":
            out[key] = normalize(cast_uint8(value, image_cast).to(torch.float32), mean, std)
        elif key in CLASS_LABELS:
            out[key] = value.round().to(torch.int64)
        elif key in DENSE_LABELS:
            out[key] = value.to(torch.float32)
    return out


def cast_uint8(image: torch.Tensor, mode: str = "wrap") -> torch.Tensor:
    """numpy's float -> uint8 `astype` on x86-64 ("wrap": truncate toward 0, then modulo 256) or a saturating cast
    ("clamp"); returned as float values 0..255."""
    t = torch.trunc(image)
    if mode == "wrap":
        return torch.remainder(t, 256.0)
    if mode == "clamp":
        return t.clamp(0.0, 255.0)
    raise ValueError(f"image_cast must be 'wrap' or 'clamp', got {mode!r}")


# ---------------------------------------------------------------------------------------------------- geometry
def rotation_matrix(angle_deg: float, scale: float, h: int, w: int) -> np.ndarray:
    """cv2.getRotationMatrix2D((w / 2, h / 2), angle, scale): the 2x3 forward (source -> destination) map."""
    a = math.radians(angle_deg)
    alpha, beta = scale * math.cos(a), scale * math.sin(a)
    cx, cy = w / 2.0, h / 2.0
    return np.array([[alpha, beta, (1 - alpha) * cx - beta * cy],
                     [-beta, alpha, beta * cx + (1 - alpha) * cy]], dtype=np.float64)


def invert_affine(matrix: np.ndarray) -> np.ndarray:
    """cv2.invertAffineTransform (what warpAffine applies to the forward matrix), same float64 operations."""
    (a, b, c), (d, e, f) = matrix
    det = a * e - b * d
    det = 1.0 / det if det != 0 else 0.0
    a11, a22, a12, a21 = e * det, a * det, -b * det, -d * det
    return np.array([[a11, a12, -a11 * c - a12 * f], [a21, a22, -a21 * c - a22 * f]], dtype=np.float64)


def _source_coords(matrix: np.ndarray, h: int, w: int, nearest: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Source (x, y) of every destination pixel in warpAffine's fixed point (OpenCV imgwarp.cpp WarpAffineInvoker):
    the inverse matrix times 1024, rounded; nearest takes floor((X + 512) / 1024) (an integer index), cubic keeps
    1/32 pixel, floor((X + 16) / 32) / 32, the position its tabulated weights are for."""
    inv = invert_affine(matrix)
    ab_scale = 1024.0
    xs = torch.arange(w, dtype=torch.float64)
    ys = torch.arange(h, dtype=torch.float64)
    round_delta = 512.0 if nearest else 16.0
    x0 = torch.round((inv[0, 1] * ys + inv[0, 2]) * ab_scale) + round_delta
    y0 = torch.round((inv[1, 1] * ys + inv[1, 2]) * ab_scale) + round_delta
    gx = x0[:, None] + torch.round(inv[0, 0] * xs * ab_scale)[None, :]
    gy = y0[:, None] + torch.round(inv[1, 0] * xs * ab_scale)[None, :]
    if nearest:
        return torch.floor(gx / ab_scale), torch.floor(gy / ab_scale)
    return torch.floor(gx / 32.0) / 32.0, torch.floor(gy / 32.0) / 32.0


def _cubic_weights_f32(t: torch.Tensor) -> list[torch.Tensor]:
    """OpenCV's interpolateCubic (imgproc resize.cpp) in float32, as it computes them: the weights of the taps at
    offsets -1, 0, 1, 2 for a fractional position t in [0, 1), A = -0.75 (torch's bicubic uses the same kernel)."""
    t = t.to(torch.float32)
    a = torch.tensor(-0.75, dtype=torch.float32)
    w0 = ((a * (t + 1) - 5 * a) * (t + 1) + 8 * a) * (t + 1) - 4 * a
    w1 = ((a + 2) * t - (a + 3)) * t * t + 1
    w2 = ((a + 2) * (1 - t) - (a + 3)) * (1 - t) * (1 - t) + 1
    return [w0, w1, w2, 1 - w0 - w1 - w2]


def _bicubic_sample(v: torch.Tensor, sx: torch.Tensor, sy: torch.Tensor) -> torch.Tensor:
    """remap with INTER_CUBIC and a constant 0 border (OpenCV remapBicubic on float64 data): 4x4 taps around
    floor(sx), floor(sy), taps outside the image read 0; weights are float32 products wy * wx of the 1/32-pixel
    table, summed row by row in float64. (OpenCV sums border pixels tap by tap instead: last-bit differences.)"""
    c, h, w = v.shape
    padded = F.pad(v, (2, 2, 2, 2)).permute(1, 2, 0).contiguous().reshape(-1, c)  # zeros around; [pixels, C]
    x0, y0 = torch.floor(sx).reshape(-1), torch.floor(sy).reshape(-1)
    wx, wy = _cubic_weights_f32(sx.reshape(-1) - x0), _cubic_weights_f32(sy.reshape(-1) - y0)
    x0, y0 = x0.to(torch.int64), y0.to(torch.int64)
    cols = [(x0 + (i - 1)).clamp(-2, w + 1) + 2 for i in range(4)]  # taps clamped into the zero border
    out = None
    for j in range(4):
        row_base = ((y0 + (j - 1)).clamp(-2, h + 1) + 2) * (w + 4)
        row = None
        for i in range(4):
            weight = (wy[j] * wx[i]).to(v.dtype)[:, None]  # the float32 2-d table entry
            term = padded.index_select(0, row_base + cols[i]) * weight
            row = term if row is None else row + term
        out = row if out is None else out + row
    return out.T.reshape((c,) + tuple(sx.shape))


def _resize_taps(n_in: int, n_out: int) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """cv2.resize INTER_CUBIC along one axis: source position (float32) (i + 0.5) * n_in / n_out - 0.5, taps
    floor - 1 .. floor + 2 clamped to the image (replicated border), float32 weights."""
    pos = torch.from_numpy(((np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5).astype(np.float32))
    base = torch.floor(pos)
    weights = _cubic_weights_f32(pos - base)
    base = base.to(torch.int64)
    return [(base + k - 1).clamp(0, n_in - 1) for k in range(4)], [wt.to(torch.float64) for wt in weights]


def resize_cubic(v: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """cv2.resize(..., interpolation=INTER_CUBIC) of a float64 [C,H,W] tensor: horizontal pass, then vertical,
    float32 positions and weights, float64 sums (bit-identical to OpenCV 4.10 on float64 input in our checks)."""
    _, h, w = v.shape
    ix, wx = _resize_taps(w, size[1])
    iy, wy = _resize_taps(h, size[0])
    rows = v[:, :, ix[0]] * wx[0] + v[:, :, ix[1]] * wx[1] + v[:, :, ix[2]] * wx[2] + v[:, :, ix[3]] * wx[3]
    return (rows[:, iy[0]] * wy[0][:, None] + rows[:, iy[1]] * wy[1][:, None] + rows[:, iy[2]] * wy[2][:, None]
            + rows[:, iy[3]] * wy[3][:, None])


def warp_affine(value: torch.Tensor, matrix: np.ndarray, cubic: bool) -> torch.Tensor:
    """warpAffine(value, matrix, (w, h), flags=cubic|nearest) with a constant 0 border, for [H,W] or [C,H,W]."""
    squeeze = value.ndim == 2
    v = value[None] if squeeze else value
    _, h, w = v.shape
    sx, sy = _source_coords(matrix, h, w, nearest=not cubic)
    if cubic:
        out = _bicubic_sample(v.to(torch.float64), sx, sy)
    else:
        ix, iy = sx.to(torch.int64), sy.to(torch.int64)
        inside = (ix >= 0) & (ix < w) & (iy >= 0) & (iy < h)
        flat = (iy.clamp(0, h - 1) * w + ix.clamp(0, w - 1)).reshape(-1)
        out = v.reshape(v.shape[0], -1)[:, flat].reshape(v.shape)
        out = torch.where(inside[None], out, torch.zeros((), dtype=out.dtype))
    return out[0] if squeeze else out


def rotate_normals(normals: torch.Tensor, angle_deg: float) -> torch.Tensor:
    """ct l.74-80: rotate the in-plane (channel 0, channel 1) component by the warp's angle; channel 2 unchanged."""
    a = math.radians(angle_deg)
    c, s = math.cos(a), math.sin(a)
    n0, n1 = normals[0], normals[1]
    return torch.stack([n0 * c + n1 * s, n1 * c - n0 * s, normals[2]], dim=0)


def scale_rotate(sample: dict, angle_deg: float, scale: float) -> dict:
    """ct l.41-88 for a given angle (degrees, counter-clockwise as cv2) and zoom factor, MTLoRA encoding in/out.
    Arrays sharing an interpolation are warped together (one set of taps; the result is the same per array)."""
    h, w = sample["image"].shape[-2:]
    matrix = rotation_matrix(angle_deg, scale, h, w)
    groups: dict[bool, list[tuple[str, torch.Tensor]]] = {True: [], False: []}
    for key, value in sample.items():
        if key != "image" and key not in LABEL_KEYS:
            continue
        if tuple(value.shape[-2:]) != (h, w):
            raise ValueError(f"{key} is {tuple(value.shape[-2:])}, the image {(h, w)}: labels must match the image")
        if key == "normals":
            value = rotate_normals(value, angle_deg)
        groups[key in CUBIC].append((key, value.reshape(-1, h, w).to(torch.float64)))
    out = dict(sample)
    for cubic, items in groups.items():
        if not items:
            continue
        warped = warp_affine(torch.cat([v for _, v in items], dim=0), matrix, cubic=cubic)
        start = 0
        for key, v in items:
            part = warped[start:start + v.shape[0]]
            start += v.shape[0]
            if key == "depth":
                part = part / scale
            out[key] = part.reshape(sample[key].shape)
    return out


def _nearest_index(n_in: int, n_out: int) -> torch.Tensor:
    """cv2.INTER_NEAREST source index: floor(i * n_in / n_out), clipped to n_in - 1."""
    idx = np.floor(np.arange(n_out, dtype=np.float64) * (n_in / n_out)).astype(np.int64)
    return torch.from_numpy(np.minimum(idx, n_in - 1))


def fixed_resize(sample: dict, size: tuple[int, int]) -> dict:
    """ct l.94-154 / helpers l.60-87: every array to `size` (H, W); image and normals cubic, labels nearest;
    normals renormalised to unit length (zero vectors stay zero)."""
    H, W = int(size[0]), int(size[1])
    out = dict(sample)
    for key, value in sample.items():
        if key != "image" and key not in LABEL_KEYS:
            continue
        squeeze = value.ndim == 2
        v = value[None] if squeeze else value
        h, w = v.shape[-2:]
        if key in CUBIC:
            if (h, w) != (H, W):
                v = resize_cubic(v, (H, W))
            if key == "normals":
                v = v / (torch.sqrt((v * v).sum(dim=0, keepdim=True)) + NORMALS_EPS)
        else:
            v = v[:, _nearest_index(h, H)][:, :, _nearest_index(w, W)]
        out[key] = v[0] if squeeze else v
    return out


# ------------------------------------------------------------------------------------------------- pipelines
def _check_centred(name: str, rng_range, centre: float) -> None:
    lo, hi = rng_range
    if not (lo <= hi and math.isclose((lo + hi) / 2.0, centre, abs_tol=1e-12)):
        raise ValueError(f"{name}={rng_range}: MTLoRA draws (hi - lo) * u - (hi - lo) / 2 + {centre:g} "
                         f"(custom_transforms.py l.44-48), a range centred on {centre:g}; give a centred range")


@dataclass
class MTLoRATrainTransform:
    """The MTLoRA/DiTASK training pipeline: flip, scale+rotate, resize to `size`, ignore regions, uint8 cast,
    normalise. `dataset` picks MTLoRA's augmentation ("pascal": angle U(-20, 20), scale U(0.75, 1.25); "nyud":
    angle 0, scale in {1, 1.2, 1.5}); the four range/choice fields override it (a range or a choice list each)."""

    size: tuple[int, int] = (448, 448)
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    dataset: str = "pascal"
    flip: bool = True
    rotation_range: tuple[float, float] | None = None
    rotation_choices: tuple[float, ...] | None = None
    scale_range: tuple[float, float] | None = None
    scale_choices: tuple[float, ...] | None = None
    image_cast: str = "wrap"  # "wrap" as MTLoRA's numpy cast on x86-64, or "clamp"
    is_random = True

    def __post_init__(self):
        if self.dataset not in AUGMENTATION:
            raise ValueError(f"dataset must be one of {sorted(AUGMENTATION)}, got {self.dataset!r}")
        aug = AUGMENTATION[self.dataset]
        for kind in ("rotation", "scale"):
            rng_range, choices = getattr(self, f"{kind}_range"), getattr(self, f"{kind}_choices")
            if rng_range is not None and choices is not None:
                raise ValueError(f"give {kind}_range or {kind}_choices, not both")
            if rng_range is None and choices is None:
                rng_range, choices = aug.get(f"{kind}_range"), aug.get(f"{kind}_choices")
            if rng_range is not None:
                rng_range = tuple(float(x) for x in rng_range)
                _check_centred(f"{kind}_range", rng_range, 0.0 if kind == "rotation" else 1.0)
            if choices is not None:
                choices = tuple(float(x) for x in choices)
                if not choices:
                    raise ValueError(f"{kind}_choices is empty")
            setattr(self, f"{kind}_range", rng_range)
            setattr(self, f"{kind}_choices", choices)
        if any(s <= 0 for s in (self.scale_choices or ())) or (self.scale_range and self.scale_range[0] <= 0):
            raise ValueError("scales must be positive")
        cast_uint8(torch.zeros(1), self.image_cast)  # validates the mode

    def draw(self, rng: np.random.Generator) -> tuple[bool, float, float]:
        """(flip, angle in degrees, scale), drawn in MTLoRA's order (ct l.197, l.42-52)."""
        flip = self.flip and rng.random() < 0.5

        def pick(rng_range, choices, centre):
            if rng_range is not None:
                span = rng_range[1] - rng_range[0]
                return span * float(rng.random()) - span / 2.0 + centre
            return choices[int(rng.integers(len(choices)))]

        angle = pick(self.rotation_range, self.rotation_choices, 0.0)
        scale = pick(self.scale_range, self.scale_choices, 1.0)
        return flip, angle, scale

    def apply(self, sample: dict, flip: bool, angle: float, scale: float) -> dict:
        """The pipeline with given random values (the deterministic part of `__call__`)."""
        s = to_mtlora_encoding(sample)
        if flip:
            s = hflip(s)
        s = scale_rotate(s, angle, scale)
        s = add_ignore_regions(fixed_resize(s, self.size))
        return from_mtlora_encoding(s, self.mean, self.std, self.image_cast)

    def __call__(self, sample: dict, rng: np.random.Generator) -> dict:
        return self.apply(sample, *self.draw(rng))


@dataclass
class MTLoRAEvalTransform:
    """The MTLoRA/DiTASK evaluation pipeline: resize image and labels to `size` (image and normals cubic, labels
    nearest), ignore regions, uint8 cast, normalise. Metrics are then computed at `size`."""

    size: tuple[int, int] = (448, 448)
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    image_cast: str = "wrap"
    is_random = False

    def __post_init__(self):
        cast_uint8(torch.zeros(1), self.image_cast)

    def __call__(self, sample: dict, rng: np.random.Generator | None = None) -> dict:
        s = add_ignore_regions(fixed_resize(to_mtlora_encoding(sample), self.size))
        return from_mtlora_encoding(s, self.mean, self.std, self.image_cast)
