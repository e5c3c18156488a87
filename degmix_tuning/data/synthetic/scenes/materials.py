"""Class palettes: which colours and patterns each kind of surface gets, with per-instance variation.

Palettes overlap on purpose (a white cabinet and a white wall exist), so colour is informative but never a
perfect class cue; the pattern, scale and colour of every instance are drawn from the scene's generator.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .shading import Material, jitter_color


@dataclass(frozen=True)
class Palette:
    hue: tuple[float, float]
    sat: tuple[float, float]
    val: tuple[float, float]
    patterns: tuple[str, ...]
    scale: tuple[float, float]  # metres per pattern period
    contrast: tuple[float, float] = (0.6, 0.85)  # second colour = first colour * contrast


PALETTES: dict[str, Palette] = {
    "wall": Palette((0.0, 1.0), (0.02, 0.25), (0.55, 0.92), ("plain", "noise", "noise", "stripes"), (0.4, 2.0),
                    (0.85, 0.95)),
    "ceiling": Palette((0.08, 0.16), (0.0, 0.06), (0.8, 0.95), ("plain", "tiles"), (0.5, 0.7), (0.85, 0.95)),
    "floor_wood": Palette((0.05, 0.11), (0.35, 0.7), (0.2, 0.6), ("planks",), (0.12, 0.25), (0.5, 0.8)),
    "floor_tile": Palette((0.0, 1.0), (0.0, 0.2), (0.35, 0.85), ("tiles", "checker"), (0.3, 0.7), (0.55, 0.85)),
    "carpet": Palette((0.0, 1.0), (0.1, 0.5), (0.15, 0.6), ("noise",), (0.15, 0.8), (0.6, 0.9)),
    "wood": Palette((0.05, 0.11), (0.3, 0.7), (0.18, 0.6), ("planks", "noise", "plain"), (0.1, 0.4), (0.6, 0.85)),
    "painted": Palette((0.0, 1.0), (0.0, 0.4), (0.35, 0.92), ("plain", "noise"), (0.3, 1.0), (0.85, 0.95)),
    "fabric": Palette((0.0, 1.0), (0.15, 0.7), (0.15, 0.75), ("noise", "stripes", "checker", "plain"),
                      (0.08, 0.5), (0.55, 0.85)),
    "white": Palette((0.0, 1.0), (0.0, 0.06), (0.78, 0.96), ("plain",), (0.5, 1.0), (0.9, 0.97)),
    "metal": Palette((0.5, 0.66), (0.0, 0.12), (0.3, 0.75), ("plain", "noise"), (0.2, 0.8), (0.8, 0.95)),
    "dark": Palette((0.0, 1.0), (0.0, 0.2), (0.02, 0.14), ("plain",), (0.5, 1.0), (0.7, 0.9)),
    "plastic": Palette((0.0, 1.0), (0.4, 0.95), (0.3, 0.95), ("plain",), (0.5, 1.0), (0.8, 0.95)),
    "cardboard": Palette((0.07, 0.1), (0.35, 0.6), (0.4, 0.72), ("noise", "plain"), (0.2, 0.5), (0.75, 0.9)),
    "stone": Palette((0.0, 1.0), (0.0, 0.15), (0.3, 0.85), ("noise",), (0.1, 0.4), (0.6, 0.85)),
    "foliage": Palette((0.22, 0.38), (0.45, 0.85), (0.12, 0.5), ("noise",), (0.05, 0.25), (0.45, 0.75)),
    "glass": Palette((0.52, 0.62), (0.05, 0.35), (0.8, 1.0), ("plain",), (0.5, 1.0), (0.85, 0.95)),
    "warm_light": Palette((0.09, 0.15), (0.1, 0.45), (0.85, 1.0), ("plain",), (0.5, 1.0), (0.9, 1.0)),
    # outdoor
    "grass": Palette((0.2, 0.33), (0.4, 0.8), (0.15, 0.5), ("noise",), (0.3, 2.0), (0.55, 0.8)),
    "ground": Palette((0.06, 0.12), (0.2, 0.55), (0.2, 0.55), ("noise",), (0.3, 2.0), (0.6, 0.85)),
    "road": Palette((0.0, 1.0), (0.0, 0.08), (0.12, 0.35), ("noise",), (0.3, 1.5), (0.75, 0.9)),
    "sidewalk": Palette((0.0, 1.0), (0.0, 0.12), (0.4, 0.7), ("tiles", "noise"), (0.3, 0.6), (0.7, 0.9)),
    "sand": Palette((0.1, 0.14), (0.25, 0.5), (0.6, 0.85), ("noise",), (0.5, 3.0), (0.8, 0.95)),
    "snow": Palette((0.55, 0.62), (0.0, 0.08), (0.85, 0.98), ("noise",), (0.5, 3.0), (0.88, 0.97)),
    "bark": Palette((0.05, 0.1), (0.3, 0.6), (0.1, 0.35), ("stripes", "noise"), (0.05, 0.15), (0.6, 0.85)),
    "building": Palette((0.0, 1.0), (0.02, 0.35), (0.3, 0.85), ("tiles",), (2.5, 4.0), (0.4, 0.7)),
    "mountain": Palette((0.25, 0.65), (0.1, 0.4), (0.25, 0.6), ("noise",), (10.0, 40.0), (0.7, 0.9)),
    "skin": Palette((0.03, 0.09), (0.25, 0.6), (0.3, 0.95), ("plain",), (0.5, 1.0), (0.9, 0.97)),
    "hair": Palette((0.03, 0.12), (0.2, 0.7), (0.03, 0.6), ("plain",), (0.5, 1.0), (0.9, 0.97)),
    "fur": Palette((0.03, 0.12), (0.1, 0.7), (0.05, 0.85), ("noise", "plain", "spots"), (0.05, 0.3), (0.3, 0.8)),
}


def material(rng: np.random.Generator, palette: str, pattern: str | None = None, scale: float | None = None,
             angle: float | None = None, emissive: bool = False, contrast: float | None = None,
             second=None, **params) -> Material:
    """A fresh per-instance material from a class palette; explicit arguments override the draws."""
    p = PALETTES[palette]
    color = jitter_color(rng, p.hue, p.sat, p.val)
    factor = rng.uniform(*p.contrast) if contrast is None else contrast
    pattern_name = str(rng.choice(p.patterns)) if pattern is None else pattern
    return Material(
        color_a=color,
        color_b=tuple(float(c * factor) for c in color) if second is None else tuple(second),
        pattern=pattern_name,
        scale=float(rng.uniform(*p.scale)) if scale is None else float(scale),
        angle=float(rng.choice([0.0, np.pi / 2])) if angle is None else float(angle),
        seed=int(rng.integers(0, 2**31 - 1)),
        emissive=emissive,
        params=params,
    )
