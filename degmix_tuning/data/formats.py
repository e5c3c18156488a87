"""Read and write every on-disk file of the NYUD-v2 / PASCAL-Context multi-task and the Cityscapes layouts.

The dataset readers and the synthetic writer both go through these functions, so a file the writer produces is
read back by exactly the code that reads the real archives. Every failure raises with the file's path and what is
wrong with it: `FileNotFoundError` for a missing file, `DataFileError` (a `ValueError`) for an unreadable one.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")


class DataFileError(ValueError):
    """A dataset file exists but cannot be used; the message names the file and the problem."""

    def __init__(self, path: str | Path, problem: str | None = None):
        if problem is None:  # rebuilt from its message alone: a DataLoader worker's re-raise, or unpickling
            from ..errors import _strip_worker_traceback

            path, _, problem = _strip_worker_traceback(str(path)).partition(": ")
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


def _require_file(path: str | Path) -> Path:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: file does not exist")
    return path


def _open_image(path: str | Path) -> Image.Image:
    path = _require_file(path)
    try:
        img = Image.open(path)
        img.load()  # decode now so truncated files fail here, with their name
    except Exception as exc:  # PIL raises OSError, SyntaxError, ValueError, ... for corrupt files
        raise DataFileError(path, f"unreadable or corrupt image file ({type(exc).__name__}: {exc})") from exc
    return img


def image_size(path: str | Path) -> tuple[int, int]:
    """(H, W) of an image file from its header alone: lets a run check every eval image's size at startup."""
    path = _require_file(path)
    try:
        with Image.open(path) as img:
            return img.size[1], img.size[0]
    except Exception as exc:  # noqa: BLE001 - PIL raises many types for corrupt headers
        raise DataFileError(path, f"unreadable or corrupt image file ({type(exc).__name__}: {exc})") from exc


# --------------------------------------------------------------------------------------------------- images (RGB)
def read_rgb(path: str | Path) -> np.ndarray:
    """RGB photo (jpg/png) -> uint8 [H, W, 3]. Greyscale photos are expanded to 3 channels (a lossless decode)."""
    img = _open_image(path)
    if img.mode not in ("RGB", "L", "P", "RGBA", "CMYK", "YCbCr", "I;16", "I"):
        raise DataFileError(path, f"unsupported image mode {img.mode!r} for an RGB photo")
    if img.mode in ("I;16", "I"):
        raise DataFileError(path, f"16-bit image (mode {img.mode!r}) where an 8-bit RGB photo was expected")
    if img.mode == "RGBA":
        alpha = np.asarray(img)[..., 3]
        if (alpha != 255).any():
            raise DataFileError(path, "RGBA image with transparent pixels; expected an opaque RGB photo")
    return np.asarray(img.convert("RGB"), dtype=np.uint8).copy()


def read_rgb_label(path: str | Path) -> np.ndarray:
    """3-channel label image (normals PNG/JPG) -> uint8 [H, W, 3]; refuses greyscale, which would be a wrong file."""
    img = _open_image(path)
    if img.mode != "RGB":
        raise DataFileError(path, f"expected a 3-channel RGB label image, got PIL mode {img.mode!r}")
    return np.asarray(img, dtype=np.uint8).copy()


def write_rgb(path: str | Path, array: np.ndarray, jpeg_quality: int = 95) -> Path:
    """uint8 [H, W, 3] -> png (lossless) or jpg (lossy, quality `jpeg_quality`), chosen by the extension."""
    path = Path(path)
    arr = np.asarray(array)
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"{path}: write_rgb needs uint8 [H, W, 3], got {arr.dtype} {arr.shape}")
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.fromarray(arr)
    if path.suffix.lower() in (".jpg", ".jpeg"):
        img.save(path, format="JPEG", quality=jpeg_quality)
    elif path.suffix.lower() == ".png":
        img.save(path, format="PNG", compress_level=1)
    else:
        raise ValueError(f"{path}: unknown image extension {path.suffix!r}; use .png or .jpg")
    return path


# ---------------------------------------------------------------------------------------- single-channel label PNG
def read_label_png(path: str | Path) -> np.ndarray:
    """Single-channel PNG -> 2-D array of the stored values (palette indices for palettised VOC maps)."""
    img = _open_image(path)
    if img.mode in ("L", "P"):
        return np.asarray(img, dtype=np.uint8).copy()
    if img.mode == "1":  # bilevel PNG: white is 255, as when PIL converts it to 'L'
        return np.asarray(img.convert("L"), dtype=np.uint8).copy()
    if img.mode in ("I;16", "I;16B", "I"):
        return np.asarray(img).astype(np.int32)
    raise DataFileError(path, f"expected a single-channel label PNG (mode L or P), got PIL mode {img.mode!r}")


