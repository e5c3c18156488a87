"""Facts about each supported dataset that the model, the losses and the metrics need."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..registry import Registry
from ..tasks import get_task


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    tasks: tuple[str, ...]  # every task the dataset has labels for
    default_tasks: tuple[str, ...]  # the task set the recipe trains by default
    crop_size: tuple[int, int]  # (H, W) train crop == eval pad size
    num_classes: dict[str, int] = field(default_factory=dict)  # overrides TaskSpec.num_outputs
    edge_pos_weight: float = 0.95
    edge_tolerance: float = 0.0075  # SEISM maxDist, fraction of the image diagonal
    class_names: dict[str, tuple[str, ...]] = field(default_factory=dict)
    reader: str = ""  # "module:Class" of the file reader, ".module" = inside degmix_tuning.data (readers.reader_class)
    get_it: str = ""  # where the real archive comes from and how it must be unpacked (every missing-data message)

    def how_to_get(self) -> str:
        """The one "how to get the data" text: the archive, the layout, the check, the synthetic stand-in."""
        return (f"{self.get_it}, check it with `degmix-tuning data validate --dataset {self.name} --root <root>`, "
                "or use the synthetic stand-in (--synthetic, data.synthetic=true).")

    def num_outputs(self, task: str) -> int:
        if task not in self.tasks:
            raise KeyError(f"dataset {self.name!r} has no labels for task {task!r}; it has {', '.join(self.tasks)}")
        return self.num_classes.get(task, get_task(task).num_outputs)

    def task_channels(self, tasks: tuple[str, ...] | list[str]) -> dict[str, int]:
        return {t: self.num_outputs(t) for t in tasks}

    def loss_overrides(self, task: str) -> dict:
        return {"pos_weight": self.edge_pos_weight} if task == "edge" else {}


NYUD_CLASSES = (
    "wall", "floor", "cabinet", "bed", "chair", "sofa", "table", "door", "window", "bookshelf", "picture", "counter",
    "blinds", "desk", "shelves", "curtain", "dresser", "pillow", "mirror", "floor mat", "clothes", "ceiling", "books",
    "refridgerator", "television", "paper", "towel", "shower curtain", "box", "whiteboard", "person", "night stand",
    "toilet", "sink", "lamp", "bathtub", "bag", "otherstructure", "otherfurniture", "otherprop",
)
PASCAL_CLASSES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)
HUMAN_PART_CLASSES = ("background", "head", "torso", "uarm", "larm", "uleg", "lleg")
# the 19 evaluated Cityscapes classes in trainId order (cityscapesScripts helpers/labels.py)
CITYSCAPES_CLASSES = (
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign", "vegetation", "terrain",
    "sky", "person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle",
)

DATASETS_INFO: Registry[DatasetInfo] = Registry("dataset")
DATASETS_INFO.register("nyud", DatasetInfo(
    name="nyud", tasks=("semseg", "depth", "normals", "edge"), default_tasks=("semseg", "depth"),
    crop_size=(425, 560), num_classes={"semseg": 40}, edge_pos_weight=0.8, edge_tolerance=0.011,
    class_names={"semseg": NYUD_CLASSES}, reader=".nyud:NYUDReader",
    get_it=("Get the multi-task NYUD-v2 archive (ATRC/InvPT 'NYUDv2.tar.gz' = flavour C, or MTI-Net 'NYUD_MT.tgz' = "
            "flavour B) and unpack it so that <root>/{images,segmentation,depth,normals,edge} and "
            "<root>/gt_sets/train.txt exist"),
))
DATASETS_INFO.register("pascal", DatasetInfo(
    name="pascal", tasks=("semseg", "human_parts", "sal", "normals", "edge"),
    default_tasks=("semseg", "human_parts", "sal", "normals"), crop_size=(512, 512),
    num_classes={"semseg": 21, "human_parts": 7, "sal": 2}, edge_pos_weight=0.95, edge_tolerance=0.0075,
    class_names={"semseg": PASCAL_CLASSES, "human_parts": HUMAN_PART_CLASSES}, reader=".pascal:PascalReader",
    get_it=("Get the PASCAL-Context multi-task archive (ATRC/InvPT 'PASCALContext.tar.gz' or MTI-Net 'PASCAL_MT.tgz') "
            "and unpack it so that <root>/{JPEGImages,semseg,human_parts,sal_distill,normals_distill,pascal-context} "
            "and <root>/ImageSets/Context/train.txt exist"),
))

# crop_size is also the resolution every Cityscapes sample is read at (data/cityscapes.py): 256x512 by default
DATASETS_INFO.register("cityscapes", DatasetInfo(
    name="cityscapes", tasks=("semseg", "depth"), default_tasks=("semseg", "depth"), crop_size=(256, 512),
    num_classes={"semseg": 19}, class_names={"semseg": CITYSCAPES_CLASSES}, reader=".cityscapes:CityscapesReader",
    get_it=("Get leftImg8bit_trainvaltest.zip, gtFine_trainvaltest.zip, disparity_trainvaltest.zip and "
            "camera_trainvaltest.zip from cityscapes-dataset.com (free registration) and unzip them into one folder "
            "so that <root>/{leftImg8bit,gtFine,disparity,camera}/{train,val}/<city>/ exist"),
))


def get_dataset_info(name: str) -> DatasetInfo:
    return DATASETS_INFO.get(name)
