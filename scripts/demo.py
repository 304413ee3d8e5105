"""Twin of `yolo-attn demo`, with the same options: `python scripts/demo.py --help`."""

import sys

from yolo_attn.cli import main

if __name__ == "__main__":
    main(["demo", *sys.argv[1:]])
