"""Model YAMLs: the shipped files, the standard and named sites, generation by name, editing, and migration.

- `model_yamls/`: the YAMLs the package ships (``yolov8-cbam.yaml``, ...), found by name like Ultralytics' own.
- `sites`: where a block goes in a base model (standard sites per block kind, named sites ``p3``...``sppf``).
- `generated`: a model YAML for any registered block by bare name (``yolo11n-ema.yaml``).
- `edit`: `insert_after`, which inserts a row and rewires every later ``from`` index.
- `yaml_command`: the rows that ``yolo-attn yaml`` writes.
- `migrate`: fork YAMLs (channel args, fork spellings) rewritten to this package's contract.
"""

from pathlib import Path

#: The folder of the shipped model YAMLs (the repository's top-level ``model_yamls`` links here).
MODEL_YAMLS_DIR = Path(__file__).resolve().parent / "model_yamls"
