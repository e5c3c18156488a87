"""Write rendered synthetic scenes to disk in EXACTLY the real NYUD-v2 (flavour C), PASCAL-Context or Cityscapes
layout.

The real readers then read them, so every test and quick run on synthetic data exercises the same file-reading
code as a run on the real archives. All encodings go through `data/formats.py`:
NYUD: images/<id>.png, segmentation/<id>.png (class v stored as v+1, 0 = unlabeled), depth/<id>.npy (float32 m),
normals/<id>.png (round((n+1)/2*255)), edge/<id>.png (0/255), gt_sets/{train,val}.txt.
PASCAL: JPEGImages/<id>.jpg, semseg/VOC12/<id>.png (palettised, 255 = void), pascal-context/trainval/<id>.mat
(LabelMap), human_parts/<id>.mat (PASCAL-Part `anno` struct), normals_distill/<id>.png, sal_distill/<id>.png,
ImageSets/Context/{train,val}.txt.
Cityscapes: {leftImg8bit,gtFine,disparity,camera}/{train,val}/<city>/<city>_<seq>_<frame>_{leftImg8bit.png,
gtFine_labelIds.png,disparity.png,camera.json}: labelIds, and the uint16 disparity p = 256 baseline fx / depth + 1
of the rendered depth (0 = invalid on the sky, the ego vehicle and surfaces nearer than 16 bits can hold), with the
camera's fx and a Cityscapes baseline in the camera file; the split is the folder (no lists).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import numpy as np

from ...tasks import IGNORE_INDEX
from ..formats import (
    PartObject, encode_disparity_png, encode_normals_png, write_label_png, write_mat_array, write_npy,
    write_parts_anno, write_rgb, write_stereo_camera, write_uint16_png,
)

FLAVOURS = ("nyud", "pascal", "cityscapes")
SYNTHETIC_FORMAT_VERSION = 1  # bump when the written files change, so cached synthetic roots are regenerated
# one PASCAL-Part name per grouped part id (the reader maps each back to its group)
PART_NAME_FOR_GROUP = {1: "head", 2: "torso", 3: "luarm", 4: "llarm", 5: "luleg", 6: "llleg"}
CITIES = ("synthtown", "synthville")  # Cityscapes city folders of the synthetic streets
BASELINE = 0.209313  # metres: the stereo baseline of a Cityscapes camera file, used for every synthetic street
NO_DISPARITY_LABEL_IDS = (1, 23)  # ego vehicle and sky: no stereo match, as in the real disparity maps
PASCAL_CLASS_NAMES = ("background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair",
                      "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
                      "train", "tvmonitor")


def scene_seed(seed: int, index: int) -> int:
    """Seed of scene `index`; prefix-stable, so n=10 and n=200 with the same seed share their first 10 scenes."""
    return int(seed) * 1_000_003 + int(index)


def split_ids(ids: list[str], val_fraction: float, seed: int) -> tuple[list[str], list[str]]:
    n = len(ids)
    n_val = min(n - 1, max(1, int(round(n * val_fraction))))
    perm = np.random.default_rng(seed).permutation(n)
    val = sorted(ids[i] for i in perm[:n_val])
    val_set = set(val)
    return [i for i in ids if i not in val_set], val


def sample_id(flavour: str, index: int) -> str:
    if flavour == "cityscapes":  # <city>_<seq>_<frame>, the annotated 19th frame of a sequence as in gtFine
        return f"{CITIES[index % len(CITIES)]}_{index // len(CITIES):06d}_000019"
    return f"{index + 1:04d}" if flavour == "nyud" else f"2008_{index + 1:06d}"


def _default_renderer(flavour: str) -> Callable:
    from . import render

    return render.SCENE_KINDS[flavour]


def _check_scene(scene, size: tuple[int, int], where: str, flavour: str) -> None:
    h, w = size
    expect = {"image": ((h, w, 3), np.uint8), "depth": ((h, w), None), "normals": ((h, w, 3), None),
              "semseg": ((h, w), None), "edge": ((h, w), None)}
    if flavour == "pascal":
        expect.update({"saliency": ((h, w), None), "parts": ((h, w), None), "context_labels": ((h, w), None)})
    if flavour == "cityscapes":  # streets are written without normals, edges or saliency
        expect = {"image": ((h, w, 3), np.uint8), "depth": ((h, w), None), "semseg": ((h, w), None),
                  "context_labels": ((h, w), None)}
    for name, (shape, dtype) in expect.items():
        arr = np.asarray(getattr(scene, name))
        if arr.shape != shape or (dtype is not None and arr.dtype != dtype):
            raise ValueError(f"{where}: renderer returned {name} {arr.dtype} {arr.shape}, expected "
                             f"{dtype.__name__ if dtype else 'numeric'} {shape}")
    if flavour == "nyud":
        seg = np.asarray(scene.semseg)
        bad = np.unique(seg[(seg > 39) & (seg != IGNORE_INDEX)])
        if bad.size:
            raise ValueError(f"{where}: NYUD semseg ids {bad.tolist()} outside 0..39 / 255")
        depth = np.asarray(scene.depth)
        if not (np.isfinite(depth).all() and (depth > 0).all()):
            raise ValueError(f"{where}: depth must be finite and > 0 metres everywhere")
    elif flavour == "pascal":
        seg = np.asarray(scene.semseg)
        bad = np.unique(seg[(seg > 20) & (seg != IGNORE_INDEX)])
        if bad.size:
            raise ValueError(f"{where}: PASCAL semseg ids {bad.tolist()} outside 0..20 / 255")
    else:
        _check_street(scene, where)


def _check_street(scene, where: str) -> None:
    """labelIds in 0..33 that agree with the trainIds, positive finite depth, and a camera fx for the disparity."""
    from ..cityscapes import MAX_LABEL_ID, train_ids

    label_ids = np.asarray(scene.context_labels)
    bad = np.unique(label_ids[(label_ids < 0) | (label_ids > MAX_LABEL_ID)])
    if bad.size:
        raise ValueError(f"{where}: Cityscapes labelIds {bad.tolist()} outside 0..{MAX_LABEL_ID}")
    if not (train_ids(label_ids) == np.asarray(scene.semseg)).all():
        raise ValueError(f"{where}: semseg is not the trainIds of context_labels (the labelIds)")
    depth = np.asarray(scene.depth)
    if not (np.isfinite(depth).all() and (depth > 0).all()):
        raise ValueError(f"{where}: depth must be finite and > 0 metres everywhere")
    fx = (getattr(scene, "camera", None) or {}).get("fx")
    if not isinstance(fx, (int, float)) or not fx > 0:
        raise ValueError(f"{where}: the scene's camera needs a focal length fx > 0 (pixels) for the disparity")


def _write_nyud_scene(root: Path, sid: str, scene) -> None:
    write_rgb(root / "images" / f"{sid}.png", np.asarray(scene.image, dtype=np.uint8))
    seg = np.asarray(scene.semseg).astype(np.int32)
    stored = np.where(seg == IGNORE_INDEX, 0, seg + 1).astype(np.uint8)  # on disk: 0 = unlabeled, 1..40
    write_label_png(root / "segmentation" / f"{sid}.png", stored)
    write_npy(root / "depth" / f"{sid}.npy", np.asarray(scene.depth, dtype=np.float32))
    write_rgb(root / "normals" / f"{sid}.png", encode_normals_png(scene.normals))
    write_label_png(root / "edge" / f"{sid}.png", (np.asarray(scene.edge) > 0).astype(np.uint8) * 255)


def _pascal_objects(scene) -> list[PartObject]:
    """PASCAL-Part objects: one per non-person VOC class present (no parts), then each person with its parts."""
    seg = np.asarray(scene.semseg)
    objects = []
    for c in np.unique(seg):
        if c in (0, IGNORE_INDEX, 15):
            continue
        objects.append(PartObject(class_ind=int(c), mask=(seg == c), class_name=PASCAL_CLASS_NAMES[int(c)]))
    for instance_mask, parts in getattr(scene, "persons", None) or []:
        named = [(PART_NAME_FOR_GROUP[int(pid)], np.asarray(m, dtype=bool)) for pid, m in sorted(parts.items())
                 if np.asarray(m).any()]
        objects.append(PartObject(class_ind=15, mask=np.asarray(instance_mask, dtype=bool), parts=named,
                                  class_name="person"))
    return objects


def _write_pascal_scene(root: Path, sid: str, scene) -> None:
    write_rgb(root / "JPEGImages" / f"{sid}.jpg", np.asarray(scene.image, dtype=np.uint8), jpeg_quality=95)
    write_label_png(root / "semseg" / "VOC12" / f"{sid}.png", np.asarray(scene.semseg).astype(np.uint8),
                    palettised=True)
    write_mat_array(root / "pascal-context" / "trainval" / f"{sid}.mat", "LabelMap",
                    np.asarray(scene.context_labels).astype(np.uint16))
    write_parts_anno(root / "human_parts" / f"{sid}.mat", _pascal_objects(scene), imname=sid)
    write_rgb(root / "normals_distill" / f"{sid}.png", encode_normals_png(scene.normals))
    write_label_png(root / "sal_distill" / f"{sid}.png", (np.asarray(scene.saliency) > 0).astype(np.uint8) * 255)


def _write_cityscapes_scene(root: Path, split: str, sid: str, scene) -> None:
    city = sid.rsplit("_", 2)[0]
    cam = scene.camera
    write_rgb(root / "leftImg8bit" / split / city / f"{sid}_leftImg8bit.png", np.asarray(scene.image, dtype=np.uint8))
    label_ids = np.asarray(scene.context_labels)
    write_label_png(root / "gtFine" / split / city / f"{sid}_gtFine_labelIds.png", label_ids.astype(np.uint8))
    disparity = BASELINE * float(cam["fx"]) / np.asarray(scene.depth, dtype=np.float64)
    valid = ~np.isin(label_ids, NO_DISPARITY_LABEL_IDS) & (disparity < 255.99)
    write_uint16_png(root / "disparity" / split / city / f"{sid}_disparity.png",
                     encode_disparity_png(disparity, valid))
    write_stereo_camera(root / "camera" / split / city / f"{sid}_camera.json", BASELINE, cam["fx"],
                        cam.get("fy", cam["fx"]), cam.get("cx", 0.0), cam.get("cy", 0.0),
                        extrinsic={"z": cam.get("height", 0.0)})


def write_synthetic_dataset(out_dir: str | Path, n: int = 200, flavour: str = "nyud", seed: int = 0,
                            size: tuple[int, int] = (120, 160), val_fraction: float = 0.25,
                            render_fn: Callable | None = None, progress: Callable[[int, int], None] | None = None,
                            ) -> Path:
    """Render `n` scenes with `render_fn(seed, size=(H, W)) -> SceneArrays` (default: the project renderer) and
    write them under `out_dir` in the real on-disk layout of `flavour`. Deterministic from `seed`.
    `progress(done, n)` is called after each scene (rendering 200 scenes takes about a minute)."""
    if flavour not in FLAVOURS:
        raise ValueError(f"unknown synthetic flavour {flavour!r}; use one of {', '.join(FLAVOURS)}")
    if n < 2:
        raise ValueError(f"n={n}: need at least 2 scenes (one train, one val)")
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction={val_fraction}: must be in (0, 1)")
    size = (int(size[0]), int(size[1]))
    root = Path(out_dir)
    if root.exists() and any(root.iterdir()):
        raise FileExistsError(f"{root}: output folder exists and is not empty; choose a new folder")
    root.mkdir(parents=True, exist_ok=True)
    render = render_fn or _default_renderer(flavour)
    ids = [sample_id(flavour, i) for i in range(n)]
    train, val = split_ids(ids, val_fraction, seed)
    split_of = {**dict.fromkeys(train, "train"), **dict.fromkeys(val, "val")}
    for i, sid in enumerate(ids):
        s = scene_seed(seed, i)
        scene = render(s, size=size)
        _check_scene(scene, size, f"synthetic {flavour} scene {i} (seed {s})", flavour)
        if flavour == "cityscapes":
            _write_cityscapes_scene(root, split_of[sid], sid, scene)
        else:
            (_write_nyud_scene if flavour == "nyud" else _write_pascal_scene)(root, sid, scene)
        if progress is not None:
            progress(i + 1, n)
    if flavour != "cityscapes":  # Cityscapes splits are folders
        split_dir = root / ("gt_sets" if flavour == "nyud" else "ImageSets/Context")
        split_dir.mkdir(parents=True, exist_ok=True)
        (split_dir / "train.txt").write_text("\n".join(train) + "\n")
        (split_dir / "val.txt").write_text("\n".join(val) + "\n")
    (root / "synthetic.json").write_text(json.dumps({
        "flavour": flavour, "n": n, "seed": seed, "size": list(size), "val_fraction": val_fraction,
        "format_version": SYNTHETIC_FORMAT_VERSION, "train": len(train), "val": len(val),
    }, indent=2) + "\n")
    return root
