"""The embedded demos: each runs end to end on synthetic data drawn on the fly, on a CPU, with nothing to download.

- `detect`: ``yolo-attn demo``, YOLOv8n vs two attention variants fine-tuned from the same pretrained weights.
- `classify`: ``yolo-attn demo --task classify``, the classification counterpart on a synthetic ImageFolder set.
- `tasks`: ``yolo-attn demo --task {segment,pose,obb}``, the same protocol (pretrain once, fine-tune all from it) on
  synthetic polygons, keypoints and rotated boxes, evaluated by the task's own Ultralytics validator.
- `pretrain`: what the fine-tuning demos share, the baseline's one resumable pretraining and the printed report.
- `timeseries`: a small CNN with spatial attention on sensor windows (``python scripts/timeseries_attention.py``).

The modules are imported on demand by the CLI, so ``import yolo_attn`` does not pay for them.
"""
