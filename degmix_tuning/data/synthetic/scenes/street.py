"""Cityscapes-like street scenes: a road seen from a car's windscreen, with sidewalks, rows of buildings, trees,
poles carrying signs and lights, parked and driving vehicles, pedestrians, cyclists and at times the ego vehicle's
bonnet (void, as in Cityscapes).

The street runs along world -z from the camera, which sits 1.15-1.45 m above the road with Cityscapes' horizontal
field of view (about 50 degrees: fx 2262.5 px over 2048 px). Every surface gets a Cityscapes label (trainId, labelId)
from `classes.CITYSCAPES_LABELS`.
"""

from __future__ import annotations

import numpy as np

from .camera import PinholeCamera
from .classes import LabelSet
from .figures import add_person
from .geometry import Box, Cylinder, Ellipsoid, Plane, SkyDome, rotation_y
from .materials import material
from .pascal_like import SKY_RADIUS, _sky_material
from .placement import FloorPlan, Footprint, Placement
from .raycast import Scene
from .shading import Lighting
from .voc_objects import VOC_OBJECTS

STREET_START, STREET_END = 10.0, -160.0  # world z of the modelled street (the camera is at z = 0, looking to -z)


def _relabel(scene: Scene, oid: int, name: str) -> None:
    """Give an object built by a shared recipe (a person, a bicycle) another class, e.g. rider or motorcycle."""
    obj = scene.objects[oid - 1]
    obj.semseg, obj.context = scene.labels(name)
    obj.name = name


def _truck(scene: Scene, rng: np.random.Generator, place: Placement) -> int:
    oid = scene.new_object("truck")
    w, length, h = 2.4, float(rng.uniform(6.0, 9.0)), float(rng.uniform(2.8, 3.6))
    cab = 1.9
    scene.add(place.box((0, 0.45 + (h - 0.45) / 2, -cab / 2), (w / 2, (h - 0.45) / 2, (length - cab) / 2)), oid,
              material(rng, str(rng.choice(["white", "painted", "metal"]))))
    scene.add(place.box((0, 0.45 + 1.1, (length - cab) / 2), (w / 2 * 0.95, 1.1, cab / 2)), oid,
              material(rng, "plastic"))
    tyre = material(rng, "dark")
    for z in (-0.35 * length, 0.3 * length):
        for sx in (-1, 1):
            scene.add(place.cylinder((sx * (w / 2 - 0.1) - 0.15, 0.48, z), (1, 0, 0), 0.48, 0.3), oid, tyre)
    return oid


def _vehicle(scene: Scene, rng: np.random.Generator, kind: str, place: Placement) -> int:
    """A car, bus or bicycle from the VOC recipes, or a truck; returns its object id."""
    if kind == "truck":
        return _truck(scene, rng, place)
    spec = VOC_OBJECTS.get(kind)
    return spec.build(scene, rng, place, spec.size(rng))


def _vehicle_length(kind: str) -> float:
    return {"car": 4.8, "truck": 9.0, "bus": 12.0}[kind]


def _buildings(scene: Scene, rng: np.random.Generator, side: int, x0: float) -> None:
    """A row of facades from x0 outwards, with gaps holding a wall or nothing (terrain behind)."""
    z = STREET_START
    while z > STREET_END:
        width = float(rng.uniform(8.0, 25.0))
        if rng.random() < 0.15:  # a gap: a wall along the building line, or an open lot
            if rng.random() < 0.6:
                h = float(rng.uniform(1.0, 2.5))
                scene.add(Box((side * (x0 + 0.15), h / 2, z - width / 2), (0.15, h / 2, width / 2)),
                          scene.new_object("wall"), material(rng, str(rng.choice(["stone", "painted"]))))
        else:
            depth, h = float(rng.uniform(8.0, 15.0)), float(rng.uniform(6.0, 28.0))
            setback = float(rng.uniform(0.0, 1.5))
            scene.add(Box((side * (x0 + setback + depth / 2), h / 2, z - width / 2), (depth / 2, h / 2, width / 2)),
                      scene.new_object("building"), material(rng, "building", grout=0.35))
        z -= width


def _tree(scene: Scene, rng: np.random.Generator, x: float, z: float) -> None:
    oid = scene.new_object("vegetation")
    trunk = float(rng.uniform(2.0, 4.0))
    scene.add(Cylinder((x, 0, z), (0, 1, 0), float(rng.uniform(0.1, 0.2)), trunk + 0.5), oid, material(rng, "bark"))
    crown = float(rng.uniform(1.5, 3.0))
    scene.add(Ellipsoid((x, trunk + crown * 0.8, z), (crown, crown * rng.uniform(1.0, 1.4), crown)), oid,
              material(rng, "foliage", scale=rng.uniform(0.3, 0.8)))


