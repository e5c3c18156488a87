"""Cityscapes: the official layout read into 19 trainIds and depth in metres, validation of broken roots, the
synthetic streets written in that layout, the metrics' ignore rules, presets, to-arrow and a recipe run."""

from __future__ import annotations

import json
import runpy
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from degmix_tuning.cli import main
from degmix_tuning.data import DataConfig, build_dataset, get_dataset_info, open_reader
from degmix_tuning.data.arrow import ArrowSplitReader
from degmix_tuning.data.cityscapes import CityscapesReader
from degmix_tuning.data.formats import (
    DataFileError, write_label_png, write_rgb, write_stereo_camera, write_uint16_png,
)
from degmix_tuning.data.synthetic.render import render_cityscapes_scene
from degmix_tuning.data.synthetic.writer import BASELINE, scene_seed, write_synthetic_dataset
from degmix_tuning.data.validate import validate_root
from degmix_tuning.metrics import build_meter
from degmix_tuning.models.presets import get_preset

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "tune_cityscapes.py"

# ------------------------------------------------------------------------------- a root written by hand, 4x6 px
# labelIds -> trainIds (cityscapesScripts labels.py): road 7->0, sidewalk 8->1, building 11->2, pole 17->5,
# sky 23->10, person 24->11, car 26->13, bicycle 33->18; unlabeled 0, ego vehicle 1, parking 9, guard rail 14,
# caravan 29 -> 255
LABEL_IDS = np.array([[7, 8, 11, 17, 23, 24],
                      [26, 33, 0, 1, 9, 14],
                      [29, 7, 7, 26, 26, 23],
                      [31, 32, 12, 13, 19, 20]], np.uint8)
TRAIN_IDS = np.array([[0, 1, 2, 5, 10, 11],
                      [13, 18, 255, 255, 255, 255],
                      [255, 0, 0, 13, 13, 10],
                      [16, 17, 3, 4, 6, 7]], np.uint8)
# disparity PNG values p: d = (p - 1) / 256 px; baseline 0.5 m x fx 100 px = 50 m.px, so depth = 50 / d
DISPARITY = np.array([[0, 1, 257, 513, 32769, 129],
                      [2, 1000, 65535, 257, 0, 0],
                      [161, 160, 641, 3329, 257, 0],
                      [257, 257, 257, 257, 257, 257]], np.uint16)
BAD = 255.0
DEPTH = np.array([[BAD, BAD, 50.0, 25.0, 50 / 128, BAD],  # p=0, p=1 invalid; 129 -> 100 m, beyond 80 m
                  [BAD, 50 * 256 / 999, 50 * 256 / 65534, 50.0, BAD, BAD],  # p=2 -> 12800 m
                  [80.0, BAD, 20.0, 50 * 256 / 3328, 50.0, BAD],  # 161 -> exactly 80 m (kept), 160 -> 80.5 m
                  [50.0] * 6], np.float32)


