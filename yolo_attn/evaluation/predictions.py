"""Run an Ultralytics YOLO model over images and return its boxes as COCO-format detections."""

from __future__ import annotations

from typing import Any


def result_to_detections(result: Any, image_id: int | str, class_to_category_id: list[int]) -> list[dict[str, Any]]:
    """Convert one Ultralytics ``Results`` to COCO detections.

    Args:
        result (ultralytics.engine.results.Results): Prediction for one image; ``result.boxes.xyxy`` is (N, 4) in
            original-image pixels, ``conf`` and ``cls`` are (N,).
        image_id (int | str): COCO id of the image.
        class_to_category_id (list[int]): COCO category id of each model class (index = class).

    Returns:
        (list[dict]): ``{"image_id", "category_id", "bbox": [x, y, w, h], "score"}`` per box, boxes rounded to 3
            decimals and scores to 5, in the model's order (highest score first).
    """
    boxes = result.boxes
    xyxy = boxes.xyxy.cpu().double().numpy()
    scores = boxes.conf.cpu().double().numpy()
    classes = boxes.cls.cpu().long().numpy()
    detections = []
    for (x1, y1, x2, y2), score, cls in zip(xyxy.tolist(), scores.tolist(), classes.tolist(), strict=True):
        detections.append(
            {
                "image_id": image_id,
                "category_id": int(class_to_category_id[cls]),
                "bbox": [round(x1, 3), round(y1, 3), round(x2 - x1, 3), round(y2 - y1, 3)],
                "score": round(score, 5),
            }
        )
    return detections


def predict_detections(
    model: Any,
    images: dict[str, int | str],
    class_to_category_id: list[int],
    imgsz: int = 640,
    batch: int = 16,
    conf: float = 0.001,
    iou: float = 0.7,
    max_det: int = 300,
    **predict_kwargs: Any,
) -> list[dict[str, Any]]:
    """Predict every image and return all detections in COCO format, ordered by image id.

    Args:
        model (ultralytics.YOLO): The detector.
        images (dict[str, int | str]): Absolute image path -> COCO image id.
        class_to_category_id (list[int]): COCO category id of each model class (index = class).
        imgsz (int): Inference size.
        batch (int): Inference batch size.
        conf (float): Confidence threshold.
        iou (float): NMS IoU threshold.
        max_det (int): Most boxes per image.
        **predict_kwargs (Any): Passed on to ``model.predict`` (e.g. ``device``).

    Returns:
        (list[dict]): COCO results list.
    """
    paths = sorted(images, key=lambda path: (str(images[path]), path))
    per_image: dict[str, list[dict[str, Any]]] = {}
    stream = model.predict(
        source=paths,
        imgsz=imgsz,
        batch=batch,
        conf=conf,
        iou=iou,
        max_det=max_det,
        stream=True,
        verbose=False,
        save=False,
        **predict_kwargs,
    )
    for result in stream:
        per_image[result.path] = result_to_detections(result, images[result.path], class_to_category_id)
    missing = [path for path in paths if path not in per_image]
    if missing:
        raise RuntimeError(f"The model returned no result for {len(missing)} image(s), e.g. {missing[0]}")
    return [detection for path in paths for detection in per_image[path]]
