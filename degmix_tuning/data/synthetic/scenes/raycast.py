"""Scene description (objects made of shaded primitives) and the ray caster that turns it into pixel arrays.

One ray per pixel; for every primitive the caster computes ``t`` for the rays inside the primitive's projected
bounding sphere and keeps the nearest hit. Depth, normals, class, part and instance ids are all read from that
single winning hit, so the labels agree with each other and with the image exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .camera import PinholeCamera
from .classes import STUFF, LabelSet
from .geometry import Shape
from .shading import Lighting, Material, shade


@dataclass
class SceneObject:
    """One instance: everything its pixels are labelled with."""

    name: str  # e.g. "wall", "person"
    semseg: int  # NYUD-40 id (indoor) or VOC id (pascal); 255 = unlabeled
    context: int  # PASCAL-Context LabelMap id, 0 = unlabeled
    is_person: bool = False  # has human parts
    foreground: bool = False  # a "thing" that may be salient (not wall/floor/sky/...)


@dataclass
class Surface:
    shape: Shape
    object_id: int  # 1-based index into Scene.objects
    material: Material
    part: int = 0  # human part id (1..6) for person primitives, else 0


@dataclass
class Scene:
    labels: LabelSet  # recipe name -> (semseg id, context id) for this dataset flavour
    objects: list[SceneObject] = field(default_factory=list)
    surfaces: list[Surface] = field(default_factory=list)

    def new_object(self, name: str, *, is_person: bool = False) -> int:
        """Add an instance labelled as `name` (see classes.py); returns its 1-based id."""
        semseg, context = self.labels(name)
        self.objects.append(SceneObject(name, semseg, context, is_person, foreground=name not in STUFF))
        return len(self.objects)

    def add(self, shape: Shape, object_id: int, material: Material, part: int = 0) -> None:
        if not 1 <= object_id <= len(self.objects):
            raise ValueError(f"object id {object_id} does not exist (scene has {len(self.objects)} objects)")
        self.surfaces.append(Surface(shape, object_id, material, part))

    def lookup(self, attribute: str, dtype) -> np.ndarray:
        """Per-object table indexed by object id (entry 0 is unused)."""
        values = [0] + [getattr(o, attribute) for o in self.objects]
        return np.asarray(values, dtype=dtype)


@dataclass
class RayHits:
    """The nearest hit of every pixel's ray."""

    depth: np.ndarray  # [H, W] ray parameter == depth along the optical axis
    surface: np.ndarray  # [H, W] index into Scene.surfaces
    points: np.ndarray  # [H, W, 3] world hit points
    normals: np.ndarray  # [H, W, 3] world unit normals, turned to face the camera
    uv: np.ndarray  # [H, W, 2] surface coordinates (metres) for the textures


def cast_rays(scene: Scene, camera: PinholeCamera) -> RayHits:
    origin = camera.position
    dirs = camera.world_rays()
    h, w = dirs.shape[:2]
    best_t = np.full((h, w), np.inf)
    best_surface = np.full((h, w), -1, dtype=np.int32)
    for k, surface in enumerate(scene.surfaces):
        bounds = surface.shape.bounds()
        box = (0, h, 0, w) if bounds is None else camera.pixel_box(*bounds)
        if box is None:
            continue
        v0, v1, u0, u1 = box
        t = surface.shape.intersect(origin, dirs[v0:v1, u0:u1])
        region_t, region_s = best_t[v0:v1, u0:u1], best_surface[v0:v1, u0:u1]  # views: writes go through
        closer = t < region_t
        region_t[closer] = t[closer]
        region_s[closer] = k
    if (best_surface < 0).any():
        raise RuntimeError(f"{int((best_surface < 0).sum())} rays hit nothing: the scene must be closed "
                           "(a room or a sky dome around the camera)")

    points = origin + best_t[..., None] * dirs
    normals = np.empty_like(points)
    uv = np.empty((h, w, 2))
    flat_surface = best_surface.ravel()
    order = np.argsort(flat_surface, kind="stable")
    ids, starts = np.unique(flat_surface[order], return_index=True)
    flat_points, flat_normals, flat_uv = points.reshape(-1, 3), normals.reshape(-1, 3), uv.reshape(-1, 2)
    for k, idx in zip(ids, np.split(order, starts[1:])):
        shape = scene.surfaces[k].shape
        flat_normals[idx] = shape.normal_at(flat_points[idx])
        flat_uv[idx] = shape.surface_uv(flat_points[idx])
    facing_away = np.einsum("hwc,hwc->hw", normals, dirs) > 0
    normals[facing_away] *= -1.0
    return RayHits(best_t, best_surface, points, normals, uv)


def shade_image(scene: Scene, hits: RayHits, lighting: Lighting, rng: np.random.Generator,
                noise_sigma: float, gamma: float = 2.2) -> np.ndarray:
    """uint8 [H, W, 3]: textured albedo, lit (unless emissive), gamma-encoded, plus Gaussian sensor noise."""
    h, w = hits.depth.shape
    radiance = np.empty((h * w, 3))
    flat_surface = hits.surface.ravel()
    order = np.argsort(flat_surface, kind="stable")
    ids, starts = np.unique(flat_surface[order], return_index=True)
    flat_uv = hits.uv.reshape(-1, 2)
    flat_normals, flat_points = hits.normals.reshape(-1, 3), hits.points.reshape(-1, 3)
    for k, idx in zip(ids, np.split(order, starts[1:])):
        material = scene.surfaces[k].material
        albedo = material.albedo(flat_uv[idx])
        radiance[idx] = albedo if material.emissive else shade(albedo, flat_normals[idx], flat_points[idx], lighting)
    encoded = np.clip(radiance, 0.0, 1.0) ** (1.0 / gamma) * 255.0
    encoded = encoded + rng.normal(0.0, noise_sigma, size=encoded.shape)
    return np.clip(np.round(encoded), 0, 255).astype(np.uint8).reshape(h, w, 3)


def boundary_map(instances: np.ndarray, semantic: np.ndarray, depth: np.ndarray, surfaces: np.ndarray,
                 relative_jump: float = 0.05) -> np.ndarray:
    """uint8 {0,1}: 1 on both sides of every change of instance or class between 4-neighbours, and of every
    depth discontinuity (a different primitive whose depth differs by more than `relative_jump`, relative to the
    nearer one). Depth changes *within* one primitive (a floor seen at a grazing angle) are not boundaries.
    Both sides are marked, so boundaries are 2 px wide (1 px at the image border)."""
    edge = np.zeros(instances.shape, dtype=bool)
    for axis in (0, 1):
        a = [np.take(arr, np.arange(arr.shape[axis] - 1), axis=axis) for arr in (instances, semantic, depth, surfaces)]
        b = [np.take(arr, np.arange(1, arr.shape[axis]), axis=axis) for arr in (instances, semantic, depth, surfaces)]
        jump = np.abs(a[2] - b[2]) > relative_jump * np.minimum(a[2], b[2])
        change = (a[0] != b[0]) | (a[1] != b[1]) | ((a[3] != b[3]) & jump)
        lead = [slice(None)] * 2
        lead[axis] = slice(0, -1)
        edge[tuple(lead)] |= change
        lead[axis] = slice(1, None)
        edge[tuple(lead)] |= change
    return edge.astype(np.uint8)
