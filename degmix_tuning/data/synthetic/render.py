"""Procedurally rendered scenes with exactly consistent dense labels: the toolkit's built-in default data.

`render_indoor_scene(seed)` draws a furnished NYUD-like room, `render_pascal_scene(seed)` a PASCAL-like scene
with articulated people and a few VOC objects, `render_cityscapes_scene(seed)` a Cityscapes-like street. All
ray-cast simple primitives (planes, boxes, ellipsoids, cylinders, capsules) with numpy, one ray per pixel, so
image, depth, normals, classes, instances, parts, saliency and boundaries all come from the same hit and agree
exactly. A seed fixes the scene (`np.random.default_rng(seed)`); different seeds give different scenes.

Geometry conventions are in `scenes/camera.py` and repeated in `SceneArrays.camera["convention"]`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .scenes.camera import PinholeCamera
from .scenes.classes import CITYSCAPES_LABELS, CONTEXT_IDS, NYUD_LABELS, PASCAL_LABELS
from .scenes.indoor import build_indoor_scene
from .scenes.pascal_like import build_pascal_scene
from .scenes.raycast import Scene, boundary_map, cast_rays, shade_image
from .scenes.shading import Lighting
from .scenes.street import build_street_scene

__all__ = ["SceneArrays", "render_cityscapes_scene", "render_indoor_scene", "render_pascal_scene", "render_scene",
           "SCENE_KINDS", "CONTEXT_IDS"]

DEPTH_EDGE_JUMP = 0.05  # relative depth jump between different primitives that counts as a boundary
MIN_SALIENT_FRACTION = 0.003  # pascal: VOC objects smaller than this share of the image are not salient


@dataclass
class SceneArrays:
    image: np.ndarray  # uint8 [H, W, 3], shaded and textured
    depth: np.ndarray  # float32 [H, W], metres along the camera z axis, > 0 everywhere
    normals: np.ndarray  # float32 [H, W, 3], unit, camera frame: x right, y up, z towards the camera
    semseg: np.ndarray  # uint8 [H, W]: NYUD-40 ids 0..39, VOC ids 0..20 or Cityscapes trainIds 0..18; 255 = unlabeled
    edge: np.ndarray  # uint8 [H, W] {0,1}: instance / class changes and depth discontinuities, 2 px wide
    saliency: np.ndarray  # uint8 [H, W] {0,1}
    parts: np.ndarray  # uint8 [H, W] 0..6 human parts (zeros for indoor scenes)
    context_labels: np.ndarray  # int32 [H, W]: PASCAL-Context LabelMap ids (indoor: semseg + 1; street: labelIds)
    instances: np.ndarray  # int32 [H, W] instance id per pixel (0 = none)
    persons: list  # pascal: [(instance mask bool [H, W], {part_id: bool mask})]; [] for indoor
    camera: dict  # fx, fy, cx, cy, height, position, yaw, pitch, roll, rotation, ...


def _check_size(size) -> tuple[int, int]:
    try:
        h, w = (int(s) for s in size)
    except (TypeError, ValueError):
        raise ValueError(f"size must be (height, width) integers, got {size!r}") from None
    if h < 2 or w < 2:
        raise ValueError(f"size must be at least (2, 2) pixels, got {size!r}")
    return h, w


def _render(scene: Scene, camera: PinholeCamera, lighting: Lighting, rng: np.random.Generator,
            pascal: bool) -> SceneArrays:
    hits = cast_rays(scene, camera)
    surface_object = np.array([s.object_id for s in scene.surfaces], dtype=np.int32)
    surface_part = np.array([s.part for s in scene.surfaces], dtype=np.uint8)
    instances = surface_object[hits.surface]
    semseg = scene.lookup("semseg", np.uint8)[instances]
    context = scene.lookup("context", np.int32)[instances]
    normals_cam = hits.normals @ camera.rotation  # world -> camera: R^T n, as row vectors
    normals_cam /= np.linalg.norm(normals_cam, axis=-1, keepdims=True)

    image = shade_image(scene, hits, lighting, rng, noise_sigma=float(rng.uniform(1.0, 4.0)))
    edge = boundary_map(instances, context, hits.depth, hits.surface, DEPTH_EDGE_JUMP)

    is_person = scene.lookup("is_person", bool)
    persons, parts = [], np.zeros(instances.shape, dtype=np.uint8)
    if pascal:
        parts = np.where(is_person[instances], surface_part[hits.surface], 0).astype(np.uint8)
        for oid in np.flatnonzero(is_person):
            mask = instances == oid
            if mask.any():
                persons.append((mask, {int(p): mask & (parts == p) for p in np.unique(parts[mask]) if p > 0}))
        saliency = _pascal_saliency(scene, instances)
    else:
        saliency = _indoor_saliency(scene, instances)

    return SceneArrays(
        image=image,
        depth=hits.depth.astype(np.float32),
        normals=normals_cam.astype(np.float32),
        semseg=semseg,
        edge=edge,
        saliency=saliency,
        parts=parts,
        context_labels=context,
        instances=instances.astype(np.int32),
        persons=persons,
        camera=camera.to_dict(),
    )


def _indoor_saliency(scene: Scene, instances: np.ndarray) -> np.ndarray:
    """The single foreground object with the best visible area x centrality (nothing if all are tiny)."""
    h, w = instances.shape
    counts = np.bincount(instances.ravel(), minlength=len(scene.objects) + 1)
    rows, cols = np.mgrid[0:h, 0:w]
    best, best_score = 0, 0.0
    for oid, obj in enumerate(scene.objects, start=1):
        if not obj.foreground or counts[oid] < 0.005 * h * w:
            continue
        mask = instances == oid
        dy = (rows[mask].mean() - (h - 1) / 2) / (h / 2)
        dx = (cols[mask].mean() - (w - 1) / 2) / (w / 2)
        score = counts[oid] * np.exp(-(dx * dx + dy * dy) / 0.5)
        if score > best_score:
            best, best_score = oid, score
    return (instances == best).astype(np.uint8) if best else np.zeros((h, w), dtype=np.uint8)


def _pascal_saliency(scene: Scene, instances: np.ndarray) -> np.ndarray:
    """All people, plus every VOC object that covers at least MIN_SALIENT_FRACTION of the image."""
    counts = np.bincount(instances.ravel(), minlength=len(scene.objects) + 1)
    big_enough = counts >= MIN_SALIENT_FRACTION * instances.size
    salient = np.zeros(len(scene.objects) + 1, dtype=bool)
    for oid, obj in enumerate(scene.objects, start=1):
        salient[oid] = obj.is_person or (obj.semseg not in (0, 255) and big_enough[oid])
    return salient[instances].astype(np.uint8)


def render_indoor_scene(seed: int, size: tuple[int, int] = (120, 160)) -> SceneArrays:
    """A NYUD-like room: NYUD-40 semseg, metric depth, normals, boundaries, the most salient object."""
    size = _check_size(size)
    rng = np.random.default_rng(seed)
    scene, camera, lighting = build_indoor_scene(rng, size, NYUD_LABELS)
    return _render(scene, camera, lighting, rng, pascal=False)


def render_pascal_scene(seed: int, size: tuple[int, int] = (120, 160)) -> SceneArrays:
    """A PASCAL-like scene: 1-3 posed people (6 parts) and a few VOC objects outdoors or in a room."""
    size = _check_size(size)
    rng = np.random.default_rng(seed)
    scene, camera, lighting = build_pascal_scene(rng, size, PASCAL_LABELS)
    return _render(scene, camera, lighting, rng, pascal=True)


def render_cityscapes_scene(seed: int, size: tuple[int, int] = (120, 240)) -> SceneArrays:
    """A Cityscapes-like street: trainIds in semseg, labelIds in context_labels, metric depth (the camera's fx, for
    the disparity, is in `camera`)."""
    size = _check_size(size)
    rng = np.random.default_rng(seed)
    scene, camera, lighting = build_street_scene(rng, size, CITYSCAPES_LABELS)
    return _render(scene, camera, lighting, rng, pascal=False)


SCENE_KINDS = {"nyud": render_indoor_scene, "pascal": render_pascal_scene, "cityscapes": render_cityscapes_scene}


def render_scene(dataset: str, seed: int, size: tuple[int, int] = (120, 160)) -> SceneArrays:
    """The renderer of `dataset`'s scenes (`SCENE_KINDS`): indoor rooms, PASCAL-like scenes or streets."""
    if dataset not in SCENE_KINDS:
        raise KeyError(f"no synthetic scenes for dataset {dataset!r}; choose one of {', '.join(SCENE_KINDS)}")
    return SCENE_KINDS[dataset](seed, size)