def _pole(scene: Scene, rng: np.random.Generator, side: int, x: float, z: float) -> None:
    """A pole, sometimes carrying a traffic sign facing the camera and/or a traffic light at its top."""
    h, r = float(rng.uniform(3.5, 8.0)), float(rng.uniform(0.05, 0.1))
    scene.add(Cylinder((x, 0, z), (0, 1, 0), r, h), scene.new_object("pole"), material(rng, "metal"))
    if rng.random() < 0.6:
        y = float(rng.uniform(2.0, min(3.0, h - 0.4)))
        size = float(rng.uniform(0.25, 0.4))
        scene.add(Box((x - side * (size + r), y, z + r + 0.02), (size, size, 0.02)), scene.new_object("traffic sign"),
                  material(rng, str(rng.choice(["white", "plastic"])), pattern="plain"))
    if rng.random() < 0.35:
        scene.add(Box((x - side * 0.6, h - 0.5, z + 0.2), (0.15, 0.45, 0.15)), scene.new_object("traffic light"),
                  material(rng, "dark"))


def _ego_bonnet(scene: Scene, rng: np.random.Generator, camera: PinholeCamera) -> None:
    """The ego vehicle's bonnet filling the bottom 6-14 % of the image centre (void in Cityscapes)."""
    row = camera.height * (1.0 - rng.uniform(0.06, 0.14))
    down = np.arctan((row - camera.cy) / camera.fy) - camera.pitch  # angle below horizontal of that image row
    drop = float(rng.uniform(0.5, 0.7))  # bonnet top below the camera
    reach = drop / np.tan(max(down, 0.05))  # where that row's ray meets the bonnet top
    turn = rotation_y(camera.yaw)
    centre = camera.position + turn @ np.array([0.0, -drop - 0.3, -reach / 2])
    scene.add(Box(centre, (0.9, 0.3, reach / 2), turn), scene.new_object("ego vehicle"),
              material(rng, "plastic", pattern="plain"))


