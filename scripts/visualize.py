"""Twin of `yolo-attn visualize`, with the same options: `python scripts/visualize.py --help`."""

import sys

from yolo_attn.cli import main

if __name__ == "__main__":
    main(["visualize", *sys.argv[1:]])
