"""Run the CPU demo: synthetic COCO data, YOLOv8n vs CBAM vs ECA, two seeds, pycocotools mAP, table and plot.

Same as ``yolo-attn demo``. No download; a few minutes on 2 CPU cores. Example::

    python scripts/demo.py                   # results in runs/demo/exp*
    python scripts/demo.py --out runs/demo/exp   # resume an interrupted demo
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

os.environ.setdefault("YOLO_OFFLINE", "1")  # before the first ultralytics import, which `import yolo_attn` makes
os.environ.setdefault("YOLO_AUTOINSTALL", "0")

from yolo_attn.offline import install_local_font


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: new runs/demo/exp*)")
    args = parser.parse_args()
    install_local_font()
    from yolo_attn.demo import run_demo

    run_demo(args.out)


if __name__ == "__main__":
    main()