def build_street_scene(rng: np.random.Generator, size: tuple[int, int],
                       labels: LabelSet) -> tuple[Scene, PinholeCamera, Lighting]:
    scene = Scene(labels)
    road_half, walk, curb = float(rng.uniform(3.5, 7.5)), float(rng.uniform(1.8, 4.0)), float(rng.uniform(0.1, 0.16))
    camera = PinholeCamera.from_fov(size, rng.uniform(46.0, 54.0),
                                    (rng.uniform(-0.5, 0.5) * road_half, rng.uniform(1.15, 1.45), 0.0),
                                    yaw=rng.normal(0.0, 0.06), pitch=rng.uniform(-0.07, 0.01),
                                    roll=float(np.clip(rng.normal(0.0, 0.01), -0.03, 0.03)))
    length, mid = STREET_START - STREET_END, (STREET_START + STREET_END) / 2
    scene.add(Plane((0, 0, 0), (0, 1, 0), (1, 0, 0)), scene.new_object("road"), material(rng, "road"))
    scene.add(SkyDome(camera.position, SKY_RADIUS), scene.new_object("sky"), _sky_material(rng))
    plan = FloorPlan((-1e4, 1e4), (-1e4, 1e4))
    plan.block(Footprint(float(camera.position[0]), 0.0, 1.0, 2.5))  # the ego vehicle
    for side in (-1, 1):
        scene.add(Box((side * (road_half + walk / 2), curb / 2, mid), (walk / 2, curb / 2, length / 2)),
                  scene.new_object("sidewalk"), material(rng, "sidewalk"))
        outer = road_half + walk
        if rng.random() < 0.4:  # a grass strip between sidewalk and facades
            strip = float(rng.uniform(1.0, 4.0))
            scene.add(Box((side * (outer + strip / 2), 0.04, mid), (strip / 2, 0.04, length / 2)),
                      scene.new_object("terrain"), material(rng, "grass"))
            outer += strip
        # open ground behind the facades, seen through the gaps
        scene.add(Box((side * (outer + 100.0), 0.01, mid), (100.0, 0.01, length / 2)), scene.new_object("terrain"),
                  material(rng, "grass"))
        _buildings(scene, rng, side, outer)
        if rng.random() < 0.3:  # a fence along the sidewalk's outer edge
            z0, span = float(rng.uniform(-40.0, -3.0)), float(rng.uniform(5.0, 30.0))
            h = float(rng.uniform(1.0, 1.4))
            scene.add(Box((side * (road_half + walk - 0.1), curb + h / 2, z0 - span / 2), (0.03, h / 2, span / 2)),
                      scene.new_object("fence"), material(rng, str(rng.choice(["metal", "wood"])), pattern="seams",
                                                          scale=0.15, angle=0.0, contrast=0.3, width=0.3))
        if rng.random() < 0.6:  # a row of trees on the sidewalk
            z = -float(rng.uniform(3.0, 10.0))
            for _ in range(int(rng.integers(2, 7))):
                x = side * (road_half + walk * 0.7)
                if plan.try_add(Footprint(x, z, 0.4, 0.4)):
                    _tree(scene, rng, x, z)
                z -= float(rng.uniform(8.0, 15.0))
        for _ in range(int(rng.integers(1, 5))):  # poles near the curb
            x, z = side * (road_half + 0.4), -float(rng.uniform(5.0, 60.0))
            if plan.try_add(Footprint(x, z, 0.3, 0.3)):
                _pole(scene, rng, side, x, z)
        for _ in range(int(rng.integers(0, 5))):  # parked cars along the curb
            x, z = side * (road_half - 1.1), -float(rng.uniform(4.0, 70.0))
            yaw = (0.0 if rng.random() < 0.5 else np.pi) + rng.normal(0.0, 0.03)
            if plan.try_add(Footprint(x, z, 1.0, 2.5, yaw)):
                _vehicle(scene, rng, "car", Placement(x, z, yaw))
        for _ in range(int(rng.integers(0, 4))):  # pedestrians on the sidewalk
            x, z = side * (road_half + rng.uniform(0.4, walk - 0.4)), -float(rng.uniform(3.0, 40.0))
            yaw = float(rng.choice([0.0, np.pi]) + rng.normal(0.0, 0.6))
            if plan.try_add(Footprint(x, z, 0.3, 0.3, yaw)):
                add_person(scene, rng, Placement(x, z, yaw, curb), float(rng.uniform(1.5, 1.92)))
        if rng.random() < 0.3:  # street furniture: void ("static") in Cityscapes
            x, z = side * (road_half + rng.uniform(0.5, walk - 0.5)), -float(rng.uniform(4.0, 30.0))
            if plan.try_add(Footprint(x, z, 0.3, 0.3)):
                scene.add(Box((x, curb + 0.5, z), (0.3, 0.5, 0.3)), scene.new_object("static"),
                          material(rng, str(rng.choice(["metal", "dark", "plastic"]))))
    for _ in range(int(rng.integers(0, 4))):  # traffic ahead, driving away
        kind = str(rng.choice(["car", "car", "car", "truck", "bus"]))
        x, z = float(rng.uniform(-road_half + 1.5, road_half - 1.5)), -float(rng.uniform(8.0, 60.0))
        yaw = np.pi + rng.normal(0.0, 0.03)
        if plan.try_add(Footprint(x, z, 1.3, _vehicle_length(kind) / 2, yaw)):
            _vehicle(scene, rng, kind, Placement(x, z, yaw))
    if rng.random() < 0.5:  # a cyclist or motorcyclist near the curb
        side = int(rng.choice([-1, 1]))
        x, z, yaw = side * (road_half - 0.8), -float(rng.uniform(6.0, 30.0)), float(np.pi + rng.normal(0.0, 0.05))
        if plan.try_add(Footprint(x, z, 0.4, 1.0, yaw)):
            bike = _vehicle(scene, rng, "bicycle", Placement(x, z, yaw))
            if rng.random() < 0.3:
                _relabel(scene, bike, "motorcycle")
            _relabel(scene, add_person(scene, rng, Placement(x, z, yaw, 0.35), float(rng.uniform(1.6, 1.9))), "rider")
    if rng.random() < 0.5:
        _ego_bonnet(scene, rng, camera)
    sun_elevation, sun_azimuth = rng.uniform(0.3, 1.3), rng.uniform(0, 2 * np.pi)
    sun = np.array([np.cos(sun_elevation) * np.sin(sun_azimuth), np.sin(sun_elevation),
                    np.cos(sun_elevation) * np.cos(sun_azimuth)])
    lighting = Lighting(ambient=tuple(np.array([0.85, 0.9, 1.0]) * rng.uniform(0.35, 0.55)),
                        sun=(sun, np.array([1.0, 0.96, 0.92]) * rng.uniform(0.6, 1.0)))
    return scene, camera, lighting
