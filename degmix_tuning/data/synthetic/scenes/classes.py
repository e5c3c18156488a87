"""Which label ids each kind of synthetic surface carries, for the NYUD-like, PASCAL-like and street scenes.

Recipes name what they build ("chair", "pillow", "sky"); a `LabelSet` turns that name into (semseg id, context id).
- NYUD: semseg = the NYUD-40 index (`NYUD_CLASSES`), context = semseg + 1 (0 stays "unlabeled").
- PASCAL: semseg = the VOC index (`PASCAL_CLASSES`, 0 = background), context = the PASCAL-Context LabelMap id
  of the 459-class list (1-based, alphabetical: aeroplane 2, bird 25, car 59, person 284, sky 360, wall 440, ...).
- Cityscapes: semseg = the trainId (0..18, 255 for the classes Cityscapes does not evaluate), context = the labelId
  that the official gtFine `*_labelIds.png` stores (road 7, car 26, ego vehicle 1, ...).
"""

from __future__ import annotations

from ...cityscapes import LABEL_IDS, LABEL_TO_TRAIN_ID
from ...info import NYUD_CLASSES, PASCAL_CLASSES

# PASCAL-Context (459 classes) LabelMap ids of every surface the synthetic scenes use.
CONTEXT_IDS: dict[str, int] = {
    "aeroplane": 2, "bag": 9, "ball": 10, "bed": 18, "bicycle": 23, "bird": 25, "book": 33, "bottle": 34,
    "box": 37, "building": 44, "bus": 45, "cabinet": 46, "car": 59, "cat": 65, "ceiling": 68, "chair": 72,
    "cloth": 80, "counter": 96, "cow": 98, "curtain": 105, "dog": 113, "door": 115, "fence": 144, "floor": 158,
    "fridge": 170, "grass": 187, "ground": 189, "horse": 207, "light": 232, "mat": 244, "mountain": 259,
    "paper": 273, "person": 284, "picture": 287, "pillow": 290, "plant": 293, "pottedplant": 308, "road": 324,
    "rock": 326, "sand": 334, "sheep": 347, "shelves": 349, "sidewalk": 354, "sky": 360, "snow": 366,
    "sofa": 368, "table": 397, "towel": 412, "trash bin": 418, "tree": 420, "tvmonitor": 427, "wall": 440,
    "water": 445, "window": 454, "window blinds": 455, "wood": 458,
}

# recipe name -> NYUD-40 class name
_NYUD_NAMES: dict[str, str] = {
    "wall": "wall", "floor": "floor", "ceiling": "ceiling", "cabinet": "cabinet", "bed": "bed", "pillow": "pillow",
    "chair": "chair", "sofa": "sofa", "table": "table", "desk": "desk", "door": "door", "window": "window",
    "bookshelf": "bookshelf", "picture": "picture", "counter": "counter", "blinds": "blinds", "shelves": "shelves",
    "curtain": "curtain", "dresser": "dresser", "night stand": "night stand", "box": "box", "lamp": "lamp",
    "television": "television", "whiteboard": "whiteboard", "refrigerator": "refridgerator",
    "floor mat": "floor mat", "books": "books", "person": "person", "bag": "bag", "towel": "towel",
    "clothes": "clothes", "paper": "paper", "ball": "otherprop", "vase": "otherprop", "bin": "otherprop",
    "bottle": "otherprop", "plant": "otherprop", "stool": "otherfurniture", "column": "otherstructure",
}