def _image(h=4, w=6, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _write_sample(root: Path, split: str, city: str, sid: str, *, labels=LABEL_IDS, train_ids=False,
                  disparity=DISPARITY, baseline=0.5, fx=100.0, image=None) -> None:
    write_rgb(root / "leftImg8bit" / split / city / f"{sid}_leftImg8bit.png", _image() if image is None else image)
    kind = "labelTrainIds" if train_ids else "labelIds"
    write_label_png(root / "gtFine" / split / city / f"{sid}_gtFine_{kind}.png", labels)
    write_uint16_png(root / "disparity" / split / city / f"{sid}_disparity.png", disparity)
    write_stereo_camera(root / "camera" / split / city / f"{sid}_camera.json", baseline, fx, fx, 2.5, 1.5)


@pytest.fixture
def hand_root(tmp_path) -> Path:
    root = tmp_path / "cityscapes"
    _write_sample(root, "train", "aachen", "aachen_000000_000019")
    _write_sample(root, "train", "bochum", "bochum_000000_000313", image=_image(seed=1))
    _write_sample(root, "val", "frankfurt", "frankfurt_000000_000294", labels=TRAIN_IDS, train_ids=True)
    return root


def test_hand_written_root_gives_the_exact_trainids_and_metres(hand_root):
    reader = CityscapesReader(hand_root, "train")
    assert reader.ids == ["aachen_000000_000019", "bochum_000000_000313"] and len(reader) == 2
    sample = reader.read(0)
    assert sample["id"] == "aachen_000000_000019"
    assert np.array_equal(sample["image"], _image())
    assert sample["semseg"].dtype == np.uint8 and np.array_equal(sample["semseg"], TRAIN_IDS)
    assert sample["depth"].dtype == np.float32 and np.array_equal(sample["depth"], DEPTH)
    val = CityscapesReader(hand_root, "val")  # only the labelTrainIds file: read as stored
    assert val.path(val.ids[0], "semseg").name.endswith("_gtFine_labelTrainIds.png")
    assert np.array_equal(val.read(0)["semseg"], TRAIN_IDS)


def test_samples_are_read_at_the_crop_size(hand_root):
    reader = CityscapesReader(hand_root, "train", size=(2, 3))
    sample = reader.read(0)
    assert reader.image_size(0) == (2, 3) and sample["image"].shape == (2, 3, 3)
    # nearest: output pixel i takes input pixel floor((i + 0.5) * 2) = 2i + 1
    assert np.array_equal(sample["semseg"], TRAIN_IDS[1::2, 1::2])
    assert np.array_equal(sample["depth"], DEPTH[1::2, 1::2])
    # from a DataConfig: its crop size, the dataset default 256x512 unless set
    assert get_dataset_info("cityscapes").crop_size == (256, 512)
    cfg = DataConfig(dataset="cityscapes", root=str(hand_root), crop_size=(8, 12))
    assert open_reader(cfg, "val").read(0)["semseg"].shape == (8, 12)
    ds = build_dataset(cfg, "val", ("semseg", "depth"), train=False)
    item = ds[0]
    assert item["image"].shape == (3, 8, 12) and item["depth"].shape == (1, 8, 12)
    assert item["meta"] == {"id": "frankfurt_000000_000294", "size": (8, 12)}


def test_reader_errors_are_one_line(hand_root, tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist.*leftImg8bit_trainvaltest.zip"):
        CityscapesReader(tmp_path / "nowhere", "train")
    with pytest.raises(KeyError, match="no labels for task"):
        CityscapesReader(hand_root, "train", ("normals",))
    with pytest.raises(FileNotFoundError, match=r"leftImg8bit/test: split folder does not exist \(splits present: "
                                                r"train, val\)"):
        CityscapesReader(hand_root, "test")
    bad = hand_root / "gtFine/train/aachen/aachen_000000_000019_gtFine_labelIds.png"
    write_label_png(bad, np.full((4, 6), 40, np.uint8))
    with pytest.raises(DataFileError, match=r"label ids \[40\] are outside 0..33"):
        CityscapesReader(hand_root, "train").read(0)


def test_metrics_ignore_255_and_invalid_depth():
    info = get_dataset_info("cityscapes")
    assert info.num_outputs("semseg") == 19 and info.class_names["semseg"][13] == "car"
    seg = build_meter("semseg", info)
    label = torch.from_numpy(TRAIN_IDS.astype(np.int64))[None]
    pred = label.clone()
    pred[label == 255] = 3  # wrong everywhere the label is ignored: no effect on any IoU
    seg.update(pred, label)
    result = seg.compute()
    present = np.unique(TRAIN_IDS[TRAIN_IDS != 255])
    assert result["miou"] == pytest.approx(len(present) / 19)
    depth = build_meter("depth", info)
    gt = torch.from_numpy(DEPTH)[None, None]
    valid = gt != 255
    depth.update(torch.where(valid, gt + 2.0, torch.full_like(gt, 1e6)), gt)  # off by 2 m where valid
    assert depth.compute()["rmse"] == pytest.approx(2.0) and depth.compute()["num_pixels"] == int(valid.sum())


def test_presets():
    for size in "tsbl":
        full, tuned = get_preset(f"degmix_swin_{size}_cityscapes"), get_preset(f"degmix_tuning_swin_{size}_cityscapes")
        assert full.dataset == tuned.dataset == "cityscapes" and full.tasks == tuned.tasks == ("semseg", "depth")
        assert not full.freeze_backbone and tuned.freeze_backbone and tuned.head.dim == 128


# ---------------------------------------------------------------------------------------------------- validate
def _synthetic(tmp_path, n=6, size=(32, 64)) -> Path:
    return write_synthetic_dataset(tmp_path / "synth", n=n, flavour="cityscapes", seed=0, size=size)


def test_validate_lists_every_missing_or_corrupt_file(tmp_path, capsys):
    root = _synthetic(tmp_path)
    assert main(["data", "validate", "--dataset", "cityscapes", "--root", str(root)]) == 0
    assert "train: 4 ids, val: 2 ids; largest image 32x64" in capsys.readouterr().out
    train = CityscapesReader(root, "train")
    a, b, c, d = train.ids
    (root / "leftImg8bit/train" / train._city[a] / f"{a}_leftImg8bit.png").write_bytes(b"not a png")
    (root / "disparity/train" / train._city[b] / f"{b}_disparity.png").unlink()
    write_label_png(root / "gtFine/train" / train._city[c] / f"{c}_gtFine_labelIds.png",
                    np.full((32, 64), 50, np.uint8))
    camera = root / "camera/train" / train._city[d] / f"{d}_camera.json"
    camera.write_text(json.dumps({"extrinsic": {"baseline": 0.2}, "intrinsic": {}}))
    val = CityscapesReader(root, "val")
    e, f = val.ids
    write_label_png(root / "disparity/val" / val._city[e] / f"{e}_disparity.png", np.ones((32, 64), np.uint8))
    write_label_png(root / "gtFine/val" / val._city[f] / f"{f}_gtFine_labelIds.png", np.full((16, 64), 7, np.uint8))
    assert main(["data", "validate", "--dataset", "cityscapes", "--root", str(root)]) == 1
    out = capsys.readouterr().out
    problems = [line for line in out.splitlines() if line.startswith("problem:")]
    assert len(problems) == 6, out
    joined = "\n".join(problems)
    assert f"{a}_leftImg8bit.png: unreadable or corrupt image" in joined
    assert f"{b}_disparity.png: file does not exist" in joined
    assert f"{c}_gtFine_labelIds.png: label ids [50] are outside 0..33" in joined
    assert f"{d}_camera.json: camera JSON needs a positive number at intrinsic.fx" in joined
    assert f"{e}_disparity.png: expected a 16-bit single-channel PNG" in joined
    assert f"{f}_gtFine_labelIds.png: semseg label is 16x64 (HxW) but the image is 32x64" in joined


def test_validate_missing_folders(tmp_path):
    root = _synthetic(tmp_path)
    import shutil

    shutil.rmtree(root / "camera")
    shutil.rmtree(root / "leftImg8bit" / "val")
    report = validate_root("cityscapes", root)
    assert report.problems == [
        f"{root / 'camera'}: camera folder is missing (depth needs each image's baseline and fx)",
        f"{root / 'leftImg8bit' / 'val'}: split folder does not exist (splits present: train)"]
    assert report.checked == {"train": 4} and not report.warnings  # semseg is still checked file by file


# ---------------------------------------------------------------------------------------- synthetic streets
def test_synthetic_streets_round_trip_through_the_reader(tmp_path):
    root = _synthetic(tmp_path)
    meta = json.loads((root / "synthetic.json").read_text())
    assert meta["flavour"] == "cityscapes" and (meta["train"], meta["val"]) == (4, 2)
    assert not (root / "gt_sets").exists() and not (root / "ImageSets").exists()  # the split is the folder
    seen = 0
    for split in ("train", "val"):
        reader = CityscapesReader(root, split)
        for i, sid in enumerate(reader.ids):
            city, seq, frame = sid.split("_")
            assert city in ("synthtown", "synthville") and frame == "000019"
            index = 2 * int(seq) + (city == "synthville")
            scene = render_cityscapes_scene(scene_seed(0, index), (32, 64))
            sample = reader.read(i)
            assert np.array_equal(sample["image"], scene.image)
            assert np.array_equal(sample["semseg"], scene.semseg)
            # the disparity written is p = round(256 * baseline * fx / depth + 1); sky (23) and the ego vehicle (1)
            # have none; the reader gives baseline * fx / ((p - 1) / 256), and 255 beyond 80 m
            bf = BASELINE * scene.camera["fx"]
            p = np.rint(256 * bf / scene.depth.astype(np.float64) + 1)
            with np.errstate(divide="ignore"):  # p = 1: d = 0, infinitely far
                expected = (bf / ((p - 1) / 256)).astype(np.float32)
            expected[np.isin(scene.context_labels, (1, 23)) | (expected > 80)] = 255
            assert np.array_equal(sample["depth"], expected)
            valid = expected != 255
            assert valid.mean() > 0.4
            # rounding p moves the disparity by at most half a step of 1/256 px
            inverse_error = np.abs(1 / sample["depth"][valid].astype(np.float64) - 1 / scene.depth[valid])
            assert inverse_error.max() <= 0.5 / 256 / bf * (1 + 1e-5)
            seen += 1
    assert seen == 6


def test_synthetic_streets_label_many_classes():
    classes = set()
    for seed in range(4):
        scene = render_cityscapes_scene(seed, (64, 128))
        classes |= set(np.unique(scene.semseg).tolist())
    assert {0, 1, 2, 5, 10, 13} <= classes  # road, sidewalk, building, pole, sky, car in every few streets
    assert len(classes - {255}) >= 10


def test_synth_command_and_the_cached_stand_in(tmp_path, capsys, synthetic_cache):
    out = tmp_path / "cli"
    assert main(["data", "synth", "--flavour", "cityscapes", "--out", str(out), "--n", "4", "--size", "32", "64"]) == 0
    assert "wrote 4 synthetic cityscapes scenes (32x64)" in capsys.readouterr().out
    assert validate_root("cityscapes", out).ok
    cfg = DataConfig(dataset="cityscapes", synthetic=True, synthetic_n=4, synthetic_size=(32, 64))
    reader = open_reader(cfg, "train")  # rendered into the cache, read at the synthetic size
    assert isinstance(reader, CityscapesReader) and reader.size == (32, 64)
    assert reader.read(0)["depth"].shape == (32, 64)


def test_to_arrow_stores_the_samples_at_the_crop_size(tmp_path):
    root = _synthetic(tmp_path, n=4)
    out = tmp_path / "arrow"
    assert main(["data", "to-arrow", "--dataset", "cityscapes", "--root", str(root), "--out", str(out),
                 "--crop-size", "16", "32"]) == 0
    files, arrow = CityscapesReader(root, "train", size=(16, 32)), ArrowSplitReader(out, "train", ("semseg", "depth"))
    assert arrow.ids == files.ids and arrow.dataset == "cityscapes"
    for i in range(len(files)):
        a, b = files.read(i), arrow.read(i)
        assert all(np.array_equal(a[k], b[k]) for k in ("image", "semseg", "depth"))


# ------------------------------------------------------------------------------------------------ the recipe
def test_two_training_steps_on_synthetic_cityscapes_through_the_recipe(tmp_path, monkeypatch, capsys,
                                                                       synthetic_cache):
    sets = ["model.backbone=tiny_swin", "model.head.dim=16", "data.synthetic_n=6", "data.synthetic_size=32,64",
            "data.num_workers=0", "train.batch_size=2", "train.max_steps=2", "train.eval_every=0",
            "train.checkpoint_every=0", "train.eval_at_start=false"]
    argv = [str(RECIPE), "--synthetic", "--no-progress", "--output-dir", str(tmp_path / "run")]
    for item in sets:
        argv += ["--set", item]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as done:
        runpy.run_path(str(RECIPE), run_name="__main__")
    assert done.value.code == 0, capsys.readouterr()
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["data"]["dataset"] == "cityscapes" and config["model"]["tasks"] == ["semseg", "depth"]
    final = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()][-1]
    metrics = final["metrics"]
    assert final["step"] == 2 and len(metrics["semseg"]["iou_per_class"]) == 19
    assert np.isfinite(metrics["semseg"]["miou"]) and np.isfinite(metrics["depth"]["rmse"])
    assert 0 < metrics["depth"]["num_pixels"] < 2 * 32 * 64  # the val streets' valid depth only (sky etc. ignored)
