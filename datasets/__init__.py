"""COCO-format detection data: dataset, transforms, checks and COCO evaluation.

    build_dataset(image_set, args)      -> CocoDetection ('train', 'val', 'test', ...) of --data / --coco_path
    get_coco_api_from_dataset(dataset)  -> pycocotools COCO ground truth
    verify_images(dataset)              -> decode every image; DatasetError listing bad ones
    DatasetError                        -> raised for dataset problems; message meant for people
"""
import torch.utils.data

from .coco import CocoDetection, build as build_coco
from .errors import DatasetError, user_message
from .verify import verify_images

__all__ = [
    "CocoDetection",
    "DatasetError",
    "build_dataset",
    "get_coco_api_from_dataset",
    "user_message",
    "verify_images",
]

SUPPORTED_DATASET_FILES = ("coco",)


def get_coco_api_from_dataset(dataset):
    """The pycocotools COCO ground truth behind a CocoDetection, looking through Subsets."""
    inner = dataset
    while isinstance(inner, torch.utils.data.Subset):
        inner = inner.dataset
    coco = getattr(inner, "coco", None)
    if coco is None:
        raise TypeError(f"{type(inner).__name__} has no COCO ground truth (expected a CocoDetection "
                        f"or a Subset of one)")
    return coco


def build_dataset(image_set: str, args, data=None):
    """Build `image_set` of the dataset named by `args.dataset_file` (only 'coco': COCO-format data, which
    every format of datasets/formats becomes in memory); `data`: the run's run_data.RunData."""
    dataset_file = getattr(args, "dataset_file", None) or "coco"
    if dataset_file == "coco":
        return build_coco(image_set, args, data)
    raise DatasetError(f"dataset_file {dataset_file!r} is not supported; use 'coco' and point --data at the "
                       f"dataset (COCO, YOLO, Pascal VOC or LabelMe).")
