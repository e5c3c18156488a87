"""Dataset readers on small roots written in the exact NYUD-v2 (flavours A/B/C) and PASCAL-Context layouts:
label encodings, ignore values, derived PASCAL labels, and one error message per kind of broken file."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from degmix_tuning.data.formats import (
    DataFileError, PartObject, read_parts_anno, write_label_png, write_mat_array, write_npy, write_parts_anno,
    write_rgb,
)
from degmix_tuning.data.nyud import NYUDReader, detect_nyud_flavour
from degmix_tuning.data.pascal import PASCAL_NORMALS_CONTEXT_IDS, PascalReader, label_map_edges
from degmix_tuning.data.synthetic.writer import write_synthetic_dataset


# ------------------------------------------------------------------------------------------ a tiny fake renderer
@dataclass
class FakeScene:
    """Same fields as synthetic.render.SceneArrays."""

    image: np.ndarray
    depth: np.ndarray
    normals: np.ndarray
    semseg: np.ndarray
    edge: np.ndarray
    saliency: np.ndarray
    parts: np.ndarray
    context_labels: np.ndarray
    persons: list = field(default_factory=list)


def _unit(v):
    v = np.asarray(v, dtype=np.float32)
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def fake_indoor_scene(seed: int, size=(24, 32)) -> FakeScene:
    """Left half class `a`, right half class `b`, a 255 (unlabeled) block; depth/normals vary per class."""
    rng = np.random.default_rng(seed)
    h, w = size
    a, b = rng.choice(40, size=2, replace=False)
    seg = np.full((h, w), a, np.uint8)
    seg[:, w // 2:] = b
    seg[:3, :3] = 255
    depth = np.where(seg == a, 1.5, 3.25).astype(np.float32) + rng.uniform(0, 1, (h, w)).astype(np.float32)
    normals = np.where((seg == a)[..., None], _unit([0.0, 0.0, 1.0]), _unit([0.6, 0.0, 0.8])).astype(np.float32)
    edge = np.zeros((h, w), np.uint8)
    edge[:, w // 2] = 1
    image = np.stack([seg * 6, (depth * 50).astype(np.uint8), np.full((h, w), seed % 256, np.uint8)], -1)
    z = np.zeros((h, w), np.uint8)
    return FakeScene(image.astype(np.uint8), depth, normals, seg, edge, z, z, np.zeros((h, w), np.int32))


def fake_pascal_scene(seed: int, size=(24, 32)) -> FakeScene:
    """Background sky (context 360, not a normals class), a chair (VOC 9, context 72) and, for even seeds, a
    person (VOC 15, context 284) with head/torso/leg parts."""
    h, w = size
    seg = np.zeros((h, w), np.uint8)
    ctx = np.full((h, w), 360, np.int32)
    seg[h // 2:, : w // 3] = 9
    ctx[h // 2:, : w // 3] = 72
    persons = []
    parts = np.zeros((h, w), np.uint8)
    if seed % 2 == 0:
        person = np.zeros((h, w), bool)
        person[2:h - 2, w // 2:w // 2 + 6] = True
        seg[person] = 15
        ctx[person] = 284
        head = person & (np.arange(h)[:, None] < 6)
        torso = person & (np.arange(h)[:, None] >= 6) & (np.arange(h)[:, None] < 14)
        legs = person & (np.arange(h)[:, None] >= 14)
        parts[head], parts[torso], parts[legs] = 1, 2, 6
        persons.append((person, {1: head, 2: torso, 6: legs}))
    seg[0, :] = 255  # void row like VOC borders
    normals = np.broadcast_to(_unit([0.0, 0.6, 0.8]), (h, w, 3)).copy()
    sal = (seg == 15).astype(np.uint8)
    image = np.stack([seg * 10, (ctx % 256).astype(np.uint8), np.full((h, w), 128, np.uint8)], -1).astype(np.uint8)
    edge = np.zeros((h, w), np.uint8)
    return FakeScene(image, np.ones((h, w), np.float32), normals, seg, edge, sal, parts, ctx, persons)


def fake_render(flavour):
    return fake_indoor_scene if flavour == "nyud" else fake_pascal_scene


@pytest.fixture
def nyud_c_root(tmp_path):
    return write_synthetic_dataset(tmp_path / "nyud", n=6, flavour="nyud", seed=3, size=(24, 32),
                                   render_fn=fake_indoor_scene)


@pytest.fixture
def pascal_root(tmp_path):
    return write_synthetic_dataset(tmp_path / "pascal", n=4, flavour="pascal", seed=0, size=(24, 32),
                                   render_fn=fake_pascal_scene)


# ------------------------------------------------------------------------------------------------------- NYUD
def test_nyud_flavour_c_round_trip_through_writer(nyud_c_root):
    root = Path(nyud_c_root)
    assert detect_nyud_flavour(root) == "C"
    assert (root / "images" / "0001.png").is_file() and (root / "normals" / "0001.png").is_file()
    train = (root / "gt_sets" / "train.txt").read_text().split()
    val = (root / "gt_sets" / "val.txt").read_text().split()
    assert len(train) + len(val) == 6 and len(val) == 2 and not set(train) & set(val)
    reader = NYUDReader(root, "train")
    assert reader.flavour == "C"
    for i, sid in enumerate(reader.ids):
        scene = fake_indoor_scene(3 * 1_000_003 + int(sid) - 1, size=(24, 32))
        s = reader.read(i)
        np.testing.assert_array_equal(s["image"], scene.image)
        np.testing.assert_array_equal(s["semseg"], scene.semseg)  # stored v+1 / 0, decoded back exactly
        assert s["semseg"][0, 0] == 255 and s["semseg"].dtype == np.uint8
        np.testing.assert_array_equal(s["depth"], scene.depth)  # npy: bit-exact metres
        assert np.abs(s["normals"] - scene.normals).max() <= 1.0 / 255 + 1e-6  # png quantisation
        np.testing.assert_array_equal(s["edge"], scene.edge.astype(np.float32))


def _write_flavour_b(root: Path, sid: str = "0001", h: int = 5, w: int = 6) -> dict:
    seg_disk = np.arange(h * w, dtype=np.uint8).reshape(h, w) % 41  # 0..40
    depth = np.linspace(0.5, 4.0, h * w, dtype=np.float32).reshape(h, w)
    depth[0, 0] = 0.0  # a hole
    normals = np.zeros((h, w, 3), np.float32)
    normals[..., 2] = 1.0
    normals[1, 1] = 0.0  # zero-norm -> ignore
    edge = (np.arange(w) == 2).astype(np.float32)[None].repeat(h, 0)
    write_rgb(root / "images" / f"{sid}.jpg", np.full((h, w, 3), 90, np.uint8))
    write_label_png(root / "segmentation" / f"{sid}.png", seg_disk)
    write_npy(root / "depth" / f"{sid}.npy", depth)
    write_npy(root / "normals" / f"{sid}.npy", normals)
    write_npy(root / "edge" / f"{sid}.npy", edge)
    (root / "gt_sets").mkdir(parents=True, exist_ok=True)
    (root / "gt_sets" / "train.txt").write_text(f"{sid}\n")
    return {"seg": seg_disk, "depth": depth, "normals": normals, "edge": edge}


def test_nyud_flavour_b_encodings_and_ignore_values(tmp_path):
    src = _write_flavour_b(tmp_path)
    assert detect_nyud_flavour(tmp_path) == "B"
    s = NYUDReader(tmp_path, "train", format="auto").read(0)
    assert s["image"].shape == (5, 6, 3)
    expect_seg = src["seg"].astype(int) - 1
    expect_seg[expect_seg < 0] = 255
    np.testing.assert_array_equal(s["semseg"], expect_seg)
    assert s["semseg"][0, 0] == 255 and s["semseg"][0, 1] == 0 and s["semseg"].max() == 255
    assert set(np.unique(s["semseg"][s["semseg"] != 255])) <= set(range(40))
    assert s["depth"][0, 0] == 255 and s["depth"][0, 1] == src["depth"][0, 1]
    np.testing.assert_array_equal(s["normals"][1, 1], [255, 255, 255])
    np.testing.assert_array_equal(s["normals"][2, 2], [0, 0, 1])
    np.testing.assert_array_equal(s["edge"], src["edge"])


def test_nyud_flavour_a_mat_files(tmp_path):
    h, w = 4, 5
    seg = np.array([[0, 1, 40, 2, 3]] * h, np.uint8)
    write_rgb(tmp_path / "images" / "0007.jpg", np.full((h, w, 3), 50, np.uint8))
    write_mat_array(tmp_path / "segmentation" / "0007.mat", "segmentation", seg)
    write_mat_array(tmp_path / "depth" / "0007.mat", "depth", np.full((h, w), 2.5))
    write_rgb(tmp_path / "normals" / "0007.jpg", np.full((h, w, 3), 128, np.uint8))
    write_label_png(tmp_path / "edge" / "0007.png", np.zeros((h, w), np.uint8))
    (tmp_path / "gt_sets").mkdir()
    (tmp_path / "gt_sets" / "val.txt").write_text("0007\n")
    reader = NYUDReader(tmp_path, "val")
    assert reader.flavour == "A"
    s = reader.read(0)
    np.testing.assert_array_equal(s["semseg"][0], [255, 0, 39, 1, 2])
    assert s["depth"].dtype == np.float32 and (s["depth"] == 2.5).all()
    assert s["edge"].sum() == 0


# ----------------------------------------------------------------------------------------------------- PASCAL
def test_pascal_round_trip_semseg_parts_sal_normals(pascal_root):
    root = Path(pascal_root)
    ids = (root / "ImageSets/Context/train.txt").read_text().split() + \
        (root / "ImageSets/Context/val.txt").read_text().split()
    for split in ("train", "val"):
        reader = PascalReader(root, split)
        for i, sid in enumerate(reader.ids):
            index = int(sid.split("_")[1]) - 1
            scene = fake_pascal_scene(index, size=(24, 32))
            s = reader.read(i)
            np.testing.assert_array_equal(s["semseg"], scene.semseg)
            assert s["semseg"][0, 0] == 255
            if scene.persons:
                np.testing.assert_array_equal(s["human_parts"], scene.parts)
                assert set(np.unique(s["human_parts"])) == {0, 1, 2, 6}
            else:
                assert (s["human_parts"] == 255).all()  # no person with parts: ignored entirely
            np.testing.assert_array_equal(s["sal"], scene.saliency)
            # normals kept on chair (72) and person (284), ignored on sky (360)
            on_valid = np.isin(scene.context_labels, [72, 284])
            assert (s["normals"][~on_valid] == 255).all()
            assert np.abs(s["normals"][on_valid] - scene.normals[on_valid]).max() <= 1.0 / 255 + 1e-6
            assert s["edge"].dtype == np.float32 and set(np.unique(s["edge"])) <= {0.0, 1.0}
    assert len(ids) == 4


def test_pascal_normals_ids_constant_has_170_classes():
    assert len(PASCAL_NORMALS_CONTEXT_IDS) == 170
    # NYU-compatible examples (chair 72, person 284, wall 440, tvmonitor 427) in; sky 360, aeroplane 2 out
    assert {72, 284, 440, 427} <= PASCAL_NORMALS_CONTEXT_IDS and not {360, 2} & PASCAL_NORMALS_CONTEXT_IDS


def _tiny_pascal_root(root: Path, sid="2008_000001", h=6, w=8, objects=None, sal=None, semseg=None):
    write_rgb(root / "JPEGImages" / f"{sid}.jpg", np.full((h, w, 3), 100, np.uint8))
    write_label_png(root / "semseg" / "VOC12" / f"{sid}.png",
                    np.zeros((h, w), np.uint8) if semseg is None else semseg, palettised=True)
    write_mat_array(root / "pascal-context" / "trainval" / f"{sid}.mat", "LabelMap", np.full((h, w), 72, np.uint16))
    write_parts_anno(root / "human_parts" / f"{sid}.mat", objects or [], imname=sid)
    write_rgb(root / "normals_distill" / f"{sid}.png", np.full((h, w, 3), 128, np.uint8))
    write_label_png(root / "sal_distill" / f"{sid}.png", np.zeros((h, w), np.uint8) if sal is None else sal)
    (root / "ImageSets" / "Context").mkdir(parents=True, exist_ok=True)
    (root / "ImageSets" / "Context" / "train.txt").write_text(f"{sid}\n")


def test_pascal_parts_later_objects_overwrite_and_non_persons_skipped(tmp_path):
    h, w = 6, 8
    m1 = np.zeros((h, w), bool)
    m1[1:5, 1:5] = True
    m2 = np.zeros((h, w), bool)
    m2[3:6, 3:7] = True
    dog = np.zeros((h, w), bool)
    dog[:, 7] = True
    objects = [
        PartObject(15, m1, [("hair", m1), ("lfoot", m1 & (np.arange(h)[:, None] >= 4))], "person"),
        PartObject(12, dog, [("head", dog)], "dog"),  # not a person: its parts must be ignored
        PartObject(15, m2, [("ruarm", m2)], "person"),
        PartObject(15, m1, [], "person"),  # a person without parts: no effect
    ]
    _tiny_pascal_root(tmp_path, objects=objects)
    parsed = read_parts_anno(tmp_path / "human_parts" / "2008_000001.mat")
    assert [o.class_ind for o in parsed] == [15, 12, 15, 15] and [len(o.parts) for o in parsed] == [2, 1, 1, 0]
    parts = PascalReader(tmp_path, "train", tasks=("human_parts",)).read(0)["human_parts"]
    expect = np.zeros((h, w), np.uint8)
    expect[1:5, 1:5] = 1
    expect[4, 1:5] = 6
    expect[3:6, 3:7] = 3  # the later person overwrites
    np.testing.assert_array_equal(parts, expect)


def test_pascal_saliency_threshold_is_strictly_above_half(tmp_path):
    sal = np.array([[0, 127, 128, 255]] * 2, np.uint8)
    _tiny_pascal_root(tmp_path, h=2, w=4, sal=sal)
    s = PascalReader(tmp_path, "train", tasks=("sal",)).read(0)["sal"]
    np.testing.assert_array_equal(s, [[0, 0, 1, 1]] * 2)


def test_pascal_semseg_falls_back_to_pascal_context_folder(tmp_path):
    _tiny_pascal_root(tmp_path)
    (tmp_path / "semseg" / "VOC12" / "2008_000001.png").unlink()
    write_label_png(tmp_path / "semseg" / "pascal-context" / "2008_000001.png", np.full((6, 8), 7, np.uint8))
    s = PascalReader(tmp_path, "train", tasks=("semseg",)).read(0)
    assert (s["semseg"] == 7).all()


def test_edges_from_label_map_match_opencv_skimage_reference():
    lm = np.zeros((6, 7), np.int64)
    lm[:, 4:] = 5  # one vertical boundary between columns 3 and 4
    # |Laplacian| > 0 marks columns 3 and 4; thinning keeps column 3 and erodes the top end.
    # Expected = skimage.morphology.thin(cv2.Laplacian(lm, CV_64F) != 0), computed offline with both libraries.
    expect = np.zeros((6, 7), np.float32)
    expect[1:, 3] = 1
    np.testing.assert_array_equal(label_map_edges(lm), expect)
    assert label_map_edges(np.full((5, 5), 9)).sum() == 0  # a single label has no boundary


# ----------------------------------------------------------------------------------------------- error cases
def _assert_names(exc_info, path_part: str, *words: str):
    msg = str(exc_info.value.args[0] if isinstance(exc_info.value, KeyError) else exc_info.value)
    assert path_part in msg, msg
    for w in words:
        assert w in msg, msg


def test_missing_folder_is_named(nyud_c_root):
    import shutil

    shutil.rmtree(Path(nyud_c_root) / "depth")
    with pytest.raises(FileNotFoundError) as e:
        NYUDReader(nyud_c_root, "train")
    _assert_names(e, "depth", "folder is missing")
    NYUDReader(nyud_c_root, "train", tasks=("semseg",))  # fine without depth when depth is not requested


def test_missing_root_says_how_to_get_it(tmp_path):
    with pytest.raises(FileNotFoundError) as e:
        NYUDReader(tmp_path / "nope", "train")
    _assert_names(e, "nope", "NYUDv2", "degmix-tuning data validate")


def test_listed_id_with_missing_file_is_named(nyud_c_root):
    reader = NYUDReader(nyud_c_root, "train")
    (Path(nyud_c_root) / "normals" / f"{reader.ids[0]}.png").unlink()
    with pytest.raises(FileNotFoundError) as e:
        reader.read(0)
    _assert_names(e, f"normals/{reader.ids[0]}.png", "does not exist")


def test_corrupt_image_is_named(nyud_c_root):
    reader = NYUDReader(nyud_c_root, "train")
    bad = Path(nyud_c_root) / "images" / f"{reader.ids[0]}.png"
    bad.write_bytes(bad.read_bytes()[:60])  # truncated PNG
    with pytest.raises(DataFileError) as e:
        reader.read(0)
    _assert_names(e, f"images/{reader.ids[0]}.png", "corrupt")


def test_label_size_mismatch_is_named(nyud_c_root):
    reader = NYUDReader(nyud_c_root, "train")
    write_npy(Path(nyud_c_root) / "depth" / f"{reader.ids[0]}.npy", np.ones((20, 32), np.float32))
    with pytest.raises(DataFileError) as e:
        reader.read(0)
    _assert_names(e, f"depth/{reader.ids[0]}.npy", "20x32", "24x32")


def test_nyud_semseg_out_of_range_is_named(nyud_c_root):
    reader = NYUDReader(nyud_c_root, "train")
    write_label_png(Path(nyud_c_root) / "segmentation" / f"{reader.ids[0]}.png", np.full((24, 32), 41, np.uint8))
    with pytest.raises(DataFileError) as e:
        reader.read(0)
    _assert_names(e, f"segmentation/{reader.ids[0]}.png", "[41]", "0..40")


def test_nan_depth_is_named(nyud_c_root):
    reader = NYUDReader(nyud_c_root, "train")
    d = np.ones((24, 32), np.float32)
    d[3, 4] = np.nan
    write_npy(Path(nyud_c_root) / "depth" / f"{reader.ids[0]}.npy", d)
    with pytest.raises(DataFileError) as e:
        reader.read(0)
    _assert_names(e, f"depth/{reader.ids[0]}.npy", "1 NaN")


def test_pascal_semseg_out_of_range_is_named(tmp_path):
    seg = np.zeros((6, 8), np.uint8)
    seg[0, 0] = 21
    seg[0, 1] = 255  # void is fine
    _tiny_pascal_root(tmp_path, semseg=seg)
    with pytest.raises(DataFileError) as e:
        PascalReader(tmp_path, "train").read(0)
    _assert_names(e, "semseg/VOC12/2008_000001.png", "[21]", "0..20 and 255")


def test_missing_split_list_lists_available(nyud_c_root):
    with pytest.raises(FileNotFoundError) as e:
        NYUDReader(nyud_c_root, "test")
    _assert_names(e, "gt_sets/test.txt", "train.txt", "val.txt")


def test_unknown_part_name_is_named(tmp_path):
    m = np.ones((6, 8), bool)
    _tiny_pascal_root(tmp_path, objects=[PartObject(15, m, [("tail", m)], "person")])
    with pytest.raises(DataFileError) as e:
        PascalReader(tmp_path, "train", tasks=("human_parts",)).read(0)
    _assert_names(e, "human_parts/2008_000001.mat", "'tail'")


# ------------------------------------------------------------------------------------ the project's renderer
@pytest.mark.parametrize("flavour", ["nyud", "pascal"])
def test_real_renderer_through_writer_and_reader(tmp_path, flavour):
    from degmix_tuning.data.synthetic import render_indoor_scene, render_pascal_scene

    render = render_indoor_scene if flavour == "nyud" else render_pascal_scene
    size = (48, 64)
    root = write_synthetic_dataset(tmp_path / flavour, n=4, flavour=flavour, seed=7, size=size)
    Reader = NYUDReader if flavour == "nyud" else PascalReader
    seen = 0
    for split in ("train", "val"):
        reader = Reader(root, split)
        for i, sid in enumerate(reader.ids):
            index = int(sid) - 1 if flavour == "nyud" else int(sid.split("_")[1]) - 1
            scene = render(7 * 1_000_003 + index, size=size)
            s = reader.read(i)
            np.testing.assert_array_equal(s["semseg"], scene.semseg)
            valid_n = (s["normals"] != 255).all(axis=2)
            assert np.abs(s["normals"][valid_n] - scene.normals[valid_n]).max() <= 1.0 / 255 + 1e-6
            if flavour == "nyud":
                np.testing.assert_array_equal(s["image"], scene.image)
                np.testing.assert_array_equal(s["depth"], scene.depth)
                assert valid_n.all()
                np.testing.assert_array_equal(s["edge"], scene.edge.astype(np.float32))
            else:
                has_parts = any(parts for _, parts in scene.persons)
                expect = scene.parts if has_parts and scene.parts.any() else np.full(size, 255, np.uint8)
                np.testing.assert_array_equal(s["human_parts"], expect)
                np.testing.assert_array_equal(s["sal"], scene.saliency)
                keep = np.isin(scene.context_labels, sorted(PASCAL_NORMALS_CONTEXT_IDS))
                np.testing.assert_array_equal(valid_n, keep)
                np.testing.assert_array_equal(s["edge"], label_map_edges(scene.context_labels))
                assert np.abs(s["image"].astype(int) - scene.image).mean() < 6  # jpeg, lossy
            seen += 1
    assert seen == 4


def test_resolve_root_generates_synthetic_once_into_the_cache(tmp_path, monkeypatch, capsys):
    from degmix_tuning.data import DataConfig, resolve_root, synthetic_cache_dir

    monkeypatch.setenv("DEGMIX_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("DEGMIX_NO_PROGRESS", raising=False)
    cfg = DataConfig(dataset="nyud", synthetic=True, synthetic_n=3, synthetic_size=(32, 40))
    root = resolve_root(cfg)
    shown = capsys.readouterr().out.splitlines()  # not a terminal here: plain lines while rendering
    assert shown == ["[degmix-tuning] rendering 3 synthetic nyud scenes (32x40) (cached for later runs)"] + [
        f"[degmix-tuning] rendered {i}/3 scenes" for i in (1, 2, 3)]
    assert root == synthetic_cache_dir(cfg) and str(root).startswith(str(tmp_path / "cache" / "synthetic"))
    assert NYUDReader(root, "train").flavour == "C" and len(NYUDReader(root, "val")) == 1
    stamp = (root / "synthetic.json").stat().st_mtime_ns
    assert resolve_root(cfg) == root and (root / "synthetic.json").stat().st_mtime_ns == stamp  # cached
    assert [p.name for p in root.parent.iterdir()] == [root.name]  # no temp folders left behind
    other = DataConfig(dataset="nyud", synthetic=True, synthetic_n=3, synthetic_size=(32, 40), synthetic_seed=1)
    assert synthetic_cache_dir(other) != root
    with pytest.raises(FileNotFoundError, match="data.synthetic=true"):
        resolve_root(DataConfig(dataset="pascal", root=str(tmp_path / "missing")))


def test_one_reader_factory_reads_each_dataset_through_its_registered_reader(tmp_path, monkeypatch):
    import json

    from degmix_tuning.data import DataConfig, get_dataset_info, open_reader
    from degmix_tuning.data.readers import reader_class

    nyud = write_synthetic_dataset(tmp_path / "nyud", n=3, flavour="nyud", size=(24, 32), val_fraction=0.34)
    pascal = write_synthetic_dataset(tmp_path / "pascal", n=3, flavour="pascal", size=(24, 32), val_fraction=0.34)
    reader = open_reader(DataConfig(dataset="nyud", format="C"), "train", ("depth",), root=nyud)
    assert type(reader) is NYUDReader and reader.flavour == "C" and reader.tasks == ("depth",) and len(reader) == 2
    assert reader.read(1)["depth"].shape == (24, 32)
    ids = tmp_path / "ids.json"
    ids.write_text(json.dumps([0, 5]))
    reader = open_reader(DataConfig(dataset="pascal", normals_context_ids_file=str(ids)), "val", root=pascal)
    assert type(reader) is PascalReader and reader.tasks == get_dataset_info("pascal").tasks  # tasks=None: all
    assert reader.normals_context_ids.tolist() == [0, 5]  # the config's option reached the reader
    with pytest.raises(KeyError, match="nyud"):
        reader_class("nyudv2")  # unknown names get close matches
    from dataclasses import replace

    from degmix_tuning.data.info import DATASETS_INFO

    plugin = replace(get_dataset_info("nyud"), name="plugin_set", reader="degmix_tuning.data.nyud:NYUDReader")
    monkeypatch.setitem(DATASETS_INFO._items, "plugin_set", plugin)  # a plugin's absolute "module:Class"
    assert reader_class("plugin_set") is NYUDReader
    for name in ("nyud", "pascal"):  # one "how to get it" text per dataset, naming the check and the stand-in
        text = get_dataset_info(name).how_to_get()
        assert f"data validate --dataset {name}" in text and "--synthetic" in text