def voc_palette() -> list[int]:
    """The standard PASCAL VOC colour map (class id bits spread over the RGB high bits), 256 x RGB flattened."""
    palette = []
    for label in range(256):
        r = g = b = 0
        c = label
        for shift in range(7, -1, -1):
            r |= ((c >> 0) & 1) << shift
            g |= ((c >> 1) & 1) << shift
            b |= ((c >> 2) & 1) << shift
            c >>= 3
        palette += [r, g, b]
    return palette


def write_label_png(path: str | Path, array: np.ndarray, palettised: bool = False) -> Path:
    """uint8 [H, W] -> single-channel PNG ('L'), or palettised ('P', VOC colours) like VOC SegmentationClass."""
    path = Path(path)
    arr = np.asarray(array)
    if arr.ndim != 2:
        raise ValueError(f"{path}: write_label_png needs a 2-D array, got shape {arr.shape}")
    if arr.dtype != np.uint8:
        if arr.min() < 0 or arr.max() > 255:
            raise ValueError(f"{path}: label values {arr.min()}..{arr.max()} do not fit in uint8")
        arr = arr.astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    if palettised:
        img = Image.new("P", (arr.shape[1], arr.shape[0]))
        img.frombytes(np.ascontiguousarray(arr).tobytes())
        img.putpalette(voc_palette())
    else:
        img = Image.fromarray(np.ascontiguousarray(arr))
    img.save(path, format="PNG", compress_level=1)
    return path


# --------------------------------------------------------------------------------------- 16-bit PNG (disparity)
def read_uint16_png(path: str | Path) -> np.ndarray:
    """16-bit single-channel PNG -> uint16 [H, W]; an 8-bit PNG is refused (it cannot hold Cityscapes disparities,
    so it is a preview or a converted copy, not the official file)."""
    img = _open_image(path)
    if img.mode not in ("I;16", "I;16B", "I;16L", "I"):
        raise DataFileError(path, f"expected a 16-bit single-channel PNG, got PIL mode {img.mode!r}")
    arr = np.asarray(img)
    if arr.dtype.kind in "iu" and arr.size and (arr.min() < 0 or arr.max() > 65535):
        raise DataFileError(path, f"values {arr.min()}..{arr.max()} do not fit a 16-bit PNG")
    return arr.astype(np.uint16)


def write_uint16_png(path: str | Path, array: np.ndarray) -> Path:
    """uint16 [H, W] -> 16-bit greyscale PNG (PIL mode 'I;16'), as the Cityscapes disparity maps are stored."""
    path = Path(path)
    arr = np.asarray(array)
    if arr.ndim != 2 or arr.dtype != np.uint16:
        raise ValueError(f"{path}: write_uint16_png needs uint16 [H, W], got {arr.dtype} {arr.shape}")
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.ascontiguousarray(arr)).save(path, format="PNG", compress_level=1)
    return path


def decode_disparity_png(raw: np.ndarray) -> np.ndarray:
    """Cityscapes disparity PNG values -> float64 disparity in pixels: d = (p - 1) / 256 for p > 0 (cityscapesScripts
    README); p = 0 is an invalid measurement and p = 1 is d = 0 (infinitely far): both come back as 0."""
    p = np.asarray(raw).astype(np.float64)
    return np.where(p > 1, (p - 1.0) / 256.0, 0.0)


