"""``python -m yolo_attn`` is the ``yolo-attn`` command."""

from yolo_attn.cli import main

if __name__ == "__main__":
    main()
