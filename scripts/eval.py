"""Twin of `yolo-attn eval`, with the same options: `python scripts/eval.py --help`."""

import sys

from yolo_attn.cli import main

if __name__ == "__main__":
    main(["eval", *sys.argv[1:]])
