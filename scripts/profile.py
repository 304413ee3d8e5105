"""Twin of `yolo-attn profile`, with the same options: `python scripts/profile.py --help`."""

import sys

from yolo_attn.cli import main

if __name__ == "__main__":
    main(["profile", *sys.argv[1:]])