# recipe name -> (VOC class name, Context class name)
_PASCAL_NAMES: dict[str, tuple[str, str]] = {
    "wall": ("background", "wall"), "floor": ("background", "floor"), "ceiling": ("background", "ceiling"),
    "cabinet": ("background", "cabinet"), "bed": ("background", "bed"), "pillow": ("background", "pillow"),
    "chair": ("chair", "chair"), "sofa": ("sofa", "sofa"), "table": ("diningtable", "table"),
    "desk": ("diningtable", "table"), "door": ("background", "door"), "window": ("background", "window"),
    "bookshelf": ("background", "shelves"), "picture": ("background", "picture"),
    "counter": ("background", "counter"), "blinds": ("background", "window blinds"),
    "shelves": ("background", "shelves"), "curtain": ("background", "curtain"),
    "dresser": ("background", "cabinet"), "night stand": ("background", "cabinet"), "box": ("background", "box"),
    "lamp": ("background", "light"), "television": ("tvmonitor", "tvmonitor"),
    "whiteboard": ("background", "picture"), "refrigerator": ("background", "fridge"),
    "floor mat": ("background", "mat"), "books": ("background", "book"), "person": ("person", "person"),
    "bag": ("background", "bag"), "towel": ("background", "towel"), "clothes": ("background", "cloth"),
    "paper": ("background", "paper"), "ball": ("background", "ball"), "vase": ("background", "bottle"),
    "bin": ("background", "trash bin"), "bottle": ("bottle", "bottle"), "plant": ("pottedplant", "pottedplant"),
    "stool": ("chair", "chair"), "column": ("background", "wall"),
    # outdoor surfaces and VOC objects
    "sky": ("background", "sky"), "grass": ("background", "grass"), "ground": ("background", "ground"),
    "road": ("background", "road"), "sidewalk": ("background", "sidewalk"), "sand": ("background", "sand"),
    "snow": ("background", "snow"), "tree": ("background", "tree"), "building": ("background", "building"),
    "mountain": ("background", "mountain"), "fence": ("background", "fence"), "rock": ("background", "rock"),
    "car": ("car", "car"), "bus": ("bus", "bus"), "bicycle": ("bicycle", "bicycle"), "bird": ("bird", "bird"),
    "cat": ("cat", "cat"), "dog": ("dog", "dog"), "sheep": ("sheep", "sheep"), "cow": ("cow", "cow"),
    "horse": ("horse", "horse"),
}

# recipe name -> Cityscapes label name (helpers/labels.py); ego vehicle and static are void (trainId 255)
_CITYSCAPES_NAMES: dict[str, str] = {
    **{name: name for name in ("road", "sidewalk", "building", "wall", "fence", "pole", "traffic light",
                               "traffic sign", "vegetation", "terrain", "sky", "person", "rider", "car", "truck",
                               "bus", "motorcycle", "bicycle", "ego vehicle", "static")},
}

# surfaces that are never salient / never "things"
STUFF = frozenset({"wall", "floor", "ceiling", "sky", "grass", "ground", "road", "sidewalk", "sand", "snow",
                   "tree", "building", "mountain", "fence", "rock", "column", "window", "door", "curtain",
                   "blinds", "floor mat", "whiteboard", "picture", "shelves"})


class LabelSet:
    """Maps a recipe name to its (semseg id, context id) for one dataset flavour."""

    def __init__(self, name: str, table: dict[str, tuple[int, int]]):
        self.name, self.table = name, table

    def __call__(self, recipe_name: str) -> tuple[int, int]:
        try:
            return self.table[recipe_name]
        except KeyError:
            raise KeyError(f"{self.name} scenes have no label for surface {recipe_name!r}; "
                           f"known: {', '.join(sorted(self.table))}") from None


NYUD_LABELS = LabelSet("indoor (NYUD)", {
    k: (NYUD_CLASSES.index(v), NYUD_CLASSES.index(v) + 1) for k, v in _NYUD_NAMES.items()
})
PASCAL_LABELS = LabelSet("pascal", {
    k: (PASCAL_CLASSES.index(voc), CONTEXT_IDS[ctx]) for k, (voc, ctx) in _PASCAL_NAMES.items()
})
CITYSCAPES_LABELS = LabelSet("cityscapes", {
    k: (int(LABEL_TO_TRAIN_ID[LABEL_IDS[v]]), LABEL_IDS[v]) for k, v in _CITYSCAPES_NAMES.items()
})
