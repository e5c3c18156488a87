"""NYUD-like rooms: a box room (floor, ceiling, four walls) furnished according to a room type.

Layout order: camera first (its floor area stays free), then doors, furniture against the walls, free-standing
furniture (chairs gather round tables), maybe a person, wall-mounted things (pictures, windows, TVs, ...), and
finally small things on the tables, dressers and shelves. Everything draws from the one scene generator, so a
seed fixes the whole room.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .camera import PinholeCamera
from .classes import LabelSet
from .figures import add_person
from .furniture import FURNITURE, Support
from .geometry import Cylinder, Plane
from .materials import material
from .placement import FloorPlan, Footprint, Placement
from .raycast import Scene
from .shading import Lighting


@dataclass(frozen=True)
class RoomType:
    floor: tuple[tuple[str, int, int], ...]  # (recipe, min count, max count), placed in this order
    wall_mounted: tuple[tuple[str, int, int], ...]
    on_top: tuple[str, ...]  # what may stand on supports
    floor_palettes: tuple[str, ...]
    person_probability: float = 0.15


ROOM_TYPES: dict[str, RoomType] = {
    "bedroom": RoomType(
        floor=(("bed", 1, 1), ("night stand", 1, 2), ("dresser", 0, 1), ("cabinet", 0, 2), ("bookshelf", 0, 1),
               ("floor mat", 0, 1), ("chair", 0, 1), ("lamp", 0, 1), ("box", 0, 3), ("ball", 0, 1), ("bin", 0, 1),
               ("bag", 0, 2), ("column", 0, 1)),
        wall_mounted=(("door", 0, 1), ("window", 1, 2), ("picture", 1, 3), ("television", 0, 1), ("shelves", 0, 1),
                      ("towel", 0, 1)),
        on_top=("table lamp", "books", "small box", "vase", "small plant", "clothes", "clothes"),
        floor_palettes=("floor_wood", "carpet", "carpet"),
    ),
    "living": RoomType(
        floor=(("sofa", 1, 2), ("dresser", 0, 1), ("cabinet", 0, 1), ("bookshelf", 0, 2), ("coffee table", 0, 1),
               ("table", 0, 1), ("chair", 1, 3), ("floor mat", 0, 1), ("lamp", 0, 2), ("plant", 0, 2),
               ("ball", 0, 1), ("box", 0, 2), ("bag", 0, 1), ("column", 0, 1)),
        wall_mounted=(("door", 0, 1), ("window", 1, 2), ("picture", 1, 4), ("television", 0, 1), ("shelves", 0, 2)),
        on_top=("books", "vase", "small plant", "table lamp", "small box", "monitor"),
        floor_palettes=("floor_wood", "floor_tile", "carpet"),
        person_probability=0.2,
    ),
    "office": RoomType(
        floor=(("desk", 1, 3), ("bookshelf", 0, 2), ("cabinet", 1, 3), ("table", 0, 1), ("chair", 1, 4),
               ("box", 1, 4), ("bin", 0, 2), ("plant", 0, 1), ("stool", 0, 1), ("bag", 0, 2), ("column", 0, 1)),
        wall_mounted=(("door", 0, 1), ("whiteboard", 0, 1), ("window", 1, 2), ("picture", 0, 2), ("shelves", 0, 1)),
        on_top=("monitor", "monitor", "books", "small box", "table lamp", "vase"),
        floor_palettes=("carpet", "floor_tile", "floor_wood"),
        person_probability=0.2,
    ),
    "kitchen": RoomType(
        floor=(("counter", 1, 3), ("refrigerator", 0, 1), ("cabinet", 1, 3), ("table", 0, 1), ("chair", 0, 4),
               ("stool", 0, 2), ("bin", 0, 1), ("box", 0, 2), ("column", 0, 1)),
        wall_mounted=(("door", 0, 1), ("window", 1, 2), ("picture", 0, 2), ("shelves", 0, 2), ("towel", 0, 2)),
        on_top=("vase", "small box", "books", "small plant", "bottle"),
        floor_palettes=("floor_tile", "floor_tile", "floor_wood"),
    ),
}

# height of the bottom edge above the floor for wall-mounted recipes
_MOUNT_HEIGHT = {"door": (0.0, 0.0), "window": (0.7, 1.0), "picture": (1.1, 1.6), "television": (0.9, 1.3),
                 "whiteboard": (0.8, 1.0), "shelves": (1.0, 1.5), "towel": (0.6, 1.1)}


@dataclass(frozen=True)
class Wall:
    origin: np.ndarray  # (x, z) of the wall's start on the floor
    tangent: np.ndarray  # (x, z) unit direction along the wall
    normal: np.ndarray  # (x, z) unit normal pointing into the room
    length: float

    def floor_point(self, s: float, offset: float = 0.0) -> np.ndarray:
        return self.origin + s * self.tangent + offset * self.normal

    @property
    def facing_yaw(self) -> float:
        """Yaw that turns an object's front (+z) to face into the room."""
        return float(np.arctan2(self.normal[0], self.normal[1]))


