"""Placing object recipes in the world: a local frame per object and non-overlapping floor footprints.

Recipes describe an object in its own frame (x to its right, y up, z out of its front, origin on the floor
under its centre); a `Placement` moves that frame to a spot on the floor and turns it by a yaw angle.
`Footprint` rectangles stop two objects from occupying the same floor area.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .geometry import Box, Capsule, Cylinder, Ellipsoid, rotation_y


@dataclass
class Placement:
    x: float
    z: float
    yaw: float = 0.0  # radians; the object's front (+z) turns towards (sin yaw, 0, cos yaw)
    y: float = 0.0  # height of the local origin (e.g. the top of a table)

    @property
    def rotation(self) -> np.ndarray:
        return rotation_y(self.yaw)

    def point(self, local) -> np.ndarray:
        return np.array([self.x, self.y, self.z]) + self.rotation @ np.asarray(local, dtype=np.float64)

    def direction(self, local) -> np.ndarray:
        return self.rotation @ np.asarray(local, dtype=np.float64)

    def on_top(self, local, yaw: float = 0.0) -> "Placement":
        """A placement for something standing at local point `local` (e.g. on a table top)."""
        p = self.point(local)
        return Placement(float(p[0]), float(p[2]), self.yaw + yaw, float(p[1]))

    def box(self, center, half, local_rotation=None) -> Box:
        r = self.rotation if local_rotation is None else self.rotation @ local_rotation
        return Box(self.point(center), half, r)

    def ellipsoid(self, center, radii, local_rotation=None) -> Ellipsoid:
        r = self.rotation if local_rotation is None else self.rotation @ local_rotation
        return Ellipsoid(self.point(center), radii, r)

    def sphere(self, center, radius) -> Ellipsoid:
        return Ellipsoid(self.point(center), (radius,) * 3, self.rotation)

    def cylinder(self, base, axis, radius, length) -> Cylinder:
        return Cylinder(self.point(base), self.direction(axis), radius, length)

    def capsule(self, a, b, radius) -> Capsule:
        return Capsule(self.point(a), self.point(b), radius)


@dataclass
class Footprint:
    """An oriented rectangle on the floor (world x/z)."""

    x: float
    z: float
    half_width: float  # along the object's local x
    half_depth: float  # along the object's local z
    yaw: float = 0.0

    def axes(self) -> list[np.ndarray]:
        """The rectangle's local x and z axes in world (x, z)."""
        c, s = np.cos(self.yaw), np.sin(self.yaw)
        return [np.array([c, -s]), np.array([s, c])]

    def corners(self) -> np.ndarray:
        ax, az = self.axes()
        signs = np.array([[-1.0, -1.0], [-1.0, 1.0], [1.0, -1.0], [1.0, 1.0]])
        return (np.array([self.x, self.z]) + (signs[:, :1] * self.half_width) * ax
                + (signs[:, 1:] * self.half_depth) * az)

    def overlaps(self, other: "Footprint", margin: float = 0.0) -> bool:
        """Separating-axis test between two rectangles, each grown by `margin` on every side."""
        reach = np.hypot(self.half_width, self.half_depth) + np.hypot(other.half_width, other.half_depth)
        if np.hypot(self.x - other.x, self.z - other.z) > reach + 2 * margin:  # bounding circles apart
            return False
        a, b = self.corners(), other.corners()
        for axis in self.axes() + other.axes():
            pa, pb = a @ axis, b @ axis
            if pa.max() + margin < pb.min() - margin or pb.max() + margin < pa.min() - margin:
                return False
        return True

    def inside(self, x_range: tuple[float, float], z_range: tuple[float, float], margin: float = 0.0) -> bool:
        c = self.corners()
        return bool((c[:, 0] >= x_range[0] + margin).all() and (c[:, 0] <= x_range[1] - margin).all()
                    and (c[:, 1] >= z_range[0] + margin).all() and (c[:, 1] <= z_range[1] - margin).all())


class FloorPlan:
    """Keeps the footprints placed so far and accepts new ones only where the floor is free."""

    def __init__(self, x_range, z_range, margin: float = 0.05):
        self.x_range, self.z_range, self.margin = x_range, z_range, margin
        self.taken: list[Footprint] = []

    def block(self, footprint: Footprint) -> None:
        self.taken.append(footprint)

    def try_add(self, footprint: Footprint) -> bool:
        if not footprint.inside(self.x_range, self.z_range):
            return False
        if any(footprint.overlaps(t, self.margin) for t in self.taken):
            return False
        self.taken.append(footprint)
        return True
