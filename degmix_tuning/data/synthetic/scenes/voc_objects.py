"""VOC objects other than people, built from primitives: animals, birds and vehicles.

Each builder adds one instance at a `Placement` (origin on the ground under the object's centre, front towards
local +z) and returns its object id; `VOC_OBJECTS` lists them with their footprint (width, length) sampler.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from ....registry import Registry
from .geometry import rotation_x
from .materials import material
from .placement import Placement
from .raycast import Scene
from .shading import Material


@dataclass(frozen=True)
class VocObject:
    name: str
    size: Callable[[np.random.Generator], dict]  # draws the dimensions; must contain "width" and "length"
    build: Callable[[Scene, np.random.Generator, Placement, dict], int]


VOC_OBJECTS: Registry[VocObject] = Registry("voc object")


def voc_object(name: str, size: Callable[[np.random.Generator], dict]):
    def deco(build):
        VOC_OBJECTS.register(name, VocObject(name, size, build))
        return build
    return deco


# ---------------------------------------------------------------- quadrupeds
_SPECIES = {  # body length, girth (body radius), leg length, head size; all metres
    "cat": dict(length=(0.35, 0.5), girth=(0.07, 0.1), leg=(0.14, 0.2), head=(0.055, 0.075), neck=1.2),
    "dog": dict(length=(0.45, 0.95), girth=(0.1, 0.2), leg=(0.2, 0.45), head=(0.08, 0.13), neck=1.3),
    "sheep": dict(length=(0.9, 1.2), girth=(0.26, 0.34), leg=(0.3, 0.4), head=(0.09, 0.12), neck=0.8),
    "cow": dict(length=(1.7, 2.2), girth=(0.34, 0.44), leg=(0.6, 0.75), head=(0.17, 0.21), neck=0.9),
    "horse": dict(length=(1.6, 2.0), girth=(0.28, 0.36), leg=(0.8, 1.0), head=(0.14, 0.18), neck=2.4),
}


def _animal_size(species: str):
    spec = _SPECIES[species]

    def size(rng):
        d = {k: float(rng.uniform(*v)) for k, v in spec.items() if isinstance(v, tuple)}
        d["width"], d["neck"] = 2.2 * d["girth"], spec["neck"]
        return d

    return size


def _coat(rng: np.random.Generator, species: str) -> Material:
    if species == "sheep":
        return material(rng, "white", pattern="noise", scale=0.08, contrast=0.8)
    if species == "cow" and rng.random() < 0.6:
        return material(rng, "white", pattern="spots", scale=0.8, second=(0.05, 0.04, 0.04), threshold=0.2)
    return material(rng, "fur")


def _add_quadruped(scene: Scene, rng: np.random.Generator, place: Placement, d: dict, species: str) -> int:
    oid = scene.new_object(species)
    coat = _coat(rng, species)
    legs_mat = material(rng, "dark") if species == "sheep" else coat
    length, girth, leg, head = d["length"], d["girth"], d["leg"], d["head"]
    body_y = leg + girth * 0.8
    scene.add(place.ellipsoid((0, body_y, 0), (girth * 0.9, girth, length / 2)), oid, coat)
    leg_r = girth * (0.13 if species == "sheep" else 0.22)
    for sx in (-1, 1):
        for sz in (-1, 1):
            top = np.array([sx * girth * 0.5, body_y - girth * 0.3, sz * length * 0.32])
            foot = np.array([top[0], leg_r, top[2] + rng.normal(0, 0.12) * leg])
            scene.add(place.capsule(top, foot, leg_r), oid, legs_mat)
    neck_base = np.array([0.0, body_y + girth * 0.3, length * 0.38])
    up = d["neck"] * girth * rng.uniform(0.8, 1.2)
    head_c = np.array([0.0, body_y + up, length / 2 + head * 0.4])
    scene.add(place.capsule(neck_base, head_c, girth * 0.38), oid, coat)
    tilt = rotation_x(rng.uniform(0.1, 0.6))  # nose down a little
    scene.add(place.ellipsoid(head_c + np.array([0.0, 0.0, head * 0.5]), (head * 0.75, head * 0.8, head * 1.3),
                              tilt), oid, coat)
    if species in ("cat", "dog", "horse"):
        for sx in (-1, 1):
            scene.add(place.ellipsoid(head_c + np.array([sx * head * 0.45, head * 0.8, 0.0]),
                                      (head * 0.18, head * 0.35, head * 0.12)), oid, coat)
    tail_end = np.array([0.0, body_y - girth * rng.uniform(-0.5, 0.8), -length / 2 - length * 0.2])
    scene.add(place.capsule((0.0, body_y + girth * 0.3, -length / 2 + girth * 0.2), tail_end, girth * 0.09),
              oid, coat)
    return oid


for _species in _SPECIES:
    voc_object(_species, _animal_size(_species))(
        lambda scene, rng, place, d, _s=_species: _add_quadruped(scene, rng, place, d, _s))


@voc_object("bird", lambda r: {"body": float(r.uniform(0.06, 0.16)), "width": 0.3, "length": 0.4,
                               "flying": bool(r.random() < 0.4)})
def _bird(scene: Scene, rng, place: Placement, d: dict) -> int:
    oid = scene.new_object("bird")
    s = d["body"]
    plumage = material(rng, "fur" if rng.random() < 0.5 else "plastic")
    y = rng.uniform(1.0, 3.5) if d["flying"] else 0.35 * s
    scene.add(place.ellipsoid((0, y + 0.45 * s, 0), (0.42 * s, 0.45 * s, s), rotation_x(-0.2)), oid, plumage)
    head = np.array([0.0, y + 0.95 * s, 0.8 * s])
    scene.add(place.sphere(head, 0.32 * s), oid, plumage)
    scene.add(place.capsule(head + (0, 0, 0.25 * s), head + (0, -0.05 * s, 0.6 * s), 0.06 * s), oid,
              material(rng, "cardboard"))
    scene.add(place.ellipsoid((0, y + 0.5 * s, -1.1 * s), (0.3 * s, 0.06 * s, 0.5 * s), rotation_x(0.3)), oid,
              plumage)
    if d["flying"]:
        for sx in (-1, 1):
            scene.add(place.ellipsoid((sx * 1.1 * s, y + 0.7 * s, 0), (1.0 * s, 0.05 * s, 0.45 * s)), oid, plumage)
    else:
        for sx in (-1, 1):
            scene.add(place.capsule((sx * 0.15 * s, y + 0.2 * s, 0), (sx * 0.15 * s, 0.03 * s, 0.05 * s),
                                    0.03 * s), oid, material(rng, "dark"))
    return oid


# ---------------------------------------------------------------- vehicles
def _wheels(scene, oid, place, half_track, axle_zs, radius, width, mat):
    """Wheels as cylinders along the local x axis, centred at x = +-half_track."""
    for z in axle_zs:
        for sx in (-1, 1):
            scene.add(place.cylinder((sx * half_track - width / 2, radius, z), (1, 0, 0), radius, width), oid, mat)


@voc_object("car", lambda r: {"width": float(r.uniform(1.65, 1.9)), "length": float(r.uniform(3.6, 4.8)),
                              "height": float(r.uniform(1.35, 1.6))})
def _car(scene: Scene, rng, place: Placement, d: dict) -> int:
    oid = scene.new_object("car")
    w, length, h = d["width"], d["length"], d["height"]
    paint = material(rng, "plastic")
    clearance, wheel_r = 0.18, 0.32
    body_h = 0.55 * (h - clearance)
    scene.add(place.box((0, clearance + body_h / 2, 0), (w / 2, body_h / 2, length / 2)), oid, paint)
    cabin_h = h - clearance - body_h
    glass = Material(paint.color_a, (0.05, 0.07, 0.09), "bands", scale=1.0, angle=0.0, seed=paint.seed,
                     params={"lo": 0.06, "hi": cabin_h - 0.04})
    cabin = place.box((0, clearance + body_h + cabin_h / 2, -0.08 * length), (w / 2 * 0.9, cabin_h / 2, length * 0.27))
    scene.add(cabin, oid, glass)
    _wheels(scene, oid, place, w / 2 - 0.06, (-0.32 * length, 0.32 * length), wheel_r, 0.22, material(rng, "dark"))
    return oid


@voc_object("bus", lambda r: {"width": 2.5, "length": float(r.uniform(8.0, 12.0)),
                              "height": float(r.uniform(2.9, 3.3))})
def _bus(scene: Scene, rng, place: Placement, d: dict) -> int:
    oid = scene.new_object("bus")
    w, length, h = d["width"], d["length"], d["height"]
    paint = material(rng, "plastic")
    body = Material(paint.color_a, (0.06, 0.08, 0.1), "bands", scale=1.0, angle=0.0, seed=paint.seed,
                    params={"lo": 0.55 * h + 0.0, "hi": 0.85 * h})
    scene.add(place.box((0, 0.3 + (h - 0.3) / 2, 0), (w / 2, (h - 0.3) / 2, length / 2)), oid, body)
    _wheels(scene, oid, place, w / 2 - 0.1, (-0.33 * length, 0.3 * length), 0.5, 0.3, material(rng, "dark"))
    return oid


@voc_object("bicycle", lambda r: {"width": 0.6, "length": 1.75})
def _bicycle(scene: Scene, rng, place: Placement, d: dict) -> int:
    oid = scene.new_object("bicycle")
    r = 0.34
    tyre, frame = material(rng, "dark"), material(rng, "plastic")
    for z in (-0.52, 0.52):
        scene.add(place.cylinder((-0.02, r, z), (1, 0, 0), r, 0.04), oid, tyre)
    crank = np.array([0.0, 0.32, 0.0])
    seat = np.array([0.0, 0.85, -0.18])
    head = np.array([0.0, 0.9, 0.4])
    for a, b in ((crank, seat), (crank, head), (seat, head), (crank, (0, r, -0.52)), (seat, (0, r, -0.52)),
                 (head, (0, r, 0.52))):
        scene.add(place.capsule(a, b, 0.022), oid, frame)
    scene.add(place.capsule(head, (0, 1.0, 0.38), 0.02), oid, frame)
    scene.add(place.capsule((-0.25, 1.0, 0.38), (0.25, 1.0, 0.38), 0.018), oid, tyre)
    scene.add(place.ellipsoid(seat + (0, 0.04, 0), (0.07, 0.03, 0.13)), oid, tyre)
    return oid
