"""Write the synthetic COCO-format data set: python scripts/make_synthetic.py datasets/synthetic-coco."""

from __future__ import annotations

import argparse
from pathlib import Path

from yolo_attn.data import make_synthetic_coco


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out", type=Path, help="output folder (COCO 2017 layout)")
    parser.add_argument("--n-train", type=int, default=96)
    parser.add_argument("--n-val", type=int, default=32)
    parser.add_argument("--imgsz", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    root = make_synthetic_coco(args.out, n_train=args.n_train, n_val=args.n_val, imgsz=args.imgsz, seed=args.seed)
    print(root)


if __name__ == "__main__":
    main()
