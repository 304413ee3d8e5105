"""Twin of `yolo-attn subset`, with the same options: `python scripts/subset.py --help`."""

import sys

from yolo_attn.cli import main

if __name__ == "__main__":
    main(["subset", *sys.argv[1:]])
