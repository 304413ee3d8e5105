"""Build a small, reproducible Ultralytics YOLO data set from a COCO-layout data set, with a COCO ground truth to match.

Input, the standard COCO 2017 layout::

    coco/annotations/instances_train2017.json
    coco/annotations/instances_val2017.json
    coco/train2017/*.jpg
    coco/val2017/*.jpg

Output::

    out/data.yaml                        Ultralytics data YAML (path, train, val, names, coco_gt)
    out/images/{train,val}/<file_name>   symlinks to the source images (copies where the file system refuses links)
    out/labels/{train,val}/<stem>.txt    YOLO labels: "class cx cy w h", normalised, classes 0..K-1
    out/annotations/instances_val.json   COCO ground truth of exactly the chosen val images and classes

Rules, all deterministic (the same arguments give byte-identical files):

- Classes. ``classes=None`` keeps every category. Chosen categories are ordered by their COCO id, whatever order the
  caller names them in, and get YOLO classes 0..K-1 in that order. For the full COCO category list this is exactly
  Ultralytics' ``coco91_to_coco80_class`` mapping.
- Candidate images. An image may be chosen if it has at least one annotation (crowd or not) of a chosen class, or no
  annotation at all in the source file. The latter are the true negatives COCO itself keeps (48 in val2017, about
  1,000 in train2017); keeping them means that ``classes=None`` with all images reproduces COCO exactly. Images whose
  only objects belong to classes not chosen are left out: those objects would be unlabelled look-alikes.
- Sampling. ``n_train`` / ``n_val`` images are drawn without replacement from the candidates sorted by id, with
  ``random.Random(f"{seed}:{split}")``, then sorted by id. ``None`` takes every candidate.
- Crowd boxes (``iscrowd=1``) are left out of the YOLO labels, as Ultralytics' ``convert_coco`` does, and kept in the
  COCO ground truth, where COCOeval ignores detections that fall on them.
- The ground truth keeps the source category ids, so detections are written back with the ids a COCO user expects.
  Its ``categories`` list is in YOLO class order, and the extra top-level key ``yolo_class_to_category_id`` (a list,
  index = YOLO class) records the mapping; :func:`yolo_class_to_category_id` reads it. ``data.yaml`` points to the
  file with the key ``coco_gt`` (relative to ``path``); ``yolo_attn.evaluation`` uses it.

YOLO labels are written by Ultralytics' own ``ultralytics.data.converter.convert_coco``: the subset's annotations are
first written, with category ids renumbered 1..K, to a temporary ``instances_{train,val}.json``, which the converter
turns into labels with ``cls91to80=False`` (class = id - 1). So crowd handling, box normalisation and number format are
exactly Ultralytics'. The converter does not select classes or images, nor write a ground truth or data YAML; that
filtering is what this module adds.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import tempfile
from pathlib import Path
from typing import Any

import yaml

SOURCE_SPLITS: dict[str, str] = {"train": "train2017", "val": "val2017"}
GT_RELATIVE_PATH = "annotations/instances_val.json"
MAPPING_KEY = "yolo_class_to_category_id"


def _load_json(path: Path) -> dict[str, Any]:
    """Read a COCO annotation file, raising FileNotFoundError with the expected layout when it is missing."""
    if not path.is_file():
        raise FileNotFoundError(
            f"COCO annotation file {path} not found. Expected the COCO 2017 layout: "
            "annotations/instances_train2017.json, annotations/instances_val2017.json, train2017/, val2017/"
        )
    return json.loads(path.read_text(encoding="utf-8"))


def _write_json(path: Path, payload: dict[str, Any]) -> None:
    """Write JSON with sorted keys and fixed separators, so equal content gives equal bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, sort_keys=True, separators=(",", ":")) + "\n", encoding="utf-8")


def select_categories(categories: list[dict[str, Any]], classes: list[str] | None) -> list[dict[str, Any]]:
    """Return the chosen categories in COCO id order.

    Args:
        categories (list[dict]): The ``categories`` list of a COCO file.
        classes (list[str] | None): Category names to keep, None for all.

    Returns:
        (list[dict]): Chosen category dicts sorted by ``id``; position = YOLO class.

    Raises:
        ValueError: If ``classes`` is empty or names a category the file does not have.
    """
    by_id = sorted(categories, key=lambda c: c["id"])
    if classes is None:
        return by_id
    if isinstance(classes, str) or not classes:
        raise ValueError(f"classes must be a non-empty list of category names or None, got {classes!r}")
    valid = [c["name"] for c in by_id]
    unknown = [name for name in classes if name not in valid]
    if unknown:
        raise ValueError(f"Unknown class name(s) {unknown}. Valid names: {valid}")
    wanted = set(classes)
    return [c for c in by_id if c["name"] in wanted]