def encode_disparity_png(disparity: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """float disparity (pixels) -> uint16 p = round(256 d + 1) where `valid`, else 0 (invalid). Disparities
    the 16 bits cannot hold (d >= 256 px) are refused."""
    d = np.asarray(disparity, dtype=np.float64)
    valid = np.asarray(valid, dtype=bool) & np.isfinite(d) & (d > 0)
    p = np.where(valid, np.rint(d * 256.0 + 1.0), 0.0)
    if p.max(initial=0.0) > 65535:
        raise ValueError(f"disparity {d[valid].max():.3f} px does not fit the 16-bit encoding (< 256 px)")
    return p.astype(np.uint16)


# --------------------------------------------------------------------------------------- camera calibration json
def read_stereo_camera(path: str | Path) -> tuple[float, float]:
    """(baseline metres, fx pixels) of a Cityscapes `camera/*.json` (`extrinsic.baseline`, `intrinsic.fx`): the two
    numbers that turn disparity into depth."""
    path = _require_file(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataFileError(path, f"unreadable camera JSON ({type(exc).__name__}: {exc})") from exc
    values = []
    for section, key in (("extrinsic", "baseline"), ("intrinsic", "fx")):
        part = data.get(section) if isinstance(data, dict) else None
        value = part.get(key) if isinstance(part, dict) else None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
            raise DataFileError(path, f"camera JSON needs a positive number at {section}.{key}, got {value!r}")
        values.append(float(value))
    return values[0], values[1]


def write_stereo_camera(path: str | Path, baseline: float, fx: float, fy: float, u0: float, v0: float,
                        extrinsic: dict | None = None) -> Path:
    """A Cityscapes-style camera JSON: `extrinsic` {baseline, pitch, roll, x, y, yaw, z}, `intrinsic` {fx, fy, u0,
    v0}; lengths in metres, angles in radians."""
    path = Path(path)
    ext = {"baseline": float(baseline), "pitch": 0.0, "roll": 0.0, "x": 0.0, "y": 0.0, "yaw": 0.0, "z": 0.0}
    ext.update({k: float(v) for k, v in (extrinsic or {}).items()})
    body = {"extrinsic": ext, "intrinsic": {"fx": float(fx), "fy": float(fy), "u0": float(u0), "v0": float(v0)}}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(body, indent=2) + "\n")
    return path


# ------------------------------------------------------------------------------------------------------------ npy
def read_npy(path: str | Path) -> np.ndarray:
    path = _require_file(path)
    try:
        return np.load(path, allow_pickle=False)
    except Exception as exc:
        raise DataFileError(path, f"unreadable .npy file ({type(exc).__name__}: {exc})") from exc


def write_npy(path: str | Path, array: np.ndarray) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, np.ascontiguousarray(array), allow_pickle=False)
    return path


# ------------------------------------------------------------------------------------------------------------ mat
def _loadmat(path: str | Path) -> dict:
    from scipy.io import loadmat

    path = _require_file(path)
    try:
        return loadmat(path)
    except NotImplementedError as exc:  # MATLAB v7.3 (HDF5) files
        raise DataFileError(path, f"MATLAB v7.3/HDF5 .mat files are not supported by scipy.io.loadmat: {exc}") from exc
    except Exception as exc:
        raise DataFileError(path, f"unreadable .mat file ({type(exc).__name__}: {exc})") from exc


def read_mat_array(path: str | Path, key: str) -> np.ndarray:
    """One numeric array stored under `key` in a .mat file (e.g. `LabelMap`, `segmentation`, `depth`)."""
    data = _loadmat(path)
    if key not in data:
        keys = sorted(k for k in data if not k.startswith("__"))
        raise DataFileError(path, f"no variable {key!r} in the .mat file (it has {keys})")
    arr = data[key]
    if not isinstance(arr, np.ndarray) or arr.dtype.kind not in "biuf":
        raise DataFileError(path, f"variable {key!r} is not a numeric array")
    return arr


def write_mat_array(path: str | Path, key: str, array: np.ndarray) -> Path:
    from scipy.io import savemat

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    savemat(path, {key: np.asarray(array)}, do_compression=True)
    return path


# -------------------------------------------------------------------------------- PASCAL-Part `anno` struct (.mat)
@dataclass
class PartObject:
    """One object of a PASCAL-Part annotation: VOC class id, instance mask and named part masks."""

    class_ind: int
    mask: np.ndarray  # bool/uint8 [H, W]
    parts: list[tuple[str, np.ndarray]] = field(default_factory=list)  # (PASCAL-Part name e.g. 'luarm', mask)
    class_name: str = ""


