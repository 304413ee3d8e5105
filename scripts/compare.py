"""Twin of `yolo-attn compare`, with the same options: `python scripts/compare.py --help`."""

import sys

from yolo_attn.cli import main

if __name__ == "__main__":
    main(["compare", *sys.argv[1:]])
