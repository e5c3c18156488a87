"""The pinhole camera of the synthetic scenes and the one ray per pixel it casts.

Conventions (shared by depth, normals and the tests):
- world frame: y up, the floor / ground is the plane y = 0;
- camera frame: x right, y up, z towards the viewer (the camera looks along -z);
- camera-to-world rotation ``R = Ry(yaw) @ Rx(pitch) @ Rz(roll)`` (see `geometry.rotation_*`); pitch > 0 looks up;
- pixel (row v, column u) looks along ``d_cam = ((u - cx) / fx, -(v - cy) / fy, -1)``. Because the camera-z
  component of every ray is -1, the ray parameter of a hit *is* its depth along the optical axis (NYUD convention).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .geometry import rotation_x, rotation_y, rotation_z


@dataclass
class PinholeCamera:
    height: int  # image rows
    width: int  # image columns
    fx: float
    fy: float
    cx: float
    cy: float
    position: np.ndarray  # world position of the optical centre
    yaw: float = 0.0  # radians
    pitch: float = 0.0
    roll: float = 0.0

    @classmethod
    def from_fov(cls, size: tuple[int, int], horizontal_fov_deg: float, position, yaw=0.0, pitch=0.0, roll=0.0):
        """Square pixels, principal point at the image centre, focal length from the horizontal field of view."""
        h, w = int(size[0]), int(size[1])
        f = (w / 2.0) / np.tan(np.deg2rad(horizontal_fov_deg) / 2.0)
        return cls(h, w, f, f, (w - 1) / 2.0, (h - 1) / 2.0, np.asarray(position, dtype=np.float64),
                   float(yaw), float(pitch), float(roll))

    @property
    def rotation(self) -> np.ndarray:
        """Camera-to-world rotation (columns: camera x, y, z axes in world coordinates)."""
        return rotation_y(self.yaw) @ rotation_x(self.pitch) @ rotation_z(self.roll)

    def camera_rays(self) -> np.ndarray:
        """[H, W, 3] ray directions in the camera frame, camera-z component -1."""
        u = (np.arange(self.width) - self.cx) / self.fx
        v = -(np.arange(self.height) - self.cy) / self.fy
        rays = np.empty((self.height, self.width, 3))
        rays[..., 0] = u[None, :]
        rays[..., 1] = v[:, None]
        rays[..., 2] = -1.0
        return rays

    def world_rays(self) -> np.ndarray:
        """[H, W, 3] the same rays rotated into the world frame (not normalised)."""
        return self.camera_rays() @ self.rotation.T

    def pixel_box(self, center: np.ndarray, radius: float) -> tuple[int, int, int, int] | None:
        """Rows/cols (v0, v1, u0, u1) that can see a sphere; None when it projects outside the image.

        The bounds come from the planes through the optical centre tangent to the sphere, so they are exact for
        the sphere and conservative for the shape inside it. A sphere reaching behind the image plane gets the
        whole image.
        """
        c = (np.asarray(center) - self.position) @ self.rotation
        depth = -c[2]
        if depth <= radius * 1.01 + 1e-6:
            return 0, self.height, 0, self.width

        def span(offset: float, f: float, principal: float, n: int, sign: float):
            dist = np.hypot(offset, depth)
            if radius >= dist:
                return 0, n
            mid, half = np.arctan2(offset, depth), np.arcsin(radius / dist)
            lo_ang, hi_ang = mid - half, mid + half
            tan_lo = -np.inf if lo_ang <= -np.pi / 2 + 1e-6 else np.tan(lo_ang)
            tan_hi = np.inf if hi_ang >= np.pi / 2 - 1e-6 else np.tan(hi_ang)
            a, b = principal + sign * f * tan_lo, principal + sign * f * tan_hi
            lo, hi = min(a, b), max(a, b)
            return int(np.clip(np.floor(lo), 0, n)), int(np.clip(np.ceil(hi) + 1, 0, n))

        u0, u1 = span(c[0], self.fx, self.cx, self.width, 1.0)
        v0, v1 = span(c[1], self.fy, self.cy, self.height, -1.0)
        if u0 >= u1 or v0 >= v1:
            return None
        return v0, v1, u0, u1

    def to_dict(self) -> dict:
        """Everything needed to recompute a pixel's ray; angles in radians, lengths in metres."""
        return {
            "fx": float(self.fx), "fy": float(self.fy), "cx": float(self.cx), "cy": float(self.cy),
            "height": float(self.position[1]),  # above the floor / ground plane y = 0
            "position": [float(x) for x in self.position],
            "yaw": float(self.yaw), "pitch": float(self.pitch), "roll": float(self.roll),
            "rotation": self.rotation.tolist(),  # camera-to-world, R = Ry(yaw) @ Rx(pitch) @ Rz(roll)
            "image_size": [int(self.height), int(self.width)],
            "convention": "world y up, floor y=0; camera x right, y up, z towards viewer; "
                          "ray(v,u) = ((u-cx)/fx, -(v-cy)/fy, -1); depth = -z_cam",
        }
