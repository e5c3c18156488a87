"""Procedural textures and Lambert lighting for the synthetic scenes.

A `Material` turns surface coordinates (metres) into an albedo: a pattern from `PATTERNS` mixes two colours
(stripes, checker, tiles, planks, blotchy noise, ...), plus a faint grain so no surface is perfectly flat.
Colours come from class-dependent palettes with per-instance jitter (see `jitter_color`), so colour tells a model
something about the class without giving it away. `shade` applies an ambient term and 1-2 lights.
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ....registry import Registry

PatternFn = Callable[[np.ndarray, "Material"], np.ndarray]
PATTERNS: Registry[PatternFn] = Registry("texture pattern")


def _hash(values: np.ndarray, seed: float) -> np.ndarray:
    """Deterministic pseudo-random number in [0, 1) per integer cell (a classic shader hash)."""
    x = np.sin(values * 12.9898 + seed * 78.233) * 43758.5453
    return x - np.floor(x)


def _sinusoid_noise(s: np.ndarray, seed: int, octaves: int = 4) -> np.ndarray:
    """Smooth band-limited noise in roughly [-1, 1]: a sum of random plane waves, one period ~ 1 unit of `s`."""
    rng = np.random.default_rng(seed)
    out = np.zeros(s.shape[0])
    for k in range(octaves):
        freq = 2 * np.pi * (1.0 + k) * rng.uniform(0.6, 1.4)
        direction = rng.normal(size=2)
        direction /= np.linalg.norm(direction)
        out += np.sin(s @ (direction * freq) + rng.uniform(0, 2 * np.pi)) / (1.0 + k)
    return out / 1.6


@dataclass
class Material:
    color_a: tuple[float, float, float]  # linear RGB in [0, 1]
    color_b: tuple[float, float, float] = (0.0, 0.0, 0.0)
    pattern: str = "plain"
    scale: float = 0.5  # metres per pattern period
    angle: float = 0.0  # rotation of the pattern on the surface (radians)
    seed: int = 0  # drives the pattern's own randomness
    grain: float = 0.05  # amplitude of the fine multiplicative noise
    emissive: bool = False  # self-lit (sky, windows, lamp shades): lighting is not applied
    params: dict = field(default_factory=dict)

    def pattern_coords(self, uv: np.ndarray) -> np.ndarray:
        c, s = np.cos(self.angle), np.sin(self.angle)
        return (uv @ np.array([[c, -s], [s, c]])) / self.scale

    def albedo(self, uv: np.ndarray) -> np.ndarray:
        """[M, 3] albedo for M surface points."""
        coords = self.pattern_coords(uv)
        value = PATTERNS.get(self.pattern)(coords, self)
        if value.ndim == 1:
            a, b = np.asarray(self.color_a), np.asarray(self.color_b)
            color = a + (b - a) * value[:, None]
        else:
            color = value
        if self.grain > 0:
            fine = _sinusoid_noise(uv * 9.0, self.seed + 1, octaves=3)
            color = color * (1.0 + self.grain * fine)[:, None]
        return np.clip(color, 0.0, 1.0)


@PATTERNS.register("plain")
def _plain(s, m):
    return np.zeros(s.shape[0])


@PATTERNS.register("noise")
def _noise(s, m):
    return 0.5 + 0.5 * np.tanh(1.5 * _sinusoid_noise(s, m.seed))


@PATTERNS.register("spots")
def _spots(s, m):
    return (_sinusoid_noise(s, m.seed) > m.params.get("threshold", 0.35)).astype(np.float64)


@PATTERNS.register("stripes")
def _stripes(s, m):
    duty = m.params.get("duty", 0.5)
    return ((s[:, 0] - np.floor(s[:, 0])) < duty).astype(np.float64)


@PATTERNS.register("seams")
def _seams(s, m):
    """Thin lines (value 1) every pattern unit along u: cabinet doors, drawers, panels."""
    width = m.params.get("width", 0.03)
    return ((s[:, 0] - np.floor(s[:, 0])) < width).astype(np.float64)


@PATTERNS.register("checker")
def _checker(s, m):
    return ((np.floor(s[:, 0]) + np.floor(s[:, 1])) % 2).astype(np.float64)


@PATTERNS.register("tiles")
def _tiles(s, m):
    width = m.params.get("grout", 0.06)
    fu, fv = s[:, 0] - np.floor(s[:, 0]), s[:, 1] - np.floor(s[:, 1])
    return ((fu < width) | (fv < width)).astype(np.float64)


@PATTERNS.register("planks")
def _planks(s, m):
    row = np.floor(s[:, 1])
    shade = _hash(row, m.seed)
    grain = 0.5 + 0.5 * np.sin(s[:, 0] * 7.0 + shade * 20.0 + 3.0 * np.sin(s[:, 1] * 9.0))
    seam = (s[:, 1] - row) < 0.05
    return np.where(seam, 1.0, 0.65 * shade + 0.25 * grain)


@PATTERNS.register("bands")
def _bands(s, m):
    """1 inside the horizontal band lo <= v < hi (car windows, hair caps), in pattern units."""
    lo, hi = m.params.get("lo", 0.0), m.params.get("hi", np.inf)
    return ((s[:, 1] >= lo) & (s[:, 1] < hi)).astype(np.float64)


@PATTERNS.register("sky")
def _sky(s, m):
    """For `SkyDome` uv (azimuth, elevation), scale 1: brighter towards the horizon, plus soft clouds."""
    elevation = np.clip(s[:, 1], 0.0, None)
    haze = np.exp(-elevation / 0.35)
    clouds = np.clip(_sinusoid_noise(np.stack([s[:, 0] * 3.0, elevation * 9.0], axis=-1), m.seed) - 0.2, 0, 1)
    return np.clip(0.6 * haze + m.params.get("cloudiness", 0.5) * clouds, 0.0, 1.0)


def _hashed_colors(cell: np.ndarray, seed: int, sat=(0.3, 0.8), val=(0.2, 0.8)) -> np.ndarray:
    h = _hash(cell, seed)
    s = sat[0] + (sat[1] - sat[0]) * _hash(cell + 17.0, seed)
    v = val[0] + (val[1] - val[0]) * _hash(cell + 31.0, seed)
    return hsv_to_rgb(np.stack([h, s, v], axis=-1))


@PATTERNS.register("books")
def _books(s, m):
    """Rows of shelves filled with book spines of random widths and colours."""
    row = np.floor(s[:, 1])
    spine = np.floor(s[:, 0] * 6.0 + _hash(row, m.seed) * 5.0)
    colors = _hashed_colors(spine * 7.0 + row * 131.0, m.seed)
    board = (s[:, 1] - row) < 0.12
    return np.where(board[:, None], np.asarray(m.color_a), colors)


@PATTERNS.register("painting")
def _painting(s, m):
    """A blotchy multi-colour picture: noise levels mapped to random colours."""
    cells = np.floor(2.0 * (_sinusoid_noise(s, m.seed) + 1.0)) + np.floor(s[:, 0] * 0.5) * 5.0
    return _hashed_colors(cells, m.seed, sat=(0.3, 0.9), val=(0.25, 0.95))


def hsv_to_rgb(hsv: np.ndarray) -> np.ndarray:
    """Vectorised HSV -> RGB for [..., 3] arrays in [0, 1]."""
    h, s, v = hsv[..., 0] * 6.0, hsv[..., 1], hsv[..., 2]
    i = np.floor(h).astype(int) % 6
    f = h - np.floor(h)
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    table = np.stack([
        np.stack([v, t, p], -1), np.stack([q, v, p], -1), np.stack([p, v, t], -1),
        np.stack([p, q, v], -1), np.stack([t, p, v], -1), np.stack([v, p, q], -1),
    ], axis=-2)
    return np.take_along_axis(table, i[..., None, None], axis=-2)[..., 0, :]


def jitter_color(rng: np.random.Generator, hue, sat, val) -> tuple[float, float, float]:
    """A colour drawn from HSV ranges (hue in [0,1) wraps): the class palette plus per-instance variation."""
    h = rng.uniform(*hue) % 1.0
    r, g, b = colorsys.hsv_to_rgb(h, rng.uniform(*sat), rng.uniform(*val))
    return (r, g, b)


@dataclass
class Lighting:
    ambient: tuple[float, float, float]
    point_lights: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)  # (position, rgb intensity)
    sun: tuple[np.ndarray, np.ndarray] | None = None  # (unit direction towards the sun, rgb intensity)
    falloff: float = 0.12  # point-light attenuation 1 / (1 + falloff * d^2)


def shade(albedo: np.ndarray, normals: np.ndarray, points: np.ndarray, lighting: Lighting) -> np.ndarray:
    """Lambert shading with hemispherical ambient; `normals` are world-frame unit normals facing the camera."""
    up = normals[..., 1:2]
    light = np.asarray(lighting.ambient) * (0.75 + 0.25 * up)
    for position, intensity in lighting.point_lights:
        to_light = np.asarray(position) - points
        dist2 = np.einsum("...i,...i->...", to_light, to_light)
        cos = np.einsum("...i,...i->...", normals, to_light) / np.sqrt(np.maximum(dist2, 1e-12))
        light = light + np.asarray(intensity) * (np.maximum(cos, 0.0) / (1.0 + lighting.falloff * dist2))[..., None]
    if lighting.sun is not None:
        direction, intensity = lighting.sun
        cos = normals @ np.asarray(direction)
        light = light + np.asarray(intensity) * np.maximum(cos, 0.0)[..., None]
    return albedo * light