def room_walls(x_size: float, z_size: float) -> list[Wall]:
    return [
        Wall(np.array([0.0, 0.0]), np.array([0.0, 1.0]), np.array([1.0, 0.0]), z_size),
        Wall(np.array([x_size, 0.0]), np.array([0.0, 1.0]), np.array([-1.0, 0.0]), z_size),
        Wall(np.array([0.0, 0.0]), np.array([1.0, 0.0]), np.array([0.0, 1.0]), x_size),
        Wall(np.array([0.0, z_size]), np.array([1.0, 0.0]), np.array([0.0, -1.0]), x_size),
    ]


def add_room_shell(scene: Scene, rng: np.random.Generator, walls: list[Wall], height: float,
                   floor_palette: str) -> None:
    """Floor, ceiling and four walls (each wall its own instance); the camera must be inside."""
    scene.add(Plane((0, 0, 0), (0, 1, 0), (1, 0, 0)), scene.new_object("floor"), material(rng, floor_palette))
    scene.add(Plane((0, height, 0), (0, -1, 0), (1, 0, 0)), scene.new_object("ceiling"), material(rng, "ceiling"))
    paint = material(rng, "wall")
    accent = int(rng.integers(0, 4)) if rng.random() < 0.3 else -1
    for i, wall in enumerate(walls):
        p = wall.origin
        mat = material(rng, "wall") if i == accent else paint
        scene.add(Plane((p[0], 0, p[1]), (wall.normal[0], 0, wall.normal[1]), (wall.tangent[0], 0, wall.tangent[1])),
                  scene.new_object("wall"), mat)


