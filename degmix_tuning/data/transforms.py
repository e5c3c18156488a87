"""Joint image+label transforms of the ATRC/DeGMix recipe, applied identically to the image and every label.

Train: random scale U(0.5, 2) -> random crop (cat_max_ratio, 10 re-draws) -> h-flip -> photometric distortion
-> ImageNet normalisation -> centre pad to the crop size. Eval: normalisation -> centre pad (nothing is resized).
Samples are dicts of torch tensors in channel-first layout (`to_tensors` converts a raw numpy sample); ignore value
255 everywhere (depth and normals included: readers already map depth 0 and zero normals to 255).
Randomness comes from a `numpy.random.Generator` passed in, so DataLoader workers can each own one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
import torchvision.transforms.v2.functional as TF

from ..tasks import IGNORE_INDEX

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CLASS_LABELS = ("semseg", "human_parts", "sal")  # int64 [H, W]
DENSE_LABELS = ("depth", "normals", "edge")  # float32 [C, H, W]
LABEL_KEYS = CLASS_LABELS + DENSE_LABELS


def to_tensors(raw: dict) -> dict:
    """Raw numpy sample (image uint8 [H,W,3], labels [H,W] / [H,W,3]) -> channel-first tensors (image float 0..255)."""
    out = {}
    for key, value in raw.items():
        if key == "image":
            out[key] = torch.from_numpy(np.ascontiguousarray(value)).permute(2, 0, 1).float()
        elif key in CLASS_LABELS:
            out[key] = torch.from_numpy(np.ascontiguousarray(value)).long()
        elif key == "normals":
            out[key] = torch.from_numpy(np.ascontiguousarray(value, dtype=np.float32)).permute(2, 0, 1).contiguous()
        elif key in DENSE_LABELS:
            out[key] = torch.from_numpy(np.ascontiguousarray(value, dtype=np.float32))[None]
        else:
            out[key] = value
    return out


def _size(sample: dict) -> tuple[int, int]:
    return tuple(sample["image"].shape[-2:])


# ------------------------------------------------------------------------------------------------- geometry
def resize(sample: dict, size: tuple[int, int], depth_divisor: float = 1.0) -> dict:
    """Bilinear image, nearest labels; depth (valid pixels only) divided by `depth_divisor` (the zoom factor)."""
    out = dict(sample)
    for key, value in sample.items():
        if key == "image":
            out[key] = F.interpolate(value[None], size=size, mode="bilinear", align_corners=False,
                                     antialias=False)[0]
        elif key in CLASS_LABELS:
            out[key] = F.interpolate(value[None, None].float(), size=size, mode="nearest")[0, 0].long()
        elif key in DENSE_LABELS:
            v = F.interpolate(value[None], size=size, mode="nearest")[0]
            if key == "depth" and depth_divisor != 1.0:
                v = torch.where(v == IGNORE_INDEX, v, v / depth_divisor)
            out[key] = v
    return out


def random_scale(sample: dict, rng: np.random.Generator, scale_range=(0.5, 2.0)) -> dict:
    """Zoom by s ~ U(lo, hi) to (int(h s), int(w s)); objects appear s times closer, so depth is divided by s."""
    s = float(rng.uniform(*scale_range))
    h, w = _size(sample)
    return resize(sample, (max(1, int(h * s)), max(1, int(w * s))), depth_divisor=s)


def crop(sample: dict, top: int, left: int, height: int, width: int) -> dict:
    out = dict(sample)
    for key, value in sample.items():
        if key == "image" or key in LABEL_KEYS:
            out[key] = value[..., top:top + height, left:left + width]
    return out


def random_crop(sample: dict, crop_size: tuple[int, int], rng: np.random.Generator,
                cat_max_ratio: float = 0.75, max_redraws: int = 10) -> dict:
    """Random crop of at most `crop_size` (smaller images keep their size; padding comes later). With
    cat_max_ratio < 1 the window is re-drawn up to `max_redraws` times until no semseg class covers
    >= cat_max_ratio of its labelled pixels (and at least two classes are present)."""
    h, w = _size(sample)
    ch, cw = min(crop_size[0], h), min(crop_size[1], w)

    def draw():
        return int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))

    top, left = draw()
    seg = sample.get("semseg")
    if cat_max_ratio < 1.0 and seg is not None:
        for _ in range(max_redraws):
            window = seg[top:top + ch, left:left + cw]
            counts = torch.bincount(window[window != IGNORE_INDEX].flatten(), minlength=1)
            counts = counts[counts > 0]
            if len(counts) > 1 and counts.max().item() / counts.sum().item() < cat_max_ratio:
                break
            top, left = draw()
    return crop(sample, top, left, ch, cw)


def hflip(sample: dict) -> dict:
    """Mirror left-right; the x component of valid normals changes sign."""
    out = dict(sample)
    for key, value in sample.items():
        if key == "image" or key in LABEL_KEYS:
            v = value.flip(-1)
            if key == "normals":
                valid = (v != IGNORE_INDEX).all(dim=0)
                v = v.clone()
                v[0] = torch.where(valid, -v[0], v[0])
            out[key] = v
    return out


def center_pad(sample: dict, size: tuple[int, int]) -> dict:
    """Pad to `size` with the content centred (top = dh // 2, left = dw // 2): image 0, every label 255."""
    h, w = _size(sample)
    dh, dw = size[0] - h, size[1] - w
    if dh < 0 or dw < 0:
        raise ValueError(f"cannot pad a {h}x{w} sample to {size[0]}x{size[1]}: it is larger than the pad size")
    if dh == 0 and dw == 0:
        return dict(sample)
    top, left = dh // 2, dw // 2
    pads = (left, dw - left, top, dh - top)
    out = dict(sample)
    for key, value in sample.items():
        if key == "image":
            out[key] = F.pad(value, pads, value=0.0)
        elif key in CLASS_LABELS:
            out[key] = F.pad(value, pads, value=IGNORE_INDEX)
        elif key in DENSE_LABELS:
            out[key] = F.pad(value, pads, value=float(IGNORE_INDEX))
    return out


# ------------------------------------------------------------------------------------------------- photometric
def photometric_distortion(image: torch.Tensor, rng: np.random.Generator, brightness: float = 32.0,
                           contrast=(0.5, 1.5), saturation=(0.5, 1.5), hue: int = 18) -> torch.Tensor:
    """mmseg PhotoMetricDistortion on a float 0..255 image: brightness +-32, contrast x[0.5, 1.5] (before or after
    the colour steps, at random), saturation x[0.5, 1.5], hue +-18 (OpenCV units of 2 degrees); each with p=0.5."""
    img = image
    if rng.integers(2):
        img = (img + float(rng.uniform(-brightness, brightness))).clamp(0, 255)
    contrast_first = bool(rng.integers(2))
    if contrast_first and rng.integers(2):
        img = (img * float(rng.uniform(*contrast))).clamp(0, 255)
    if rng.integers(2):
        img = TF.adjust_saturation(img / 255.0, float(rng.uniform(*saturation))).clamp(0, 1) * 255.0
    if rng.integers(2):
        delta = int(rng.integers(-hue, hue + 1))
        img = TF.adjust_hue(img / 255.0, delta / 180.0).clamp(0, 1) * 255.0
    if not contrast_first and rng.integers(2):
        img = (img * float(rng.uniform(*contrast))).clamp(0, 255)
    return img


def normalize(image: torch.Tensor, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> torch.Tensor:
    m = torch.tensor(mean, dtype=image.dtype).view(3, 1, 1)
    s = torch.tensor(std, dtype=image.dtype).view(3, 1, 1)
    return (image / 255.0 - m) / s


# ------------------------------------------------------------------------------------------------- pipelines
@dataclass
class TrainTransform:
    """The ATRC/DeGMix training pipeline; output tensors are exactly `crop_size`."""

    crop_size: tuple[int, int]
    scale_range: tuple[float, float] = (0.5, 2.0)
    flip: bool = True
    photometric: bool = True
    cat_max_ratio: float = 0.75
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    is_random = True

    def __call__(self, sample: dict, rng: np.random.Generator) -> dict:
        if self.scale_range != (1.0, 1.0):
            sample = random_scale(sample, rng, self.scale_range)
        sample = random_crop(sample, self.crop_size, rng, self.cat_max_ratio)
        if self.flip and rng.random() < 0.5:
            sample = hflip(sample)
        if self.photometric:
            sample["image"] = photometric_distortion(sample["image"], rng)
        sample["image"] = normalize(sample["image"], self.mean, self.std)
        return ignore_partless_parts(center_pad(sample, self.crop_size))


def ignore_partless_parts(sample: dict) -> dict:
    """A crop without any person-part pixel is ignored whole for human parts, background included: the official
    `AddIgnoreRegions` runs after crop and pad (DeMTG src/data/transforms.py l.284-288, pl_data.py l.31-40), so the
    per-image rule the readers apply at load time holds again for each crop."""
    parts = sample.get("human_parts")
    if parts is not None and not ((parts != 0) & (parts != IGNORE_INDEX)).any():
        sample = {**sample, "human_parts": torch.full_like(parts, IGNORE_INDEX)}
    return sample


@dataclass
class EvalTransform:
    """Evaluation at native size: normalise, then centre-pad to `pad_size` so batches collate."""

    pad_size: tuple[int, int]
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    is_random = False

    def __call__(self, sample: dict, rng: np.random.Generator | None = None) -> dict:
        h, w = _size(sample)
        if h > self.pad_size[0] or w > self.pad_size[1]:
            raise ValueError(f"sample {sample.get('id', '?')!r} is {h}x{w} (HxW), larger than the eval pad size "
                             f"{self.pad_size[0]}x{self.pad_size[1]}; evaluation never resizes, so set "
                             f"data.crop_size to at least the largest image size (e.g. data.crop_size={h},{w})")
        sample = dict(sample)
        sample["image"] = normalize(sample["image"], self.mean, self.std)
        return center_pad(sample, self.pad_size)