def _candidate_image_ids(coco: dict[str, Any], category_ids: set[int]) -> list[int]:
    """Return ids of images with an annotation of a chosen category or with no annotation at all, sorted."""
    annotated, chosen = set(), set()
    for annotation in coco.get("annotations", []):
        annotated.add(annotation["image_id"])
        if annotation["category_id"] in category_ids:
            chosen.add(annotation["image_id"])
    return sorted(image["id"] for image in coco["images"] if image["id"] in chosen or image["id"] not in annotated)


def sample_image_ids(candidates: list[int], n: int | None, seed: int, split: str, source: str) -> list[int]:
    """Draw n ids without replacement, reproducibly, and return them sorted.

    Args:
        candidates (list[int]): Candidate image ids, sorted.
        n (int | None): How many to draw; None for all.
        seed (int): Seed shared by the splits; each split draws from ``random.Random(f"{seed}:{split}")``.
        split (str): ``train`` or ``val``.
        source (str): Name of the source split, for error messages.

    Returns:
        (list[int]): The chosen ids, sorted.

    Raises:
        ValueError: If n is not a positive int or exceeds the number of candidates.
    """
    if n is None:
        return list(candidates)
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n_{split}={n!r} must be a positive int (or None for every candidate image)")
    if n > len(candidates):
        raise ValueError(
            f"n_{split}={n} but {source} has only {len(candidates)} images with the chosen classes "
            "(or with no annotation at all). Ask for fewer images or more classes."
        )
    return sorted(random.Random(f"{seed}:{split}").sample(candidates, n))


def _prepare_output(out: Path) -> None:
    """Create ``out``, or clear the previous subset in it; refuse a non-empty folder that holds no subset."""
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"Output {out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        if not (out / "data.yaml").is_file():
            raise FileExistsError(
                f"Output folder {out} is not empty and holds no previous subset (no data.yaml). "
                "Choose a new or empty folder."
            )
        for name in ("images", "labels", "annotations"):
            shutil.rmtree(out / name, ignore_errors=True)
        (out / "data.yaml").unlink()
    out.mkdir(parents=True, exist_ok=True)


def _link_or_copy(source: Path, target: Path) -> None:
    """Symlink ``target`` to ``source``; copy the bytes when the file system refuses symlinks."""
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.symlink(source, target)
    except OSError:
        shutil.copyfile(source, target)


def _write_yolo_labels(subsets: dict[str, dict[str, Any]], out: Path) -> None:
    """Write YOLO labels for each split with Ultralytics' ``convert_coco``.

    Args:
        subsets (dict[str, dict]): Split name -> COCO dict whose category ids are already renumbered 1..K.
        out (Path): Subset root; labels go to ``out/labels/<split>``.
    """
    from ultralytics.data.converter import convert_coco

    with tempfile.TemporaryDirectory(prefix="yolo_attn_subset_") as tmp:
        json_dir, converted = Path(tmp) / "annotations", Path(tmp) / "converted"
        for split, coco in subsets.items():
            _write_json(json_dir / f"instances_{split}.json", coco)  # converter names the folder after "<split>"
        convert_coco(labels_dir=str(json_dir), save_dir=str(converted), cls91to80=False)
        for split in subsets:
            target = out / "labels" / split
            target.parent.mkdir(parents=True, exist_ok=True)
            source = converted / "labels" / split
            if source.is_dir():  # absent when no chosen image has an annotation
                shutil.move(str(source), str(target))
            else:
                target.mkdir()


def yolo_class_to_category_id(gt: dict[str, Any]) -> list[int]:
    """Return the COCO category id of each YOLO class (index = class) recorded in a subset's ground truth.

    Args:
        gt (dict): A ground-truth COCO dict. Files written by :func:`build_subset` hold the key
            ``yolo_class_to_category_id``; other COCO files fall back to their categories sorted by id, the order
            :func:`build_subset` and Ultralytics' COCO conversion both use.

    Returns:
        (list[int]): Category id per YOLO class.
    """
    if MAPPING_KEY in gt:
        return [int(i) for i in gt[MAPPING_KEY]]
    return sorted(int(c["id"]) for c in gt["categories"])