class RoomLayout:
    """Furnishes one room: floor plan bookkeeping, wall slots and supports for small things."""

    def __init__(self, scene: Scene, rng: np.random.Generator, x_size: float, z_size: float, height: float):
        self.scene, self.rng = scene, rng
        self.walls = room_walls(x_size, z_size)
        self.height = height
        self.plan = FloorPlan((0.0, x_size), (0.0, z_size))
        self.wall_slots: list[list[tuple[float, float, float, float]]] = [[] for _ in self.walls]
        self.supports: list[Support] = []
        self.tables: list[Footprint] = []
        self.targets: list[np.ndarray] = []  # centres of what was built: things the camera may look at

    def _build(self, name: str, place: Placement, size) -> None:
        self.supports += FURNITURE.get(name).build(self.scene, self.rng, place, size)
        self.targets.append(place.point((0.0, size[2] / 2, 0.0)))

    def place_against_wall(self, name: str, tries: int = 12) -> bool:
        rng, recipe = self.rng, FURNITURE.get(name)
        w, d, h = recipe.size(rng)
        for _ in range(tries):
            wall = self.walls[int(rng.integers(0, 4))]
            if wall.length < w + 0.2:
                continue
            s = rng.uniform(w / 2 + 0.05, wall.length - w / 2 - 0.05)
            gap = rng.uniform(0.04, 0.1)
            x, z = wall.floor_point(s, d / 2 + gap)
            fp = Footprint(float(x), float(z), w / 2, d / 2, wall.facing_yaw)
            if self.plan.try_add(fp):
                self._build(name, Placement(float(x), float(z), wall.facing_yaw), (w, d, h))
                return True
        return False

    def place_free(self, name: str, tries: int = 12) -> bool:
        rng, recipe = self.rng, FURNITURE.get(name)
        w, d, h = recipe.size(rng)
        if name in ("chair", "stool") and self.tables and rng.random() < 0.7:
            return self._place_at_table(name, (w, d, h), tries)
        for _ in range(tries):
            if rng.random() < 0.5:
                yaw = rng.uniform(0, 2 * np.pi)
            else:  # aligned with the walls, roughly
                yaw = rng.integers(0, 4) * np.pi / 2 + rng.normal(0, 0.1)
            x = rng.uniform(0.2, self.plan.x_range[1] - 0.2)
            z = rng.uniform(0.2, self.plan.z_range[1] - 0.2)
            fp = Footprint(float(x), float(z), w / 2, d / 2, float(yaw))
            if self.plan.try_add(fp):
                if name in ("table", "coffee table"):
                    self.tables.append(fp)
                self._build(name, Placement(float(x), float(z), float(yaw)), (w, d, h))
                return True
        return False

    def _place_at_table(self, name: str, size, tries: int) -> bool:
        rng = self.rng
        w, d, h = size
        for _ in range(tries):
            table = self.tables[int(rng.integers(0, len(self.tables)))]
            side = int(rng.integers(0, 4))
            reach = (table.half_depth if side % 2 == 0 else table.half_width) + d / 2 - 0.05
            local = [(0.0, reach), (reach, 0.0), (0.0, -reach), (-reach, 0.0)][side]
            ax = np.array([np.cos(table.yaw), -np.sin(table.yaw)])  # table's local x in world (x, z)
            az = np.array([np.sin(table.yaw), np.cos(table.yaw)])
            along = rng.uniform(-0.25, 0.25)
            offset = local[0] * ax + local[1] * az + along * (az if side % 2 else ax)
            x, z = table.x + offset[0], table.z + offset[1]
            yaw = float(np.arctan2(table.x - x, table.z - z) + rng.normal(0, 0.15))  # front faces the table
            fp = Footprint(float(x), float(z), w / 2, d / 2, yaw)
            if self.plan.try_add(fp):
                self._build(name, Placement(float(x), float(z), yaw), size)
                return True
        return False

    def place_person(self, tries: int = 12) -> bool:
        rng = self.rng
        height = rng.uniform(1.5, 1.9) if rng.random() < 0.8 else rng.uniform(1.05, 1.45)
        for _ in range(tries):
            x = rng.uniform(0.4, self.plan.x_range[1] - 0.4)
            z = rng.uniform(0.4, self.plan.z_range[1] - 0.4)
            yaw = float(rng.uniform(0, 2 * np.pi))
            if self.plan.try_add(Footprint(float(x), float(z), 0.45, 0.45, yaw)):  # room for outstretched arms
                add_person(self.scene, rng, Placement(float(x), float(z), yaw), height)
                return True
        return False

    def place_on_wall(self, name: str, tries: int = 12) -> bool:
        rng, recipe = self.rng, FURNITURE.get(name)
        w, d, h = recipe.size(rng)
        if name == "television":
            h = w * 0.58
        lo, hi = _MOUNT_HEIGHT[name]
        for _ in range(tries):
            i = int(rng.integers(0, 4))
            wall = self.walls[i]
            if wall.length < w + 0.4:
                continue
            s = rng.uniform(w / 2 + 0.15, wall.length - w / 2 - 0.15)
            y0 = rng.uniform(lo, hi)
            if y0 + h > self.height - 0.1:
                continue
            rect = (s - w / 2 - 0.35, s + w / 2 + 0.35, y0 - 0.1, y0 + h + 0.1)  # room for curtains / frames
            taken = self.wall_slots[i]
            if any(rect[0] < r[1] and r[0] < rect[1] and rect[2] < r[3] and r[2] < rect[3] for r in taken):
                continue
            x, z = wall.floor_point(s)
            if name == "door":  # keep the floor in front of a door free
                fx, fz = wall.floor_point(s, 0.45)
                if not self.plan.try_add(Footprint(float(fx), float(fz), w / 2, 0.45, wall.facing_yaw)):
                    continue
            self.wall_slots[i].append(rect)
            self._build(name, Placement(float(x), float(z), wall.facing_yaw, float(y0)), (w, d, h))
            return True
        return False

    def decorate_supports(self, names: tuple[str, ...], probability: float = 0.65) -> None:
        rng = self.rng
        for place, hw, hd in list(self.supports):
            if rng.random() > probability:
                continue
            count = 1 if hw < 0.45 else int(rng.integers(1, 3))
            for k in range(count):
                name = str(rng.choice(names))
                w, d, h = FURNITURE.get(name).size(rng)
                slot_hw = hw / count
                if w / 2 > slot_hw or d / 2 > hd:
                    continue
                cx = -hw + slot_hw * (2 * k + 1) + rng.uniform(-1, 1) * (slot_hw - w / 2)
                cz = rng.uniform(-1, 1) * (hd - d / 2)
                self._build(name, place.on_top((cx, 0.0, cz), yaw=float(rng.normal(0, 0.4))), (w, d, h))