def read_parts_anno(path: str | Path) -> list[PartObject]:
    """Objects of a PASCAL-Part .mat: `anno[0][0][1][0]` is the object list; per object o, `o[1][0][0]` is the
    class id, `o[2]` the instance mask and `o[3][0]` the parts, each `[name, mask]`."""
    data = _loadmat(path)
    if "anno" not in data:
        raise DataFileError(path, f"no 'anno' struct (PASCAL-Part format); variables: "
                                  f"{sorted(k for k in data if not k.startswith('__'))}")
    try:
        objects = data["anno"][0][0][1]
        objects = objects[0] if objects.size else []
        out = []
        for o in objects:
            class_ind = int(np.asarray(o[1]).ravel()[0])
            mask = np.asarray(o[2])
            parts_arr = o[3]
            parts = []
            if isinstance(parts_arr, np.ndarray) and parts_arr.size:
                for p in parts_arr[0]:
                    parts.append((str(np.asarray(p[0]).ravel()[0]), np.asarray(p[1])))
            name = str(np.asarray(o[0]).ravel()[0]) if np.asarray(o[0]).size else ""
            out.append(PartObject(class_ind=class_ind, mask=mask, parts=parts, class_name=name))
    except (IndexError, TypeError, ValueError, KeyError) as exc:
        raise DataFileError(path, f"'anno' struct does not have the PASCAL-Part nesting "
                                  f"anno[0][0][1][0] -> objects ({type(exc).__name__}: {exc})") from exc
    return out


def write_parts_anno(path: str | Path, objects: list[PartObject], imname: str = "") -> Path:
    """Write a PASCAL-Part-style `anno` struct (fields imname, objects{class, class_ind, mask, parts{part_name,
    mask}}) with the nesting `read_parts_anno` indexes."""
    from scipy.io import savemat

    path = Path(path)
    part_dtype = [("part_name", "O"), ("mask", "O")]
    obj_dtype = [("class", "O"), ("class_ind", "O"), ("mask", "O"), ("parts", "O")]
    objs = np.zeros((1, len(objects)), dtype=obj_dtype)
    for i, o in enumerate(objects):
        if o.parts:
            parts = np.zeros((1, len(o.parts)), dtype=part_dtype)
            for j, (name, mask) in enumerate(o.parts):
                parts[0, j] = (name, np.asarray(mask, dtype=np.uint8))
        else:
            parts = np.zeros((0, 0))
        objs[0, i] = (o.class_name, np.array([[o.class_ind]], dtype=np.uint8), np.asarray(o.mask, dtype=np.uint8),
                      parts)
    anno = np.zeros((1, 1), dtype=[("imname", "O"), ("objects", "O")])
    anno[0, 0] = (imname, objs)
    path.parent.mkdir(parents=True, exist_ok=True)
    savemat(path, {"anno": anno}, do_compression=True)
    return path


# ------------------------------------------------------------------------------------- label value encodings
def decode_normals_png(rgb: np.ndarray) -> np.ndarray:
    """uint8 RGB -> float32 normals in [-1, 1]: n = 2 v / 255 - 1."""
    return (2.0 * rgb.astype(np.float32) / 255.0 - 1.0).astype(np.float32)


def encode_normals_png(normals: np.ndarray) -> np.ndarray:
    """float normals in [-1, 1] -> uint8 RGB: round((n + 1) / 2 * 255)."""
    return np.clip(np.rint((np.asarray(normals, dtype=np.float64) + 1.0) / 2.0 * 255.0), 0, 255).astype(np.uint8)


def find_with_extension(folder: Path, stem: str, extensions: tuple[str, ...]) -> Path | None:
    for ext in extensions:
        p = folder / f"{stem}{ext}"
        if p.is_file():
            return p
    return None


# ------------------------------------------------------------------------------------------ split lists and checks
def read_split_ids(path: str | Path) -> list[str]:
    """One id per line; blank lines ignored; duplicates are an error (they would silently re-weight samples)."""
    path = Path(path)
    if not path.is_file():
        siblings = sorted(p.name for p in path.parent.glob("*.txt")) if path.parent.is_dir() else []
        hint = f" (split files present: {', '.join(siblings)})" if siblings else ""
        raise FileNotFoundError(f"{path}: split list does not exist{hint}")
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataFileError(path, f"unreadable split list ({exc})") from exc
    ids = [ln.strip() for ln in lines if ln.strip()]
    seen: set[str] = set()
    dupes = sorted({i for i in ids if i in seen or seen.add(i)})
    if dupes:
        raise DataFileError(path, f"split list repeats ids {dupes[:5]}{' ...' if len(dupes) > 5 else ''}")
    if not ids:
        raise DataFileError(path, "split list is empty")
    return ids


def check_label_size(path: str | Path, label: np.ndarray, image_shape: tuple[int, int], what: str) -> None:
    if tuple(label.shape[:2]) != tuple(image_shape):
        raise DataFileError(path, f"{what} label is {label.shape[0]}x{label.shape[1]} (HxW) but the image is "
                                  f"{image_shape[0]}x{image_shape[1]}; labels must have the image's size")
