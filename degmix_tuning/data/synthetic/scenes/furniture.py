"""Furniture and household objects built from primitives, one recipe per kind.

A `Recipe` draws its size (width, depth, height), then builds itself at a `Placement` (origin on the floor or on
a support, under its centre; front towards local +z; for wall-mounted things the origin is on the wall at the
object's bottom edge). `build` returns the flat tops other things can stand on, as (placement, half_w, half_d).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from ....registry import Registry
from .geometry import rotation_x, rotation_y
from .materials import material
from .placement import Placement
from .raycast import Scene

Size = tuple[float, float, float]
Support = tuple[Placement, float, float]


@dataclass(frozen=True)
class Recipe:
    name: str
    mount: str  # "free" (anywhere on the floor), "wall" (back to a wall), "wall_mounted", "on_top" (on a support)
    size: Callable[[np.random.Generator], Size]
    build: Callable[[Scene, np.random.Generator, Placement, Size], list[Support]]


FURNITURE: Registry[Recipe] = Registry("furniture recipe")


def recipe(name: str, mount: str, size: Callable[[np.random.Generator], Size]):
    def deco(build):
        FURNITURE.register(name, Recipe(name, mount, size, build))
        return build
    return deco


def _u(rng, lo, hi) -> float:
    return float(rng.uniform(lo, hi))


def _legs(scene, oid, place, mat, w, d, h, thick):
    for sx in (-1, 1):
        for sz in (-1, 1):
            scene.add(place.box((sx * (w / 2 - thick), h / 2, sz * (d / 2 - thick)), (thick, h / 2, thick)), oid, mat)


# ---------------------------------------------------------------- floor furniture
@recipe("cabinet", "wall", lambda r: (_u(r, 0.4, 1.4), _u(r, 0.35, 0.6), _u(r, 0.6, 2.0)))
def _cabinet(scene: Scene, rng, place, size):
    w, d, h = size
    doors = max(1, int(round(w / 0.45)))
    mat = material(rng, str(rng.choice(["wood", "painted", "white"])), pattern="seams", scale=w / doors, angle=0.0,
                   contrast=0.45, width=0.03)
    scene.add(place.box((0, h / 2, 0), (w / 2, h / 2, d / 2)), scene.new_object("cabinet"), mat)
    return [(place.on_top((0, h, 0)), w / 2, d / 2)] if h < 1.3 else []


@recipe("bed", "wall", lambda r: (_u(r, 0.9, 1.9), _u(r, 1.9, 2.2), _u(r, 0.4, 0.62)))
def _bed(scene: Scene, rng, place, size):
    w, length, h = size
    oid = scene.new_object("bed")
    frame = material(rng, "wood")
    cover = material(rng, "fabric")
    scene.add(place.box((0, 0.12, 0), (w / 2, 0.12, length / 2)), oid, frame)
    scene.add(place.box((0, (0.24 + h) / 2, 0.02), (w / 2 - 0.02, (h - 0.24) / 2, length / 2 - 0.02)), oid, cover)
    head = _u(rng, 0.8, 1.2)
    scene.add(place.box((0, head / 2, -length / 2 + 0.03), (w / 2 + 0.02, head / 2, 0.03)), oid, frame)
    pillow_mat = material(rng, str(rng.choice(["white", "fabric"])))
    xs = (-w / 4, w / 4) if w > 1.25 else (0.0,)
    for x in xs:
        pid = scene.new_object("pillow")
        scene.add(place.ellipsoid((x, h + 0.05, -length / 2 + 0.28), (min(0.3, w / 4.4), 0.08, 0.17)), pid, pillow_mat)
    return [(place.on_top((0, h, length * 0.15)), w / 2 - 0.1, length * 0.3)]


@recipe("chair", "free", lambda r: (_u(r, 0.4, 0.52), _u(r, 0.4, 0.52), _u(r, 0.42, 0.5)))
def _chair(scene: Scene, rng, place, size):
    w, d, h = size
    oid = scene.new_object("chair")
    frame = material(rng, str(rng.choice(["wood", "metal", "painted", "dark"])))
    seat = frame if rng.random() < 0.5 else material(rng, "fabric")
    _legs(scene, oid, place, frame, w, d, h, 0.02)
    scene.add(place.box((0, h, 0), (w / 2, 0.025, d / 2)), oid, seat)
    back = _u(rng, 0.35, 0.5)
    scene.add(place.box((0, h + back / 2, -d / 2 + 0.02), (w / 2, back / 2, 0.02)), oid, seat)
    return []


@recipe("stool", "free", lambda r: (_u(r, 0.3, 0.4),) * 2 + (_u(r, 0.45, 0.7),))
def _stool(scene: Scene, rng, place, size):
    w, _, h = size
    oid = scene.new_object("stool")
    mat = material(rng, str(rng.choice(["metal", "wood", "plastic"])))
    scene.add(place.cylinder((0, 0, 0), (0, 1, 0), w / 2 * 0.8, 0.02), oid, mat)
    scene.add(place.cylinder((0, 0.02, 0), (0, 1, 0), 0.025, h - 0.06), oid, mat)
    scene.add(place.cylinder((0, h - 0.04, 0), (0, 1, 0), w / 2, 0.04), oid, mat)
    return []


@recipe("sofa", "wall", lambda r: (_u(r, 1.4, 2.4), _u(r, 0.8, 1.0), 0.42))
def _sofa(scene: Scene, rng, place, size):
    w, d, h = size
    oid = scene.new_object("sofa")
    mat = material(rng, "fabric")
    scene.add(place.box((0, h / 2, 0.05), (w / 2 - 0.16, h / 2, d / 2 - 0.05)), oid, mat)
    back = _u(rng, 0.75, 0.95)
    scene.add(place.box((0, back / 2, -d / 2 + 0.1), (w / 2, back / 2, 0.1)), oid, mat)
    arm = _u(rng, 0.55, 0.68)
    for sx in (-1, 1):
        scene.add(place.box((sx * (w / 2 - 0.08), arm / 2, 0), (0.08, arm / 2, d / 2)), oid, mat)
    if rng.random() < 0.5:
        pid = scene.new_object("pillow")
        scene.add(place.box((w / 2 - 0.45, h + 0.18, -d / 2 + 0.28), (0.2, 0.18, 0.06),
                            rotation_x(-0.26)), pid, material(rng, "fabric"))
    return []


def _table_top(scene, rng, place, w, d, h, name="table"):
    oid = scene.new_object(name)
    mat = material(rng, str(rng.choice(["wood", "wood", "painted", "white", "stone"])))
    legs = mat if rng.random() < 0.6 else material(rng, "metal")
    scene.add(place.box((0, h - 0.02, 0), (w / 2, 0.02, d / 2)), oid, mat)
    return oid, mat, legs


@recipe("table", "free", lambda r: (_u(r, 0.8, 1.8), _u(r, 0.6, 1.0), _u(r, 0.68, 0.78)))
def _table(scene: Scene, rng, place, size):
    w, d, h = size
    oid, _, legs = _table_top(scene, rng, place, w, d, h)
    _legs(scene, oid, place, legs, w, d, h - 0.04, 0.025)
    return [(place.on_top((0, h, 0)), w / 2, d / 2)]


@recipe("coffee table", "free", lambda r: (_u(r, 0.8, 1.3), _u(r, 0.5, 0.8), _u(r, 0.38, 0.5)))
def _coffee_table(scene: Scene, rng, place, size):
    return _table(scene, rng, place, size)


@recipe("desk", "wall", lambda r: (_u(r, 1.0, 1.8), _u(r, 0.55, 0.8), _u(r, 0.72, 0.78)))
def _desk(scene: Scene, rng, place, size):
    w, d, h = size
    oid, mat, _ = _table_top(scene, rng, place, w, d, h, "desk")
    for sx in (-1, 1):
        scene.add(place.box((sx * (w / 2 - 0.02), (h - 0.04) / 2, 0), (0.02, (h - 0.04) / 2, d / 2 - 0.02)), oid, mat)
    if rng.random() < 0.6:
        drawers = material(rng, "painted", pattern="seams", scale=0.18, angle=np.pi / 2, contrast=0.5)
        scene.add(place.box((w / 2 - 0.25, (h - 0.04) / 2, 0), (0.21, (h - 0.04) / 2, d / 2 - 0.04)), oid, drawers)
    return [(place.on_top((0, h, 0)), w / 2, d / 2)]


def _drawers(scene, rng, place, size, name):
    w, d, h = size
    n = max(2, int(round(h / 0.22)))
    mat = material(rng, str(rng.choice(["wood", "painted", "white"])), pattern="seams", scale=h / n,
                   angle=np.pi / 2, contrast=0.45, width=0.04)
    scene.add(place.box((0, h / 2, 0), (w / 2, h / 2, d / 2)), scene.new_object(name), mat)
    return [(place.on_top((0, h, 0)), w / 2, d / 2)]


@recipe("dresser", "wall", lambda r: (_u(r, 0.8, 1.5), _u(r, 0.4, 0.55), _u(r, 0.75, 1.1)))
def _dresser(scene: Scene, rng, place, size):
    return _drawers(scene, rng, place, size, "dresser")


@recipe("night stand", "wall", lambda r: (_u(r, 0.4, 0.55), _u(r, 0.35, 0.45), _u(r, 0.45, 0.65)))
def _night_stand(scene: Scene, rng, place, size):
    return _drawers(scene, rng, place, size, "night stand")


@recipe("bookshelf", "wall", lambda r: (_u(r, 0.6, 1.3), _u(r, 0.28, 0.38), _u(r, 1.0, 2.1)))
def _bookshelf(scene: Scene, rng, place, size):
    w, d, h = size
    wood = material(rng, "wood")
    books = material(rng, "wood", pattern="books", scale=_u(rng, 0.28, 0.4), angle=0.0)
    books.color_a = wood.color_a
    oid = scene.new_object("bookshelf")
    scene.add(place.box((0, h / 2, -0.02), (w / 2 - 0.02, h / 2, d / 2 - 0.02)), oid, books)
    for sx in (-1, 1):
        scene.add(place.box((sx * (w / 2 - 0.01), h / 2, 0), (0.01 + 0.001, h / 2 + 0.005, d / 2)), oid, wood)
    return []


@recipe("refrigerator", "wall", lambda r: (_u(r, 0.6, 0.85), _u(r, 0.6, 0.75), _u(r, 1.6, 1.95)))
def _fridge(scene: Scene, rng, place, size):
    w, d, h = size
    mat = material(rng, str(rng.choice(["white", "metal"])), pattern="seams", scale=h * _u(rng, 0.3, 0.4),
                   angle=np.pi / 2, contrast=0.55, width=0.02)
    scene.add(place.box((0, h / 2, 0), (w / 2, h / 2, d / 2)), scene.new_object("refrigerator"), mat)
    return []


@recipe("counter", "wall", lambda r: (_u(r, 1.2, 2.6), _u(r, 0.55, 0.65), _u(r, 0.86, 0.94)))
def _counter(scene: Scene, rng, place, size):
    w, d, h = size
    oid = scene.new_object("counter")
    fronts = material(rng, str(rng.choice(["wood", "painted", "white"])), pattern="seams", scale=_u(rng, 0.4, 0.6),
                      angle=0.0, contrast=0.45, width=0.03)
    scene.add(place.box((0, (h - 0.04) / 2, 0), (w / 2, (h - 0.04) / 2, d / 2 - 0.02)), oid, fronts)
    scene.add(place.box((0, h - 0.02, 0.01), (w / 2 + 0.01, 0.02, d / 2)), oid, material(rng, "stone"))
    return [(place.on_top((0, h, 0)), w / 2, d / 2)]


@recipe("box", "free", lambda r: (_u(r, 0.25, 0.65), _u(r, 0.25, 0.6), _u(r, 0.2, 0.6)))
def _box(scene: Scene, rng, place, size):
    w, d, h = size
    mat = material(rng, "cardboard") if rng.random() < 0.7 else material(rng, "plastic")
    scene.add(place.box((0, h / 2, 0), (w / 2, h / 2, d / 2)), scene.new_object("box"), mat)
    return [(place.on_top((0, h, 0)), w / 2, d / 2)] if rng.random() < 0.3 else []


@recipe("lamp", "free", lambda r: (0.36, 0.36, _u(r, 1.3, 1.8)))
def _floor_lamp(scene: Scene, rng, place, size):
    _, _, h = size
    oid = scene.new_object("lamp")
    metal = material(rng, str(rng.choice(["metal", "dark"])))
    scene.add(place.cylinder((0, 0, 0), (0, 1, 0), _u(rng, 0.12, 0.17), 0.03), oid, metal)
    scene.add(place.cylinder((0, 0.03, 0), (0, 1, 0), 0.013, h - 0.3), oid, metal)
    shade_h = _u(rng, 0.24, 0.34)
    scene.add(place.cylinder((0, h - shade_h, 0), (0, 1, 0), _u(rng, 0.15, 0.22), shade_h), oid,
              material(rng, "warm_light", emissive=rng.random() < 0.6))
    return []


@recipe("floor mat", "free", lambda r: (_u(r, 0.8, 2.2), _u(r, 0.6, 1.6), 0.012))
def _mat(scene: Scene, rng, place, size):
    w, d, h = size
    mat = material(rng, "fabric", pattern=str(rng.choice(["stripes", "checker", "noise"])))
    scene.add(place.box((0, h / 2, 0), (w / 2, h / 2, d / 2)), scene.new_object("floor mat"), mat)
    return []


@recipe("ball", "free", lambda r: (_u(r, 0.2, 0.5),) * 2 + (0.0,))
def _ball(scene: Scene, rng, place, size):
    r = size[0] / 2
    scene.add(place.sphere((0, r, 0), r), scene.new_object("ball"), material(rng, "plastic"))
    return []


@recipe("bin", "free", lambda r: (_u(r, 0.24, 0.4),) * 2 + (_u(r, 0.3, 0.55),))
def _bin(scene: Scene, rng, place, size):
    w, _, h = size
    mat = material(rng, str(rng.choice(["metal", "plastic", "dark"])))
    scene.add(place.cylinder((0, 0, 0), (0, 1, 0), w / 2, h), scene.new_object("bin"), mat)
    return []


@recipe("plant", "free", lambda r: (_u(r, 0.25, 0.5),) * 2 + (_u(r, 0.5, 1.3),))
def _plant(scene: Scene, rng, place, size):
    w, _, h = size
    oid = scene.new_object("plant")
    pot_h = min(0.4, h * 0.35)
    scene.add(place.cylinder((0, 0, 0), (0, 1, 0), w / 2 * 0.7, pot_h),
              oid, material(rng, str(rng.choice(["stone", "plastic", "cardboard"]))))
    leaves = material(rng, "foliage")
    rx = w / 2 * _u(rng, 0.9, 1.3)
    scene.add(place.ellipsoid((0, pot_h + (h - pot_h) / 2, 0), (rx, (h - pot_h) / 2 + 0.02, rx)), oid, leaves)
    return []


@recipe("column", "wall", lambda r: (_u(r, 0.3, 0.7), _u(r, 0.25, 0.6), 3.5))
def _column(scene: Scene, rng, place, size):
    """A pillar or duct against a wall, taller than any room (the ceiling hides the rest)."""
    w, d, h = size
    mat = material(rng, str(rng.choice(["wall", "painted", "stone"])))
    scene.add(place.box((0, h / 2, 0), (w / 2, h / 2, d / 2)), scene.new_object("column"), mat)
    return []


@recipe("bag", "free", lambda r: (_u(r, 0.28, 0.5), _u(r, 0.15, 0.3), _u(r, 0.25, 0.5)))
def _bag(scene: Scene, rng, place, size):
    w, d, h = size
    oid = scene.new_object("bag")
    mat = material(rng, str(rng.choice(["fabric", "dark", "plastic"])))
    scene.add(place.ellipsoid((0, h / 2, 0), (w / 2, h / 2, d / 2)), oid, mat)
    scene.add(place.capsule((-w / 4, h * 0.9, 0), (w / 4, h * 0.9, 0), 0.015), oid, mat)
    return []


# ---------------------------------------------------------------- small things that stand on a support
@recipe("clothes", "on_top", lambda r: (_u(r, 0.3, 0.6), _u(r, 0.25, 0.5), _u(r, 0.04, 0.1)))
def _clothes(scene: Scene, rng, place, size):
    w, d, h = size
    scene.add(place.ellipsoid((0, h / 2, 0), (w / 2, h / 2, d / 2)), scene.new_object("clothes"),
              material(rng, "fabric"))
    return []



@recipe("table lamp", "on_top", lambda r: (_u(r, 0.2, 0.32),) * 2 + (_u(r, 0.35, 0.55),))
def _table_lamp(scene: Scene, rng, place, size):
    w, _, h = size
    oid = scene.new_object("lamp")
    base = material(rng, str(rng.choice(["metal", "stone", "plastic"])))
    scene.add(place.ellipsoid((0, 0.07, 0), (0.07, 0.07, 0.07)), oid, base)
    scene.add(place.cylinder((0, 0.1, 0), (0, 1, 0), 0.01, h - 0.25), oid, base)
    scene.add(place.cylinder((0, h - 0.18, 0), (0, 1, 0), w / 2, 0.18), oid,
              material(rng, "warm_light", emissive=rng.random() < 0.5))
    return []


@recipe("monitor", "on_top", lambda r: (_u(r, 0.45, 0.75), 0.2, 0.0))
def _monitor(scene: Scene, rng, place, size):
    w = size[0]
    h = w * 0.6
    oid = scene.new_object("television")
    dark = material(rng, "dark")
    scene.add(place.box((0, 0.01, 0), (0.1, 0.01, 0.08)), oid, dark)
    scene.add(place.box((0, 0.08, -0.02), (0.02, 0.07, 0.015)), oid, dark)
    screen = material(rng, "dark", pattern="painting", scale=w / 3, emissive=True) if rng.random() < 0.4 else dark
    scene.add(place.box((0, 0.12 + h / 2, 0), (w / 2, h / 2, 0.02)), oid, screen)
    return []


@recipe("small box", "on_top", lambda r: (_u(r, 0.12, 0.4), _u(r, 0.12, 0.35), _u(r, 0.08, 0.3)))
def _small_box(scene: Scene, rng, place, size):
    w, d, h = size
    mat = material(rng, str(rng.choice(["cardboard", "plastic", "white"])))
    scene.add(place.box((0, h / 2, 0), (w / 2, h / 2, d / 2)), scene.new_object("box"), mat)
    return []


@recipe("books", "on_top", lambda r: (_u(r, 0.15, 0.3), _u(r, 0.2, 0.3), 0.0))
def _book_stack(scene: Scene, rng, place, size):
    w, d, _ = size
    oid = scene.new_object("books")
    y = 0.0
    for _ in range(int(rng.integers(1, 5))):
        t = _u(rng, 0.02, 0.05)
        turn = rotation_y(_u(rng, -0.3, 0.3))
        scene.add(place.box((0, y + t / 2, 0), (w / 2, t / 2, d / 2), turn), oid, material(rng, "plastic"))
        y += t
    return []


@recipe("vase", "on_top", lambda r: (_u(r, 0.1, 0.22),) * 2 + (_u(r, 0.15, 0.45),))
def _vase(scene: Scene, rng, place, size):
    w, _, h = size
    mat = material(rng, str(rng.choice(["plastic", "stone", "glass"])))
    scene.add(place.cylinder((0, 0, 0), (0, 1, 0), w / 2, h), scene.new_object("vase"), mat)
    return []


@recipe("bottle", "on_top", lambda r: (_u(r, 0.06, 0.1),) * 2 + (_u(r, 0.2, 0.34),))
def _bottle(scene: Scene, rng, place, size):
    w, _, h = size
    oid = scene.new_object("bottle")
    mat = material(rng, str(rng.choice(["glass", "plastic", "foliage"])))
    scene.add(place.cylinder((0, 0, 0), (0, 1, 0), w / 2, h * 0.65), oid, mat)
    scene.add(place.cylinder((0, h * 0.65, 0), (0, 1, 0), w / 5, h * 0.35), oid, mat)
    return []


@recipe("small plant", "on_top", lambda r: (_u(r, 0.15, 0.3),) * 2 + (_u(r, 0.25, 0.5),))
def _small_plant(scene: Scene, rng, place, size):
    return _plant(scene, rng, place, size)


# ---------------------------------------------------------------- wall-mounted things (origin on the wall)
@recipe("picture", "wall_mounted", lambda r: (_u(r, 0.3, 1.1), 0.025, _u(r, 0.3, 0.9)))
def _picture(scene: Scene, rng, place, size):
    w, d, h = size
    mat = material(rng, "painted", pattern="painting", scale=_u(rng, 0.15, 0.5))
    scene.add(place.box((0, h / 2, d / 2), (w / 2, h / 2, d / 2)), scene.new_object("picture"), mat)
    return []


@recipe("window", "wall_mounted", lambda r: (_u(r, 0.7, 1.6), 0.03, _u(r, 0.9, 1.5)))
def _window(scene: Scene, rng, place, size):
    w, d, h = size
    panes = max(1, int(round(w / 0.6)))
    glass = material(rng, "glass", pattern="tiles", scale=w / panes, angle=0.0, emissive=True,
                     second=(0.85, 0.85, 0.82), grout=0.05)
    scene.add(place.box((0, h / 2, d / 2), (w / 2, h / 2, d / 2)), scene.new_object("window"), glass)
    cover = rng.random()
    if cover < 0.3:  # curtains on both sides
        cloth = material(rng, "fabric", pattern="stripes", scale=_u(rng, 0.05, 0.12), angle=0.0, contrast=0.8)
        cw = _u(rng, 0.15, 0.3)
        for sx in (-1, 1):
            scene.add(place.box((sx * (w / 2 + cw * 0.6), h / 2 + 0.1, 0.08), (cw, h / 2 + 0.3, 0.03)),
                      scene.new_object("curtain"), cloth)
    elif cover < 0.45:  # blinds, partly lowered
        frac = _u(rng, 0.3, 1.0)
        slats = material(rng, str(rng.choice(["white", "wood", "painted"])), pattern="seams", scale=0.05,
                         angle=np.pi / 2, contrast=0.7, width=0.2)
        scene.add(place.box((0, h - h * frac / 2 + 0.02, 0.06), (w / 2 + 0.03, h * frac / 2 + 0.02, 0.015)),
                  scene.new_object("blinds"), slats)
    return []


@recipe("door", "wall_mounted", lambda r: (_u(r, 0.8, 0.95), 0.04, _u(r, 1.98, 2.1)))
def _door(scene: Scene, rng, place, size):
    w, d, h = size
    oid = scene.new_object("door")
    mat = material(rng, str(rng.choice(["wood", "painted", "white"])))
    scene.add(place.box((0, h / 2, d / 2), (w / 2, h / 2, d / 2)), oid, mat)
    scene.add(place.sphere((w / 2 - 0.08, 1.0, d + 0.03), 0.03), oid, material(rng, "metal"))
    return []


@recipe("whiteboard", "wall_mounted", lambda r: (_u(r, 1.0, 2.0), 0.02, _u(r, 0.8, 1.2)))
def _whiteboard(scene: Scene, rng, place, size):
    w, d, h = size
    scene.add(place.box((0, h / 2, d / 2), (w / 2, h / 2, d / 2)), scene.new_object("whiteboard"),
              material(rng, "white", pattern="noise", scale=0.5, contrast=0.93))
    return []


@recipe("television", "wall_mounted", lambda r: (_u(r, 0.7, 1.4), 0.05, 0.0))
def _wall_tv(scene: Scene, rng, place, size):
    w, d, _ = size
    h = w * 0.58
    on = rng.random() < 0.35
    screen = material(rng, "dark", pattern="painting", scale=w / 3, emissive=True) if on else material(rng, "dark")
    scene.add(place.box((0, h / 2, d / 2), (w / 2, h / 2, d / 2)), scene.new_object("television"), screen)
    return []


@recipe("towel", "wall_mounted", lambda r: (_u(r, 0.3, 0.6), 0.02, _u(r, 0.45, 0.9)))
def _towel(scene: Scene, rng, place, size):
    w, d, h = size
    mat = material(rng, "fabric", pattern=str(rng.choice(["stripes", "plain"])), angle=np.pi / 2)
    scene.add(place.box((0, h / 2, d / 2 + 0.02), (w / 2, h / 2, d / 2)), scene.new_object("towel"), mat)
    return []


@recipe("shelves", "wall_mounted", lambda r: (_u(r, 0.6, 1.4), 0.25, _u(r, 0.3, 0.9)))
def _wall_shelves(scene: Scene, rng, place, size):
    w, d, h = size
    oid = scene.new_object("shelves")
    mat = material(rng, str(rng.choice(["wood", "white", "painted"])))
    boards = 1 if h < 0.45 else 2
    supports = []
    for i in range(boards):
        y = h * i / max(1, boards - 1) if boards > 1 else 0.0
        scene.add(place.box((0, y + 0.015, d / 2), (w / 2, 0.015, d / 2)), oid, mat)
        supports.append((place.on_top((0, y + 0.03, d / 2)), w / 2, d / 2))
    return supports