def build_indoor_scene(rng: np.random.Generator, size: tuple[int, int], labels: LabelSet,
                       room_type: str | None = None) -> tuple[Scene, PinholeCamera, Lighting]:
    """Draw a furnished room, a camera inside it and its lights."""
    kind = str(rng.choice(sorted(ROOM_TYPES))) if room_type is None else room_type
    spec = ROOM_TYPES[kind]
    x_size, z_size, height = rng.uniform(3.0, 5.5), rng.uniform(3.0, 5.5), rng.uniform(2.4, 3.0)
    scene = Scene(labels)

    cam_x, cam_z, cam_y = rng.uniform(0.6, x_size - 0.6), rng.uniform(0.6, z_size - 0.6), rng.uniform(1.0, 1.7)
    add_room_shell(scene, rng, room_walls(x_size, z_size), height, str(rng.choice(spec.floor_palettes)))
    layout = RoomLayout(scene, rng, x_size, z_size, height)
    layout.plan.block(Footprint(cam_x, cam_z, 0.45, 0.45))

    wall_items = [(name, int(rng.integers(lo, hi + 1))) for name, lo, hi in spec.wall_mounted]
    for name, count in wall_items:  # doors first: they reserve floor space
        if name == "door":
            for _ in range(count):
                layout.place_on_wall(name)
    for name, lo, hi in spec.floor:
        for _ in range(int(rng.integers(lo, hi + 1))):
            mount = FURNITURE.get(name).mount
            (layout.place_against_wall if mount == "wall" else layout.place_free)(name)
    if rng.random() < spec.person_probability:
        layout.place_person()
    for name, count in wall_items:
        if name != "door":
            for _ in range(count):
                layout.place_on_wall(name)
    layout.decorate_supports(spec.on_top)

    camera = PinholeCamera.from_fov(size, rng.uniform(55.0, 70.0), (cam_x, cam_y, cam_z),
                                    **_aim(rng, np.array([cam_x, cam_y, cam_z]), layout.targets, x_size, z_size))
    lighting = room_lights(scene, rng, x_size, z_size, height)
    return scene, camera, lighting


def _aim(rng: np.random.Generator, eye: np.ndarray, targets: list[np.ndarray], x_size: float, z_size: float) -> dict:
    """Yaw / pitch / roll of a camera at `eye`: mostly towards one of the objects at least 1.2 m away, else
    towards a random point of the room (NYUD frames mostly look at furniture, slightly downwards)."""
    far = [t for t in targets if np.hypot(t[0] - eye[0], t[2] - eye[2]) > 1.2]
    if far and rng.random() < 0.85:
        target = far[int(rng.integers(0, len(far)))]
        dx, dz = target[0] - eye[0], target[2] - eye[2]
        yaw = np.arctan2(-dx, -dz) + rng.normal(0, 0.15)
        pitch = np.arctan2(target[1] - eye[1], np.hypot(dx, dz)) + rng.normal(0, 0.1)
    else:
        for _ in range(20):
            tx, tz = rng.uniform(0.3, x_size - 0.3), rng.uniform(0.3, z_size - 0.3)
            if np.hypot(tx - eye[0], tz - eye[2]) > 1.5:
                break
        yaw, pitch = np.arctan2(-(tx - eye[0]), -(tz - eye[2])), rng.uniform(-0.5, 0.12)
    return {"yaw": float(yaw), "pitch": float(np.clip(pitch, -0.6, 0.15)),
            "roll": float(np.clip(rng.normal(0, 0.03), -0.08, 0.08))}


def room_lights(scene: Scene, rng: np.random.Generator, x_size: float, z_size: float, height: float) -> Lighting:
    """1-2 ceiling lights of one random warmth plus ambient light (also lights the PASCAL-like rooms)."""
    warmth = rng.uniform(-1, 1)
    tint = np.array([1.0 + 0.08 * warmth, 1.0, 1.0 - 0.15 * warmth])
    lights = []
    for _ in range(int(rng.integers(1, 3))):
        x, z = rng.uniform(0.5, x_size - 0.5), rng.uniform(0.5, z_size - 0.5)
        lights.append((np.array([x, height - 0.3, z]), tint * rng.uniform(0.7, 1.4)))
        if rng.random() < 0.5:  # a visible ceiling lamp at the light
            lamp = material(rng, "warm_light", emissive=True)
            scene.add(Cylinder((x, height - 0.07, z), (0, 1, 0), rng.uniform(0.12, 0.3), 0.07),
                      scene.new_object("lamp"), lamp)
    ambient = tint * rng.uniform(0.2, 0.45)
    return Lighting(ambient=tuple(ambient), point_lights=lights)
