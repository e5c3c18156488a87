"""Ray-primitive intersection for the synthetic scenes, vectorised over rays.

All rays of a pinhole image share one origin, so every `intersect` takes a single origin ``(3,)`` and a grid of
direction vectors ``[..., 3]``. Directions are *not* normalised: the renderer scales them so that their camera-z
component is -1, which makes the ray parameter ``t`` equal to the depth along the camera axis. Every shape returns
``t`` (``inf`` where the ray misses) and, for the points it won, an outward unit normal and surface coordinates in
metres (used by the procedural textures). `bounds()` gives a bounding sphere so the renderer can cast only the rays
inside its projection.
"""

from __future__ import annotations

import numpy as np

T_MIN = 1e-6  # hits closer than this to the origin are ignored (the camera never sits on a surface)


def rotation_y(angle: float) -> np.ndarray:
    """Rotation about the world up axis (yaw); positive turns -z (forward) towards -x (left)."""
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def rotation_x(angle: float) -> np.ndarray:
    """Rotation about the x axis (pitch); positive tilts -z (forward) upwards."""
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


def rotation_z(angle: float) -> np.ndarray:
    """Rotation about the z axis (roll)."""
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def frame_from_axis(axis: np.ndarray) -> np.ndarray:
    """A rotation whose second column (local y) is `axis`; the other two columns complete a right-handed basis."""
    y = np.asarray(axis, dtype=np.float64)
    y = y / np.linalg.norm(y)
    helper = np.array([1.0, 0.0, 0.0]) if abs(y[0]) < 0.9 else np.array([0.0, 0.0, 1.0])
    x = np.cross(y, helper)
    x /= np.linalg.norm(x)
    z = np.cross(x, y)
    return np.stack([x, y, z], axis=1)


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)


def _nearest_root(a: np.ndarray, b: np.ndarray, c) -> np.ndarray:
    """Smallest root > T_MIN of a t^2 + 2 b t + c = 0 (inf if none); assumes the origin is outside the quadric."""
    disc = b * b - a * c
    with np.errstate(invalid="ignore", divide="ignore"):
        t = (-b - np.sqrt(disc)) / a
    return np.where((disc >= 0) & (a > 0) & (t > T_MIN), t, np.inf)


