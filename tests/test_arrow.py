"""Arrow copy: every decoded array survives the round trip bit for bit, and build_dataset gives the same samples."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_data_readers import fake_indoor_scene, fake_pascal_scene

from degmix_tuning.data import DataConfig, build_dataset
from degmix_tuning.data.arrow import ArrowSplitReader, convert_to_arrow
from degmix_tuning.data.nyud import NYUD_TASKS, NYUDReader
from degmix_tuning.data.pascal import PASCAL_TASKS, PascalReader
from degmix_tuning.data.synthetic.writer import write_synthetic_dataset


def _bits(a: np.ndarray) -> np.ndarray:
    return a.view(np.uint32) if a.dtype == np.float32 else a


@pytest.mark.parametrize("flavour", ["nyud", "pascal"])
def test_arrow_round_trip_is_bit_exact(tmp_path, flavour):
    render = fake_indoor_scene if flavour == "nyud" else fake_pascal_scene
    root = write_synthetic_dataset(tmp_path / "root", n=5, flavour=flavour, seed=2, size=(24, 32), render_fn=render)
    if flavour == "nyud":  # add an invalid depth pixel so the 255 marker is part of the round trip
        ids = (root / "gt_sets" / "train.txt").read_text().split()
        d = np.load(root / "depth" / f"{ids[0]}.npy")
        d[0, :5] = 0.0
        np.save(root / "depth" / f"{ids[0]}.npy", d)

    def make(split):
        return NYUDReader(root, split) if flavour == "nyud" else PascalReader(root, split)

    out = convert_to_arrow(make, tmp_path / "arrow")
    tasks = NYUD_TASKS if flavour == "nyud" else PASCAL_TASKS
    n_checked = 0
    for split in ("train", "val"):
        files, arrow = make(split), ArrowSplitReader(out, split, tasks)
        assert arrow.ids == files.ids and arrow.dataset == flavour
        for i in range(len(files)):
            a, b = files.read(i), arrow.read(i)
            assert a["id"] == b["id"]
            for key in ("image", *tasks):
                assert a[key].dtype == b[key].dtype and a[key].shape == b[key].shape, key
                np.testing.assert_array_equal(_bits(a[key]), _bits(b[key]), err_msg=key)
                n_checked += 1
    assert n_checked == 5 * (1 + len(tasks))
    if flavour == "nyud":
        first = ArrowSplitReader(out, "train", ("depth",)).read(0)["depth"]
        assert (first[0, :5] == 255).all()


def test_build_dataset_from_arrow_equals_files(tmp_path):
    root = write_synthetic_dataset(tmp_path / "root", n=4, flavour="nyud", seed=0, size=(24, 32),
                                   render_fn=fake_indoor_scene)
    out = convert_to_arrow(lambda s: NYUDReader(root, s), tmp_path / "arrow")
    tasks = ("semseg", "depth", "normals")
    a = build_dataset(DataConfig(root=str(root), crop_size=(24, 32)), "val", tasks, train=False)
    b = build_dataset(DataConfig(arrow_path=str(out), crop_size=(24, 32)), "val", tasks, train=False)
    assert len(a) == len(b) == 1
    for key in ("image", *tasks):
        assert torch.equal(a[0][key], b[0][key])
    torch.manual_seed(3)
    ta = build_dataset(DataConfig(root=str(root), crop_size=(16, 16)), "train", tasks, train=True)[2]
    torch.manual_seed(3)
    tb = build_dataset(DataConfig(arrow_path=str(out), crop_size=(16, 16)), "train", tasks, train=True)[2]
    assert all(torch.equal(ta[k], tb[k]) for k in ("image", *tasks))
    with pytest.raises(ValueError, match="holds 'nyud'"):
        build_dataset(DataConfig(dataset="pascal", arrow_path=str(out)), "val", ("semseg",), train=False)
    with pytest.raises(FileExistsError):
        convert_to_arrow(lambda s: NYUDReader(root, s), out)


def test_wrong_root_creates_nothing_and_the_copy_is_an_ordinary_folder(tmp_path):
    import os

    missing = tmp_path / "no_root"
    with pytest.raises(FileNotFoundError):
        convert_to_arrow(lambda split: NYUDReader(missing, split), tmp_path / "deep" / "out")
    assert not (tmp_path / "deep").exists()  # nothing made before the root was checked
    root = write_synthetic_dataset(tmp_path / "root", n=3, flavour="nyud", seed=0, size=(24, 32),
                                   render_fn=fake_indoor_scene)
    out = convert_to_arrow(lambda split: NYUDReader(root, split), tmp_path / "copy")
    umask = os.umask(0)
    os.umask(umask)
    assert os.stat(out).st_mode & 0o777 == 0o777 & ~umask  # not mkdtemp's 0700
