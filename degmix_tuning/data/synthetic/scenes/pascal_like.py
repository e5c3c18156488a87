"""PASCAL-like scenes: 1-3 posed people and a few VOC objects, outdoors (ground, sky, trees, buildings,
mountains) or in a room (the indoor furniture, labelled with VOC / Context ids).

The foreground is placed inside the camera's field of view at a random distance, so people and objects are
seen at many scales; background clutter sits behind the foreground.
"""

from __future__ import annotations

import numpy as np

from .camera import PinholeCamera
from .classes import LabelSet
from .figures import add_person
from .geometry import Box, Cylinder, Ellipsoid, Plane, SkyDome, rotation_y
from .indoor import RoomLayout, room_lights, add_room_shell, room_walls
from .materials import material
from .placement import FloorPlan, Footprint, Placement
from .raycast import Scene
from .shading import Lighting, Material, jitter_color
from .voc_objects import VOC_OBJECTS

SKY_RADIUS = 400.0  # metres; the ground plane meets the dome just below the horizon
OUTDOOR_OBJECTS = ("car", "car", "bus", "bicycle", "bird", "dog", "dog", "cat", "sheep", "cow", "horse")
INDOOR_OBJECTS = ("cat", "dog", "bird")
GROUNDS = {"grass": "grass", "ground": "ground", "road": "road", "sand": "sand", "snow": "snow"}


def _view_spot(rng: np.random.Generator, camera: PinholeCamera, distance: float, spread: float = 0.8):
    """A ground point at `distance` in front of the camera, inside `spread` x the horizontal half field of view."""
    half_fov = np.arctan((camera.width / 2) / camera.fx)
    theta = rng.uniform(-spread, spread) * half_fov
    direction = rotation_y(camera.yaw) @ np.array([np.sin(theta), 0.0, -np.cos(theta)])
    p = camera.position + distance * direction
    return float(p[0]), float(p[2])


def _facing_camera(rng, camera, x, z, spread=1.2) -> float:
    return float(np.arctan2(camera.position[0] - x, camera.position[2] - z) + rng.normal(0, spread))


def _place_people_and_objects(scene: Scene, rng: np.random.Generator, camera: PinholeCamera, plan: FloorPlan,
                              object_pool: tuple[str, ...], max_distance: float) -> float:
    """Foreground: 1-3 people and 0-2 VOC objects in view; returns the farthest foreground distance."""
    farthest = 0.0
    n_people = int(rng.choice([1, 2, 3], p=[0.45, 0.35, 0.2]))
    for i in range(n_people):
        height = rng.uniform(1.5, 1.92) if rng.random() < 0.8 else rng.uniform(1.0, 1.45)
        for _ in range(15):
            dist = rng.uniform(2.0, min(6.0, max_distance)) if i == 0 else rng.uniform(2.2, max_distance)
            x, z = _view_spot(rng, camera, dist)
            yaw = _facing_camera(rng, camera, x, z)
            if plan.try_add(Footprint(x, z, 0.3, 0.3, yaw)):
                add_person(scene, rng, Placement(x, z, yaw), height)
                farthest = max(farthest, dist)
                break
    n_objects = int(rng.choice([0, 1, 2, 3], p=[0.2, 0.35, 0.3, 0.15]))
    for _ in range(n_objects):
        spec = VOC_OBJECTS.get(str(rng.choice(object_pool)))
        dims = spec.size(rng)
        for _ in range(15):
            dist = rng.uniform(2.5, 0.7 * max_distance) + dims["length"] / 2
            x, z = _view_spot(rng, camera, dist)
            yaw = float(rng.uniform(0, 2 * np.pi))
            if plan.try_add(Footprint(x, z, dims["width"] / 2, dims["length"] / 2, yaw)):
                spec.build(scene, rng, Placement(x, z, yaw), dims)
                farthest = max(farthest, dist)
                break
    return farthest


def _sky_material(rng: np.random.Generator) -> Material:
    zenith = jitter_color(rng, (0.55, 0.63), (0.3, 0.75), (0.55, 0.9))
    horizon = jitter_color(rng, (0.5, 0.65), (0.0, 0.2), (0.85, 1.0))
    return Material(zenith, horizon, "sky", scale=1.0, angle=0.0, seed=int(rng.integers(0, 2**31 - 1)),
                    grain=0.0, emissive=True, params={"cloudiness": float(rng.uniform(0.0, 0.9))})


