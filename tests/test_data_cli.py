"""`degmix-tuning data validate|synth|to-arrow`: validate lists every problem and exits 1; a clean root exits 0."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from test_data_readers import fake_indoor_scene, fake_pascal_scene

from degmix_tuning.cli import main
from degmix_tuning.data.formats import write_label_png, write_npy
from degmix_tuning.data.synthetic.writer import write_synthetic_dataset
from degmix_tuning.data.validate import validate_root


def _nyud(tmp_path) -> Path:
    return write_synthetic_dataset(tmp_path / "nyud", n=8, flavour="nyud", seed=0, size=(24, 32),
                                   render_fn=fake_indoor_scene)


def test_validate_clean_root_exits_0(tmp_path, capsys):
    root = _nyud(tmp_path)
    assert main(["data", "validate", "--dataset", "nyud", "--root", str(root)]) == 0
    out = capsys.readouterr().out
    assert "flavour C" in out and "train: 6 ids" in out and "val: 2 ids" in out and "OK" in out
    assert "largest image 24x32" in out


def test_validate_lists_every_problem_and_exits_1(tmp_path, capsys):
    root = _nyud(tmp_path)
    train = (root / "gt_sets" / "train.txt").read_text().split()
    val = (root / "gt_sets" / "val.txt").read_text().split()
    (root / "images" / f"{train[0]}.png").write_bytes(b"not a png")  # corrupt image
    (root / "edge" / f"{train[1]}.png").unlink()  # listed id, missing file
    write_label_png(root / "segmentation" / f"{train[2]}.png", np.full((24, 32), 44, np.uint8))  # bad class
    d = np.ones((24, 32), np.float32)
    d[0, 0] = np.nan
    write_npy(root / "depth" / f"{val[0]}.npy", d)  # NaN depth
    write_npy(root / "depth" / f"{val[1]}.npy", np.ones((10, 32), np.float32))  # wrong size
    assert main(["data", "validate", "--dataset", "nyud", "--root", str(root)]) == 1
    out = capsys.readouterr().out
    problems = [ln for ln in out.splitlines() if ln.startswith("problem:")]
    assert len(problems) == 5, out
    joined = "\n".join(problems)
    assert f"images/{train[0]}.png" in joined and "corrupt" in joined
    assert f"edge/{train[1]}.png: file does not exist" in joined
    assert f"segmentation/{train[2]}.png" in joined and "[44]" in joined
    assert f"depth/{val[0]}.npy" in joined and "NaN" in joined
    assert f"depth/{val[1]}.npy" in joined and "10x32" in joined
    assert "5 problem(s) found" in out


def test_validate_missing_folders_and_split_lists(tmp_path):
    root = _nyud(tmp_path)
    import shutil

    shutil.rmtree(root / "normals")
    (root / "gt_sets" / "val.txt").unlink()
    report = validate_root("nyud", root)
    assert not report.ok and len(report.problems) == 2
    assert any("normals: folder for normals is missing" in p for p in report.problems)
    assert any("gt_sets/val.txt: split list does not exist" in p for p in report.problems)
    assert report.checked == {"train": 6}  # the remaining files are still all checked


def test_validate_warns_when_images_exceed_the_pad_size(tmp_path):
    root = write_synthetic_dataset(tmp_path / "big", n=2, flavour="pascal", seed=0, size=(16, 520),
                                   render_fn=fake_pascal_scene)
    report = validate_root("pascal", root)
    assert report.ok and report.max_image_size == (16, 520)
    assert any("data.crop_size=16,520" in w for w in report.warnings)


def test_validate_pascal_reports_each_file(tmp_path):
    root = write_synthetic_dataset(tmp_path / "p", n=4, flavour="pascal", seed=0, size=(24, 32),
                                   render_fn=fake_pascal_scene)
    assert validate_root("pascal", root).ok
    ids = (root / "ImageSets/Context/train.txt").read_text().split()
    (root / "pascal-context/trainval" / f"{ids[0]}.mat").write_bytes(b"garbage")
    (root / "sal_distill" / f"{ids[1]}.png").unlink()
    (root / "ImageSets/Context/val.txt").write_text(ids[2] + "\n")  # overlaps train
    report = validate_root("pascal", root)
    assert len(report.problems) == 3, report.problems
    assert any(f"trainval/{ids[0]}.mat: unreadable .mat" in p for p in report.problems)
    assert any(f"sal_distill/{ids[1]}.png" in p for p in report.problems)
    assert any("share 1 ids" in p for p in report.problems)


def test_validate_pascal_layout_problems_and_unknown_dataset(tmp_path):
    root = write_synthetic_dataset(tmp_path / "p", n=4, flavour="pascal", seed=0, size=(24, 32),
                                   render_fn=fake_pascal_scene)
    (root / "semseg/VOC12").rename(root / "semseg/other")
    (root / "pascal-context/trainval").rename(root / "pascal-context/elsewhere")
    report = validate_root("pascal", root)
    assert [p.split(": ", 1)[1] for p in report.problems] == [
        "needs a VOC12/ or pascal-context/ subfolder", "folder for edge is missing",
        "LabelMap folder is missing (the normals mask needs it)"]
    assert report.checked == {"train": 3, "val": 1}  # human_parts and sal are still checked file by file
    with pytest.raises(KeyError, match="Did you mean 'nyud'.*nyud, pascal"):
        validate_root("nyu", root)


def test_validate_missing_root_exits_1(tmp_path, capsys):
    assert main(["data", "validate", "--dataset", "pascal", "--root", str(tmp_path / "none")]) == 1
    assert "does not exist" in capsys.readouterr().out


def test_to_arrow_command(tmp_path, capsys):
    root = _nyud(tmp_path)
    assert main(["data", "to-arrow", "--dataset", "nyud", "--root", str(root), "--out", str(tmp_path / "a")]) == 0
    assert (tmp_path / "a" / "degmix_arrow.json").is_file()
    assert "data.arrow_path=" in capsys.readouterr().out
    assert main(["data", "to-arrow", "--dataset", "nyud", "--root", str(root), "--out", str(tmp_path / "a")]) == 1
