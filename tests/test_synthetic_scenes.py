"""The procedural scene renderer: determinism, label formats, and labels that agree with the geometry."""

from __future__ import annotations

import time

import numpy as np
import pytest

from degmix_tuning.data.info import NYUD_CLASSES, PASCAL_CLASSES
from degmix_tuning.data.synthetic.scenes.camera import PinholeCamera
from degmix_tuning.data.synthetic.scenes.classes import NYUD_LABELS, PASCAL_LABELS
from degmix_tuning.data.synthetic.scenes.geometry import Box, Capsule, Cylinder, Plane, Sphere
from degmix_tuning.data.synthetic.scenes.raycast import Scene, boundary_map, cast_rays
from degmix_tuning.data.synthetic.scenes.shading import Material
from degmix_tuning.data.synthetic.render import SceneArrays, render_indoor_scene, render_pascal_scene, render_scene

RENDERERS = {"indoor": render_indoor_scene, "pascal": render_pascal_scene}
_CACHE: dict = {}


def scene(kind: str, seed: int, size=(120, 160)) -> SceneArrays:
    key = (kind, seed, size)
    if key not in _CACHE:
        _CACHE[key] = RENDERERS[kind](seed, size)
    return _CACHE[key]


def independent_rotation(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """Camera-to-world rotation written out by hand (Ry(yaw) Rx(pitch) Rz(roll)), not taken from the package."""
    cy, sy, cp, sp, cr, sr = np.cos(yaw), np.sin(yaw), np.cos(pitch), np.sin(pitch), np.cos(roll), np.sin(roll)
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rx = np.array([[1, 0, 0], [0, cp, -sp], [0, sp, cp]])
    rz = np.array([[cr, -sr, 0], [sr, cr, 0], [0, 0, 1]])
    return ry @ rx @ rz


def pixel_rays(cam: dict, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    return np.stack([(cols - cam["cx"]) / cam["fx"], -(rows - cam["cy"]) / cam["fy"], -np.ones(len(rows))], axis=-1)


# ---------------------------------------------------------------- determinism and formats
@pytest.mark.parametrize("kind", ["indoor", "pascal"])
def test_same_seed_same_arrays_different_seed_different_scene(kind):
    a, b, c = scene(kind, 3), RENDERERS[kind](3), scene(kind, 4)
    for name in ("image", "depth", "normals", "semseg", "edge", "saliency", "parts", "context_labels", "instances"):
        assert np.array_equal(getattr(a, name), getattr(b, name)), name
    assert a.camera == b.camera
    assert len(a.persons) == len(b.persons)
    for (ma, pa), (mb, pb) in zip(a.persons, b.persons):
        assert np.array_equal(ma, mb) and pa.keys() == pb.keys()
    assert not np.array_equal(a.image, c.image)
    assert np.abs(a.depth - c.depth).mean() > 0.05
    assert a.camera["position"] != c.camera["position"]


@pytest.mark.parametrize("kind", ["indoor", "pascal"])
@pytest.mark.parametrize("size", [(120, 160), (37, 53)])
def test_shapes_dtypes_and_ranges(kind, size):
    s = scene(kind, 11, size)
    h, w = size
    expect = {"image": (np.uint8, (h, w, 3)), "depth": (np.float32, (h, w)), "normals": (np.float32, (h, w, 3)),
              "semseg": (np.uint8, (h, w)), "edge": (np.uint8, (h, w)), "saliency": (np.uint8, (h, w)),
              "parts": (np.uint8, (h, w)), "context_labels": (np.int32, (h, w)), "instances": (np.int32, (h, w))}
    for name, (dtype, shape) in expect.items():
        arr = getattr(s, name)
        assert arr.dtype == dtype and arr.shape == shape, (name, arr.dtype, arr.shape)
    assert np.isfinite(s.depth).all() and (s.depth > 0).all()
    np.testing.assert_allclose(np.linalg.norm(s.normals, axis=-1), 1.0, atol=1e-5)
    assert set(np.unique(s.edge)) <= {0, 1} and set(np.unique(s.saliency)) <= {0, 1}
    assert (s.instances >= 1).all()
    n_classes = len(NYUD_CLASSES) if kind == "indoor" else len(PASCAL_CLASSES)
    labelled = s.semseg[s.semseg != 255]
    assert labelled.max() < n_classes
    assert s.parts.max() <= 6
    assert ((s.context_labels >= 0) & (s.context_labels <= 459)).all()
    assert {"fx", "fy", "cx", "cy", "height", "yaw", "pitch", "roll", "rotation"} <= set(s.camera)
    if kind == "indoor":
        assert not s.parts.any() and s.persons == []
        assert np.array_equal(s.context_labels, s.semseg.astype(np.int32) + 1)


def test_normals_face_the_camera():
    for kind in ("indoor", "pascal"):
        s = scene(kind, 5)
        rows, cols = np.mgrid[0:120, 0:160]
        rays = pixel_rays(s.camera, rows.ravel().astype(float), cols.ravel().astype(float))
        assert (np.einsum("ij,ij->i", rays, s.normals.reshape(-1, 3)) < 1e-6).all()


def test_render_scene_dispatches_by_dataset_name():
    assert np.array_equal(render_scene("nyud", 3).image, scene("indoor", 3).image)
    assert np.array_equal(render_scene("pascal", 3).semseg, scene("pascal", 3).semseg)
    assert render_scene("cityscapes", 3).image.shape[-1] == 3  # the street scenes of the Cityscapes stand-in
    with pytest.raises(KeyError, match="nyud, pascal, cityscapes"):
        render_scene("kitti", 0)


def test_bad_size_is_refused_with_a_clear_message():
    with pytest.raises(ValueError, match="at least"):
        render_indoor_scene(0, (0, 10))
    with pytest.raises(ValueError, match=r"\(height, width\)"):
        render_pascal_scene(0, "big")


# ---------------------------------------------------------------- labels agree with the camera geometry
@pytest.mark.parametrize("seed", [0, 1, 2, 7])
def test_floor_normals_and_depth_follow_the_camera_pose(seed):
    s = scene("indoor", seed)
    cam = s.camera
    rot = independent_rotation(cam["yaw"], cam["pitch"], cam["roll"])
    np.testing.assert_allclose(np.asarray(cam["rotation"]), rot, atol=1e-12)
    floor = s.semseg == NYUD_CLASSES.index("floor")
    assert floor.sum() > 50, "every test seed should show some floor"
    # normal: the world up vector seen from the camera, R^T (0, 1, 0)
    np.testing.assert_allclose(s.normals[floor], np.broadcast_to(rot.T @ [0.0, 1.0, 0.0], (floor.sum(), 3)), atol=1e-5)
    # depth: intersect each pixel's ray with the plane y = 0 from a camera at the sampled height
    rows, cols = np.nonzero(floor)
    world = pixel_rays(cam, rows.astype(float), cols.astype(float)) @ rot.T
    expected = cam["height"] / -world[:, 1]
    np.testing.assert_allclose(s.depth[floor], expected, rtol=1e-5)
    assert 1.0 <= cam["height"] <= 1.7


def test_pitch_zero_floor_depth_matches_the_textbook_formula():
    """Level camera at height h: the floor seen in row v (below the centre) is at depth h * fy / (v - cy)."""
    cam = PinholeCamera.from_fov((40, 60), 60.0, (0.0, 1.5, 0.0))
    sc = Scene(NYUD_LABELS)
    sc.add(Plane((0, 0, 0), (0, 1, 0)), sc.new_object("floor"), Material((0.5, 0.5, 0.5)))
    sc.add(Plane((0, 0, -50), (0, 0, 1)), sc.new_object("wall"), Material((0.5, 0.5, 0.5)))
    sc.add(Plane((0, 3, 0), (0, -1, 0)), sc.new_object("ceiling"), Material((0.5, 0.5, 0.5)))
    hits = cast_rays(sc, cam)
    f = 30.0 / np.tan(np.deg2rad(30.0))  # (W / 2) / tan(fov / 2)
    assert cam.fx == pytest.approx(f) and cam.cy == pytest.approx(19.5)
    for v in (25, 30, 39):
        assert hits.depth[v, 10] == pytest.approx(1.5 * f / (v - 19.5), rel=1e-9)
        assert hits.surface[v, 10] == 0
    # rows above the centre see the ceiling (3 - 1.5 m above) or the wall 50 m away
    assert hits.depth[0, 30] == pytest.approx(1.5 * f / 19.5, rel=1e-9)
    assert hits.surface[19, 30] == 1 and hits.depth[19, 30] == pytest.approx(50.0)


# ---------------------------------------------------------------- primitives
def test_primitive_hits_distances_and_normals():
    origin = np.zeros(3)
    dirs = np.array([[0.0, 0.0, -1.0], [0.0, 1.0, 0.0], [0.0, 0.0, -2.0]])
    sphere = Sphere((0, 0, -5), 1.0)
    t = sphere.intersect(origin, dirs)
    assert t[0] == pytest.approx(4.0) and np.isinf(t[1]) and t[2] == pytest.approx(2.0)  # t scales with |d|
    np.testing.assert_allclose(sphere.normal_at(np.array([[0.0, 0.0, -4.0]])), [[0, 0, 1]])

    box = Box((0, 0, -10), (1.0, 2.0, 0.5))
    assert box.intersect(origin, dirs)[0] == pytest.approx(9.5)
    np.testing.assert_allclose(box.normal_at(np.array([[0.3, -1.0, -9.5]])), [[0, 0, 1]], atol=1e-12)
    turned = Box((0, 0, -10), (1.0, 2.0, 0.5), np.array([[0.0, 0, 1], [0, 1, 0], [-1, 0, 0]]))  # 90 deg about y
    assert turned.intersect(origin, dirs)[0] == pytest.approx(9.0)  # the 1 m half extent now faces us

    cyl = Cylinder((0, -1, -6), (0, 1, 0), 0.5, 2.0)  # vertical, spans y in [-1, 1]
    assert cyl.intersect(origin, dirs)[0] == pytest.approx(5.5)
    above = np.array([[0.0, 5.0, -6.0]])  # looking straight down onto the top cap from (0, 5, -6)
    assert cyl.intersect(np.array([0.0, 5.0, -6.0]), np.array([[0.0, -1.0, 0.0]]))[0] == pytest.approx(4.0)
    np.testing.assert_allclose(cyl.normal_at(above - [0, 4.0, 0]), [[0, 1, 0]], atol=1e-12)

    cap = Capsule((-2, 0, -3), (2, 0, -3), 0.25)  # horizontal, across the view
    assert cap.intersect(origin, dirs)[0] == pytest.approx(2.75)
    end_on = Capsule((0, 0, -3), (0, 0, -8), 0.25)  # pointing away: the near end sphere is hit first
    assert end_on.intersect(origin, dirs)[0] == pytest.approx(2.75)
    np.testing.assert_allclose(end_on.normal_at(np.array([[0.0, 0.0, -2.75]])), [[0, 0, 1]], atol=1e-12)


def test_projected_bounds_contain_every_hit():
    rng = np.random.default_rng(0)
    cam = PinholeCamera.from_fov((30, 40), 60.0, (0.0, 1.2, 0.0), yaw=0.4, pitch=-0.2, roll=0.05)
    dirs, rot = cam.world_rays(), cam.rotation
    for _ in range(40):
        center = cam.position + rot @ np.array([rng.uniform(-4, 4), rng.uniform(-3, 3), -rng.uniform(0.5, 8)])
        radius = rng.uniform(0.05, 1.5)
        t = Sphere(center, radius).intersect(cam.position, dirs)
        box = cam.pixel_box(center, radius)
        hit = np.isfinite(t)
        if box is None:
            assert not hit.any()
            continue
        v0, v1, u0, u1 = box
        inside = np.zeros_like(hit)
        inside[v0:v1, u0:u1] = True
        assert not (hit & ~inside).any()


# ---------------------------------------------------------------- boundaries, saliency, parts
def test_boundary_map_on_hand_made_arrays():
    inst = np.array([[1, 1, 2, 2]] * 3)
    sem = np.zeros_like(inst)
    depth = np.ones((3, 4))
    surf = np.zeros_like(inst)
    np.testing.assert_array_equal(boundary_map(inst, sem, depth, surf), [[0, 1, 1, 0]] * 3)
    # one instance, two primitives: a 10 % depth jump is a boundary, a 2 % jump is not
    inst = np.ones((2, 4), dtype=int)
    surf = np.array([[0, 0, 1, 1]] * 2)
    far = np.array([[1.0, 1.0, 1.1, 1.1]] * 2)
    near = np.array([[1.0, 1.0, 1.02, 1.02]] * 2)
    np.testing.assert_array_equal(boundary_map(inst, sem[:2], far, surf), [[0, 1, 1, 0]] * 2)
    assert not boundary_map(inst, sem[:2], near, surf).any()
    # the same primitive seen at a grazing angle (big depth steps) has no boundary
    assert not boundary_map(inst, sem[:2], np.array([[1.0, 2.0, 4.0, 8.0]] * 2), np.zeros((2, 4))).any()


@pytest.mark.parametrize("kind,seed", [("indoor", 0), ("indoor", 3), ("pascal", 0), ("pascal", 2)])
def test_edges_are_exactly_the_instance_changes_and_depth_jumps(kind, seed):
    s = scene(kind, seed)
    inst, depth, edge = s.instances, s.depth.astype(np.float64), s.edge.astype(bool)
    changes = np.zeros_like(edge)
    jumps = np.zeros_like(edge)
    for a, b in (((slice(None), slice(0, -1)), (slice(None), slice(1, None))),
                 ((slice(0, -1), slice(None)), (slice(1, None), slice(None)))):
        diff = inst[a] != inst[b]
        jump = np.abs(depth[a] - depth[b]) > 0.05 * np.minimum(depth[a], depth[b])
        for side in (a, b):
            changes[side] |= diff
            jumps[side] |= jump
    assert changes.any()
    assert (edge[changes]).all(), "every pixel next to another instance must be an edge"
    assert (changes | jumps)[edge].all(), "an edge pixel needs an instance change or a depth jump next to it"
    # a class change is always an instance change (one class per instance), so semantic boundaries are covered
    sem_change = np.zeros_like(edge)
    sem_change[:, :-1] |= s.semseg[:, :-1] != s.semseg[:, 1:]
    assert edge[sem_change].all()
    assert 0.01 < edge.mean() < 0.35


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_pascal_people_parts_and_saliency(seed):
    s = scene("pascal", seed)
    person_id = PASCAL_CLASSES.index("person")
    assert len(s.persons) >= 1 or not (s.semseg == person_id).any()
    union = np.zeros(s.semseg.shape, dtype=bool)
    for mask, parts in s.persons:
        assert mask.dtype == bool and mask.any()
        assert (s.semseg[mask] == person_id).all()
        assert len(np.unique(s.instances[mask])) == 1
        for part_id, part_mask in parts.items():
            assert 1 <= part_id <= 6 and part_mask.any()
            assert not (part_mask & ~mask).any()
            assert (s.parts[part_mask] == part_id).all()
        union |= mask
    np.testing.assert_array_equal(union, s.semseg == person_id)
    assert not (s.parts > 0)[~union].any(), "parts only inside person masks"
    assert (s.parts[union] > 0).all(), "every person pixel belongs to a part"
    assert s.saliency[union].all(), "people are salient"
    assert not s.saliency[s.semseg == 0].any(), "background is never salient"


def test_pascal_scenes_show_heads_torsos_and_several_classes():
    seen_parts, seen_classes, seen_context = set(), set(), set()
    for seed in range(5):
        s = scene("pascal", seed)
        seen_parts |= set(np.unique(s.parts).tolist())
        seen_classes |= set(np.unique(s.semseg).tolist())
        seen_context |= set(np.unique(s.context_labels).tolist())
    assert seen_parts == {0, 1, 2, 3, 4, 5, 6}
    assert {0, 15} <= seen_classes and len(seen_classes) >= 3
    assert len(seen_context) >= 6
    assert PASCAL_LABELS("sky")[1] == 360 and PASCAL_LABELS("person") == (15, 284)


def test_indoor_scenes_cover_many_nyud_classes_and_pick_one_salient_object():
    seen = set()
    for seed in range(8):
        s = scene("indoor", seed)
        seen |= set(np.unique(s.semseg).tolist())
        if s.saliency.any():
            ids = np.unique(s.instances[s.saliency == 1])
            assert len(ids) == 1, "indoor saliency is one object"
            assert s.semseg[s.saliency == 1][0] not in (NYUD_CLASSES.index("wall"), NYUD_CLASSES.index("floor"))
    assert {0, 1} <= seen and len(seen) >= 10


def test_indoor_textures_vary_per_instance():
    """Same class, different instances: colour is informative but not a fixed per-class constant."""
    means = []
    for seed in range(8):
        s = scene("indoor", seed)
        walls = s.semseg == NYUD_CLASSES.index("wall")
        if walls.sum() > 100:
            means.append(s.image[walls].mean(axis=0))
    assert len(means) >= 4 and np.ptp(np.array(means), axis=0).max() > 20


def test_render_time_is_printed():
    for kind, fn in RENDERERS.items():
        start = time.perf_counter()
        for seed in range(100, 110):
            fn(seed)
        per_scene = (time.perf_counter() - start) / 10
        print(f"{kind}: {per_scene * 1000:.1f} ms per 120x160 scene")
    start = time.perf_counter()
    big = render_indoor_scene(0, (425, 560))
    print(f"indoor 425x560: {time.perf_counter() - start:.2f} s")
    assert big.depth.shape == (425, 560)