def _outdoor_background(scene: Scene, rng: np.random.Generator, camera: PinholeCamera, start: float) -> None:
    """Trees, buildings, a fence and mountains behind the foreground (nearest at `start` metres)."""
    forward = rotation_y(camera.yaw)

    def spot(distance, spread=1.3):
        theta = rng.uniform(-spread, spread) * np.arctan((camera.width / 2) / camera.fx)
        p = camera.position + distance * (forward @ np.array([np.sin(theta), 0.0, -np.cos(theta)]))
        return float(p[0]), float(p[2])

    if rng.random() < 0.25:  # a fence across the view
        dist = start + rng.uniform(1.0, 6.0)
        x, z = spot(dist, 0.0)
        yaw = camera.yaw + rng.normal(0, 0.3)
        fence = material(rng, str(rng.choice(["wood", "metal", "painted"])), pattern="seams", scale=0.15,
                         angle=0.0, contrast=0.3, width=0.3)
        h = rng.uniform(0.8, 1.5)
        scene.add(Box((x, h / 2, z), (60.0, h / 2, 0.03), rotation_y(yaw)), scene.new_object("fence"), fence)
    for _ in range(int(rng.integers(0, 7))):  # trees
        x, z = spot(start + rng.uniform(2.0, 40.0))
        oid = scene.new_object("tree")
        trunk_h, trunk_r = rng.uniform(1.5, 4.0), rng.uniform(0.1, 0.3)
        scene.add(Cylinder((x, 0, z), (0, 1, 0), trunk_r, trunk_h + 0.5), oid, material(rng, "bark"))
        crown = rng.uniform(1.2, 3.5)
        scene.add(Ellipsoid((x, trunk_h + crown * 0.8, z), (crown, crown * rng.uniform(0.9, 1.5), crown)), oid,
                  material(rng, "foliage", scale=rng.uniform(0.3, 0.8)))
    for _ in range(int(rng.integers(0, 5))):  # buildings
        x, z = spot(start + rng.uniform(10.0, 70.0))
        w, d, h = rng.uniform(6, 25), rng.uniform(6, 20), rng.uniform(5, 30)
        scene.add(Box((x, h / 2, z), (w / 2, h / 2, d / 2), rotation_y(camera.yaw + rng.normal(0, 0.4))),
                  scene.new_object("building"), material(rng, "building", grout=0.35))
    for _ in range(int(rng.integers(0, 3))):  # mountains
        x, z = spot(rng.uniform(150.0, 320.0), 1.5)
        r = rng.uniform(60.0, 160.0)
        scene.add(Ellipsoid((x, -r * 0.4, z), (r * rng.uniform(1.5, 3.0), r, r)), scene.new_object("mountain"),
                  material(rng, "mountain"))


def build_pascal_scene(rng: np.random.Generator, size: tuple[int, int],
                       labels: LabelSet) -> tuple[Scene, PinholeCamera, Lighting]:
    scene = Scene(labels)
    if rng.random() < 0.7:
        camera = PinholeCamera.from_fov(size, rng.uniform(45.0, 65.0), (0.0, rng.uniform(1.1, 1.9), 0.0),
                                        yaw=rng.uniform(0, 2 * np.pi), pitch=rng.uniform(-0.3, 0.08),
                                        roll=float(np.clip(rng.normal(0, 0.03), -0.08, 0.08)))
        ground = str(rng.choice(sorted(GROUNDS)))
        scene.add(Plane((0, 0, 0), (0, 1, 0), (1, 0, 0)), scene.new_object(ground), material(rng, GROUNDS[ground]))
        if ground in ("grass", "ground") and rng.random() < 0.4:  # a road or path across the ground
            name = str(rng.choice(["road", "sidewalk"]))
            x, z = _view_spot(rng, camera, rng.uniform(3.0, 15.0), 0.3)
            scene.add(Box((x, 0.002, z), (300.0, 0.002, rng.uniform(1.0, 4.0)),
                          rotation_y(camera.yaw + rng.normal(0, 0.5))), scene.new_object(name), material(rng, name))
        scene.add(SkyDome(camera.position, SKY_RADIUS), scene.new_object("sky"), _sky_material(rng))
        plan = FloorPlan((-1e4, 1e4), (-1e4, 1e4))
        plan.block(Footprint(0.0, 0.0, 0.6, 0.6))
        farthest = _place_people_and_objects(scene, rng, camera, plan, OUTDOOR_OBJECTS, 14.0)
        _outdoor_background(scene, rng, camera, farthest + 2.0)
        sun_elevation, sun_azimuth = rng.uniform(0.3, 1.3), rng.uniform(0, 2 * np.pi)
        sun = np.array([np.cos(sun_elevation) * np.sin(sun_azimuth), np.sin(sun_elevation),
                        np.cos(sun_elevation) * np.cos(sun_azimuth)])
        warm = rng.uniform(0, 1)
        lighting = Lighting(ambient=tuple(np.array([0.85, 0.9, 1.0]) * rng.uniform(0.3, 0.55)),
                            sun=(sun, np.array([1.0, 0.95 - 0.1 * warm, 0.9 - 0.2 * warm]) * rng.uniform(0.6, 1.1)))
        return scene, camera, lighting

    # a room seen from near one wall, people in front of the camera
    x_size, z_size, height = rng.uniform(5.0, 9.0), rng.uniform(6.0, 10.0), rng.uniform(2.5, 3.2)
    cam_x, cam_z = rng.uniform(1.5, x_size - 1.5), z_size - rng.uniform(0.5, 1.2)
    camera = PinholeCamera.from_fov(size, rng.uniform(45.0, 65.0), (cam_x, rng.uniform(1.1, 1.8), cam_z),
                                    yaw=rng.normal(0, 0.35), pitch=rng.uniform(-0.3, 0.08),
                                    roll=float(np.clip(rng.normal(0, 0.03), -0.08, 0.08)))
    floor = str(rng.choice(["floor_wood", "floor_tile", "carpet"]))
    add_room_shell(scene, rng, room_walls(x_size, z_size), height, floor)
    layout = RoomLayout(scene, rng, x_size, z_size, height)
    layout.plan.block(Footprint(cam_x, cam_z, 0.6, 0.6))
    _place_people_and_objects(scene, rng, camera, layout.plan, INDOOR_OBJECTS, min(8.0, z_size - 1.0))
    for name in ("sofa", "cabinet", "bookshelf", "dresser"):
        if rng.random() < 0.35:
            layout.place_against_wall(name)
    for name in ("table", "chair", "chair", "plant"):
        if rng.random() < 0.45:
            layout.place_free(name)
    for name in ("window", "picture", "door", "television"):
        if rng.random() < 0.5:
            layout.place_on_wall(name)
    layout.decorate_supports(("bottle", "monitor", "small plant", "vase", "books", "bottle"))
    return scene, camera, room_lights(scene, rng, x_size, z_size, height)
