"""Articulated human figures made of primitives, with the 6-part labels of PASCAL-Part.

A figure is a sphere head (with a hair cap), an ellipsoid chest and pelvis, a capsule neck and capsule limbs, a
sphere per hand and an ellipsoid per foot. A `Pose` holds the joint angles; forward kinematics puts the limbs in
place and the figure is lowered until its lowest point touches the ground. Every primitive carries its part id:
head 1, torso 2 (incl. neck), upper arm 3, lower arm 4 (incl. hand), upper leg 5, lower leg 6 (incl. foot).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .geometry import rotation_x
from .materials import material
from .placement import Placement
from .raycast import Scene
from .shading import Material

HEAD, TORSO, UPPER_ARM, LOWER_ARM, UPPER_LEG, LOWER_LEG = 1, 2, 3, 4, 5, 6


@dataclass
class Pose:
    """Joint angles in radians; each pair is (left = local +x, right = local -x)."""

    shoulder_flex: tuple[float, float] = (0.0, 0.0)  # swing forward (pi/2: arm horizontal in front, pi: up)
    shoulder_abd: tuple[float, float] = (0.1, 0.1)  # raise sideways
    elbow: tuple[float, float] = (0.1, 0.1)  # bend (forearm forward)
    hip_flex: tuple[float, float] = (0.0, 0.0)  # thigh forward
    hip_abd: tuple[float, float] = (0.03, 0.03)
    knee: tuple[float, float] = (0.0, 0.0)  # bend (shin backward)
    lean: float = 0.0  # upper body forward


def sample_pose(rng: np.random.Generator) -> Pose:
    """One of a few everyday poses (standing, walking, waving, arms up, reaching, crouching) with jitter."""
    kind = rng.choice(["stand", "stand", "walk", "walk", "wave", "arms_up", "reach", "crouch"])

    def j(x, s=0.15):
        return float(x + rng.normal(0, s))

    if kind == "walk":
        swing = rng.uniform(0.3, 0.6)
        return Pose((j(swing), j(-swing)), (j(0.1, 0.05), j(0.1, 0.05)), (j(0.4), j(0.3)),
                    (j(-swing * 0.8, 0.1), j(swing * 0.8, 0.1)), (0.03, 0.03), (j(0.2, 0.1), j(0.5, 0.2)),
                    j(0.05, 0.05))
    if kind == "wave":
        return Pose((j(0.2), j(2.6, 0.3)), (j(0.1, 0.05), j(0.6, 0.3)), (j(0.2), j(1.0, 0.4)),
                    (0.0, 0.0), (0.04, 0.04), (0.05, 0.05), j(0.0, 0.05))
    if kind == "arms_up":
        return Pose((j(2.9, 0.2), j(2.9, 0.2)), (j(0.4, 0.2), j(0.4, 0.2)), (j(0.2), j(0.2)),
                    (0.0, 0.0), (j(0.1, 0.05), j(0.1, 0.05)), (0.0, 0.0), j(-0.05, 0.05))
    if kind == "reach":
        return Pose((j(1.5, 0.3), j(0.3)), (j(0.2), j(0.1, 0.05)), (j(0.2), j(0.5)),
                    (j(0.2, 0.1), j(0.0, 0.1)), (0.03, 0.03), (j(0.3, 0.1), 0.05), j(0.2, 0.1))
    if kind == "crouch":
        return Pose((j(0.8), j(0.8)), (0.2, 0.2), (j(0.8), j(0.8)),
                    (j(1.4, 0.1), j(1.4, 0.1)), (0.15, 0.15), (j(2.2, 0.1), j(2.2, 0.1)), j(0.5, 0.1))
    return Pose((j(0.05, 0.1), j(0.05, 0.1)), (j(0.12, 0.05), j(0.12, 0.05)), (j(0.2), j(0.2)),
                (0.0, 0.0), (j(0.05, 0.03), j(0.05, 0.03)), (0.02, 0.02), j(0.0, 0.03))


def _limb_directions(flex: float, abd: float, bend: float, side: float, knee_like: bool) -> tuple[np.ndarray, ...]:
    base = np.array([side * np.sin(abd), -np.cos(abd), 0.0])
    upper = rotation_x(-flex) @ base
    lower = rotation_x(-(flex - bend if knee_like else flex + bend)) @ base
    return upper, lower


def add_person(scene: Scene, rng: np.random.Generator, place: Placement, height: float,
               pose: Pose | None = None) -> int:
    """Add one figure standing at `place` (feet on y = place.y, facing local +z); returns its object id."""
    pose = sample_pose(rng) if pose is None else pose
    h = height
    skin = material(rng, "skin")
    hair = material(rng, "hair")
    shirt = material(rng, "fabric")
    trousers = material(rng, str(rng.choice(["fabric", "dark", "fabric"])))
    shoes = material(rng, "dark")
    long_sleeves, shorts = rng.random() < 0.5, rng.random() < 0.2
    head_r = 0.065 * h
    # hair above a latitude (in radians: the head's uv is latitude * radius and the pattern scale is the radius)
    hairline = float(rng.uniform(-0.1, 0.6)) if rng.random() < 0.9 else 9.0
    head_mat = Material(skin.color_a, hair.color_a, "bands", scale=head_r, angle=0.0, seed=skin.seed,
                        params={"lo": hairline})

    lean = rotation_x(pose.lean)
    pelvis = np.array([0.0, 0.53 * h, 0.0])

    def upper_body(p):  # rotate a point of the upper body about the pelvis by the lean
        return pelvis + lean @ (np.asarray(p) - pelvis)

    chest = upper_body((0.0, 0.70 * h, 0.0))
    neck_a, neck_b = upper_body((0.0, 0.83 * h, 0.0)), upper_body((0.0, 0.875 * h, 0.005 * h))
    head = upper_body((0.0, 0.935 * h, 0.01 * h))
    prims: list[tuple[str, tuple, Material, int]] = [
        ("ellipsoid", (chest, (0.12 * h, 0.17 * h, 0.075 * h), lean), shirt, TORSO),
        ("ellipsoid", (pelvis, (0.105 * h, 0.08 * h, 0.075 * h), None), trousers, TORSO),
        ("capsule", (neck_a, neck_b, 0.03 * h), skin, TORSO),
        ("ellipsoid", (head, (head_r,) * 3, lean), head_mat, HEAD),
    ]
    for i, side in enumerate((1.0, -1.0)):
        shoulder = upper_body((side * 0.12 * h, 0.815 * h, 0.0))
        up, low = _limb_directions(pose.shoulder_flex[i], pose.shoulder_abd[i], pose.elbow[i], side, False)
        up, low = lean @ up, lean @ low
        elbow = shoulder + 0.17 * h * up
        wrist = elbow + 0.145 * h * low
        prims += [
            ("capsule", (shoulder, elbow, 0.032 * h), shirt, UPPER_ARM),
            ("capsule", (elbow, wrist, 0.026 * h), shirt if long_sleeves else skin, LOWER_ARM),
            ("ellipsoid", (wrist + 0.03 * h * low, (0.03 * h,) * 3, None), skin, LOWER_ARM),
        ]
        hip = np.array([side * 0.055 * h, 0.50 * h, 0.0])
        up, low = _limb_directions(pose.hip_flex[i], pose.hip_abd[i], pose.knee[i], side, True)
        knee = hip + 0.245 * h * up
        ankle = knee + 0.225 * h * low
        prims += [
            ("capsule", (hip, knee, 0.048 * h), trousers, UPPER_LEG),
            ("capsule", (knee, ankle, 0.036 * h), skin if shorts else trousers, LOWER_LEG),
            ("ellipsoid", (ankle + np.array([0.0, -0.005 * h, 0.04 * h]), (0.035 * h, 0.025 * h, 0.075 * h), None),
             shoes, LOWER_LEG),
        ]

    lowest = min(_lowest_point(kind, args) for kind, args, _, _ in prims)
    lift = np.array([0.0, -lowest, 0.0])
    oid = scene.new_object("person", is_person=True)
    for kind, args, mat, part in prims:
        if kind == "capsule":
            a, b, r = args
            scene.add(place.capsule(a + lift, b + lift, r), oid, mat, part)
        else:
            c, radii, rot = args
            scene.add(place.ellipsoid(c + lift, radii, rot), oid, mat, part)
    return oid


def _lowest_point(kind: str, args: tuple) -> float:
    if kind == "capsule":
        a, b, r = args
        return float(min(a[1], b[1]) - r)
    c, radii, rot = args
    if rot is None:
        return float(c[1] - radii[1])
    # extent of a rotated ellipsoid along y: sqrt(sum_i (R[1, i] * r_i)^2)
    return float(c[1] - np.sqrt(((rot[1, :] * np.asarray(radii)) ** 2).sum()))