def build_subset(
    coco: str | Path,
    classes: list[str] | None,
    n_train: int | None,
    n_val: int | None,
    seed: int,
    out: str | Path,
    *,
    copy_images: bool = False,
) -> Path:
    """Build a YOLO-layout subset of a COCO-layout data set (rules in the module docstring).

    Args:
        coco (str | Path): Root of the COCO-layout source (annotations/, train2017/, val2017/).
        classes (list[str] | None): Category names to keep, None for all.
        n_train (int | None): Number of training images, None for all candidates.
        n_val (int | None): Number of validation images, None for all candidates.
        seed (int): Sampling seed.
        out (str | Path): Output folder: new, empty, or holding a previous subset (which is replaced).
        copy_images (bool): Copy images instead of symlinking them.

    Returns:
        (Path): Path of the written ``out/data.yaml``.

    Raises:
        FileNotFoundError: If an annotation file, image folder or chosen image is missing.
        ValueError: For unknown class names, or more images than there are candidates.
        FileExistsError: If ``out`` is a non-empty folder that holds no previous subset.

    Examples:
        >>> data_yaml = build_subset("datasets/coco", ["person", "car"], 2000, 500, seed=0, out="datasets/coco-pc")
    """
    coco, out = Path(coco).resolve(), Path(out).resolve()
    sources = {
        split: _load_json(coco / "annotations" / f"instances_{name}.json") for split, name in SOURCE_SPLITS.items()
    }
    for name in SOURCE_SPLITS.values():
        if not (coco / name).is_dir():
            raise FileNotFoundError(f"Image folder {coco / name} not found (expected the COCO 2017 layout)")
    train_names = sorted((c["id"], c["name"]) for c in sources["train"]["categories"])
    if train_names != sorted((c["id"], c["name"]) for c in sources["val"]["categories"]):
        raise ValueError(f"{coco}: train and val annotation files list different categories")
    chosen = select_categories(sources["val"]["categories"], classes)
    category_ids = [int(c["id"]) for c in chosen]
    yolo_id = {category_id: index + 1 for index, category_id in enumerate(category_ids)}  # converter subtracts 1

    picked: dict[str, list[dict[str, Any]]] = {}
    renumbered: dict[str, dict[str, Any]] = {}
    kept_annotations: dict[str, list[dict[str, Any]]] = {}
    for split, n in (("train", n_train), ("val", n_val)):
        source = sources[split]
        candidates = _candidate_image_ids(source, set(category_ids))
        ids = set(sample_image_ids(candidates, n, seed, split, f"{SOURCE_SPLITS[split]}"))
        images = sorted((im for im in source["images"] if im["id"] in ids), key=lambda im: im["id"])
        annotations = sorted(
            (a for a in source.get("annotations", []) if a["image_id"] in ids and a["category_id"] in yolo_id),
            key=lambda a: a["id"],
        )
        for image in images:
            path = coco / SOURCE_SPLITS[split] / image["file_name"]
            if not path.is_file():
                raise FileNotFoundError(f"Image {path} (id {image['id']}) listed in the annotations is missing")
        picked[split], kept_annotations[split] = images, annotations
        renumbered[split] = {
            "images": images,
            "annotations": [{**a, "category_id": yolo_id[a["category_id"]]} for a in annotations],
            "categories": [{**c, "id": yolo_id[c["id"]]} for c in chosen],
        }

    _prepare_output(out)
    for split, images in picked.items():
        (out / "images" / split).mkdir(parents=True, exist_ok=True)
        for image in images:
            target = out / "images" / split / image["file_name"]
            source = coco / SOURCE_SPLITS[split] / image["file_name"]
            if copy_images:
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source, target)
            else:
                _link_or_copy(source, target)
    _write_yolo_labels(renumbered, out)

    description = (
        f"yolo_attn subset of {coco}: classes={[c['name'] for c in chosen]}, "
        f"n_train={len(picked['train'])}, n_val={len(picked['val'])}, seed={seed}"
    )
    _write_json(
        out / GT_RELATIVE_PATH,
        {
            "info": {"description": description, "source": str(coco / "annotations" / "instances_val2017.json")},
            "images": picked["val"],
            "annotations": kept_annotations["val"],
            "categories": chosen,
            MAPPING_KEY: category_ids,
        },
    )
    data = {
        "path": str(out),
        "train": "images/train",
        "val": "images/val",
        "names": {index: c["name"] for index, c in enumerate(chosen)},
        "coco_gt": GT_RELATIVE_PATH,
    }
    data_yaml = out / "data.yaml"
    data_yaml.write_text(f"# {description}\n" + yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return data_yaml