class Shape:
    """Interface every primitive implements."""

    def intersect(self, origin: np.ndarray, dirs: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def normal_at(self, points: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def surface_uv(self, points: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def bounds(self) -> tuple[np.ndarray, float] | None:
        """(centre, radius) of a bounding sphere, or None for unbounded shapes."""
        return None


class Plane(Shape):
    """Infinite plane through `point` with unit `normal`; `u_axis` orients the texture."""

    def __init__(self, point, normal, u_axis=None):
        self.point = np.asarray(point, dtype=np.float64)
        self.normal = _unit(np.asarray(normal, dtype=np.float64))
        if u_axis is None:
            u_axis = frame_from_axis(self.normal)[:, 0]
        u = np.asarray(u_axis, dtype=np.float64)
        u = _unit(u - self.normal * (u @ self.normal))
        self.u_axis, self.v_axis = u, np.cross(self.normal, u)

    def intersect(self, origin, dirs):
        denom = dirs @ self.normal
        with np.errstate(divide="ignore", invalid="ignore"):
            t = ((self.point - origin) @ self.normal) / denom
        return np.where(np.isfinite(t) & (t > T_MIN), t, np.inf)

    def normal_at(self, points):
        return np.broadcast_to(self.normal, points.shape).copy()

    def surface_uv(self, points):
        rel = points - self.point
        return np.stack([rel @ self.u_axis, rel @ self.v_axis], axis=-1)


class _Framed(Shape):
    """A shape defined in a local frame: world = centre + rotation @ local."""

    def __init__(self, center, rotation=None):
        self.center = np.asarray(center, dtype=np.float64)
        self.rotation = np.eye(3) if rotation is None else np.asarray(rotation, dtype=np.float64)

    def _local_ray(self, origin, dirs):
        return (origin - self.center) @ self.rotation, dirs @ self.rotation

    def _local_points(self, points):
        return (points - self.center) @ self.rotation

    def _to_world(self, vectors):
        return vectors @ self.rotation.T


class Box(_Framed):
    """Oriented box with half extents `half` along its local axes."""

    def __init__(self, center, half, rotation=None):
        super().__init__(center, rotation)
        self.half = np.asarray(half, dtype=np.float64)

    def intersect(self, origin, dirs):
        """Slab test, one axis at a time (elementwise on [H, W] arrays is much faster than reducing over xyz)."""
        o, d = self._local_ray(origin, dirs)
        t_near = t_far = None
        with np.errstate(divide="ignore", invalid="ignore"):
            for i in range(3):
                inv = 1.0 / d[..., i]
                ta, tb = (-self.half[i] - o[i]) * inv, (self.half[i] - o[i]) * inv
                lo, hi = np.minimum(ta, tb), np.maximum(ta, tb)
                t_near = lo if t_near is None else np.maximum(t_near, lo)
                t_far = hi if t_far is None else np.minimum(t_far, hi)
        hit = (t_near <= t_far) & (t_near > T_MIN)
        return np.where(hit, t_near, np.inf)

    def _face_axis(self, local):
        return np.abs(local / self.half).argmax(axis=-1)

    def normal_at(self, points):
        local = self._local_points(points)
        axis = self._face_axis(local)
        n = np.zeros_like(local)
        rows = np.arange(local.shape[0])
        n[rows, axis] = np.sign(local[rows, axis])
        return self._to_world(n)

    def surface_uv(self, points):
        local = self._local_points(points) + self.half
        axis = self._face_axis(local - self.half)
        # the two coordinates in the face plane, ordered so that vertical faces get (horizontal, height)
        first = np.where(axis == 0, 2, 0)
        second = np.where(axis == 1, 2, 1)
        rows = np.arange(local.shape[0])
        return np.stack([local[rows, first], local[rows, second]], axis=-1)

    def bounds(self):
        return self.center, float(np.linalg.norm(self.half))


class Ellipsoid(_Framed):
    """Ellipsoid with semi-axes `radii` along its local axes (a sphere when all radii are equal)."""

    def __init__(self, center, radii, rotation=None):
        super().__init__(center, rotation)
        self.radii = np.broadcast_to(np.asarray(radii, dtype=np.float64), (3,)).copy()

    def intersect(self, origin, dirs):
        o, d = self._local_ray(origin, dirs)
        o, d = o / self.radii, d / self.radii
        a = np.einsum("...i,...i->...", d, d)
        b = d @ o
        return _nearest_root(a, b, float(o @ o) - 1.0)

    def normal_at(self, points):
        local = self._local_points(points)
        return _unit(self._to_world(local / self.radii**2))

    def surface_uv(self, points):
        unit = self._local_points(points) / self.radii
        scale = float(self.radii.mean())
        lon = np.arctan2(unit[:, 2], unit[:, 0])
        lat = np.arcsin(np.clip(unit[:, 1], -1.0, 1.0))
        return np.stack([lon * scale, lat * scale], axis=-1)

    def bounds(self):
        return self.center, float(self.radii.max())


def Sphere(center, radius, rotation=None) -> Ellipsoid:  # noqa: N802 - reads like a class at call sites
    return Ellipsoid(center, (radius, radius, radius), rotation)


def _side_hits(o, d, radius, length):
    """Nearest hit on the open side of a cylinder along local y in [0, length]; returns (t, y)."""
    a = d[..., 0] ** 2 + d[..., 2] ** 2
    b = d[..., 0] * o[0] + d[..., 2] * o[2]
    t = _nearest_root(a, b, o[0] ** 2 + o[2] ** 2 - radius**2)
    with np.errstate(invalid="ignore"):
        y = o[1] + t * d[..., 1]
    return np.where((y >= 0) & (y <= length), t, np.inf)


class Cylinder(_Framed):
    """Capped cylinder: base centre `base`, unit `axis`, `radius`, `length` along the axis."""

    def __init__(self, base, axis, radius, length):
        super().__init__(base, frame_from_axis(axis))
        self.radius, self.length = float(radius), float(length)

    def intersect(self, origin, dirs):
        o, d = self._local_ray(origin, dirs)
        t = _side_hits(o, d, self.radius, self.length)
        cap_y = self.length if o[1] > self.length else (0.0 if o[1] < 0 else None)
        if cap_y is not None:  # only the cap facing the origin can be hit first
            with np.errstate(divide="ignore", invalid="ignore"):
                tc = (cap_y - o[1]) / d[..., 1]
                x = o[0] + tc * d[..., 0]
                z = o[2] + tc * d[..., 2]
            on_cap = (tc > T_MIN) & (x * x + z * z <= self.radius**2)
            t = np.minimum(t, np.where(on_cap, tc, np.inf))
        return t

    def _on_cap(self, local):
        radial_err = np.abs(np.hypot(local[:, 0], local[:, 2]) - self.radius)
        cap_err = np.minimum(np.abs(local[:, 1]), np.abs(local[:, 1] - self.length))
        return cap_err < radial_err

    def normal_at(self, points):
        local = self._local_points(points)
        side = _unit(local * np.array([1.0, 0.0, 1.0]))
        cap = np.zeros_like(local)
        cap[:, 1] = np.where(local[:, 1] > self.length / 2, 1.0, -1.0)
        return self._to_world(np.where(self._on_cap(local)[:, None], cap, side))

    def surface_uv(self, points):
        local = self._local_points(points)
        side = np.stack([np.arctan2(local[:, 2], local[:, 0]) * self.radius, local[:, 1]], axis=-1)
        return np.where(self._on_cap(local)[:, None], local[:, [0, 2]], side)

    def bounds(self):
        mid = self.center + self.rotation[:, 1] * self.length / 2
        return mid, float(np.hypot(self.radius, self.length / 2))


class Capsule(_Framed):
    """Segment `a`-`b` swept by a sphere of `radius` (limbs): an open cylinder plus two end spheres."""

    def __init__(self, a, b, radius):
        a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
        self.length = float(np.linalg.norm(b - a))
        axis = (b - a) if self.length > 1e-9 else np.array([0.0, 1.0, 0.0])
        super().__init__(a, frame_from_axis(axis))
        self.radius = float(radius)
        self.a, self.b = a, b

    def intersect(self, origin, dirs):
        o, d = self._local_ray(origin, dirs)
        t = _side_hits(o, d, self.radius, self.length)
        a = np.einsum("...i,...i->...", d, d)
        for end_y in (0.0, self.length):
            oc = o - np.array([0.0, end_y, 0.0])
            t = np.minimum(t, _nearest_root(a, d @ oc, float(oc @ oc) - self.radius**2))
        return t

    def normal_at(self, points):
        local = self._local_points(points)
        closest = np.zeros_like(local)
        closest[:, 1] = np.clip(local[:, 1], 0.0, self.length)
        return self._to_world(_unit(local - closest))

    def surface_uv(self, points):
        local = self._local_points(points)
        return np.stack([np.arctan2(local[:, 2], local[:, 0]) * self.radius, local[:, 1]], axis=-1)

    def bounds(self):
        return (self.a + self.b) / 2, self.length / 2 + self.radius


class SkyDome(Shape):
    """The inside of a huge sphere centred on the camera: every ray that escapes the scene ends here."""

    def __init__(self, center, radius: float):
        self.center = np.asarray(center, dtype=np.float64)
        self.radius = float(radius)

    def intersect(self, origin, dirs):
        if not np.allclose(origin, self.center):
            raise ValueError("a SkyDome must be centred on the camera")
        return self.radius / np.linalg.norm(dirs, axis=-1)

    def normal_at(self, points):
        return _unit(self.center - points)

    def surface_uv(self, points):
        """(azimuth, elevation) in radians: the sky pattern darkens with elevation and draws clouds."""
        d = (points - self.center) / self.radius
        return np.stack([np.arctan2(d[:, 0], -d[:, 2]), np.arcsin(np.clip(d[:, 1], -1.0, 1.0))], axis=-1)
