"""One parser of Ultralytics device strings, for every place that needs to read one.

Ultralytics accepts ``None`` or ``""`` (automatic), ``"cpu"``, ``"mps"``, a CUDA index (``0``, ``"0"``, ``"cuda:1"``)
and lists (``"0,1,2,3"``, ``"[0, 1]"``). `parse_device` turns any of them into a `DeviceSpec`; the training default
(``amp`` only on a GPU), the evaluation device (the first of a list), the ``--parallel`` slots and the latency device
all read it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DeviceSpec:
    """A parsed Ultralytics device.

    Attributes:
        kind (str): ``"auto"`` (None or ``""``), ``"cpu"``, ``"mps"`` or ``"cuda"``.
        indices (tuple[str, ...]): The CUDA indices as written, in order (empty for ``auto``, ``cpu``, ``mps`` and a
            bare ``"cuda"``).
    """

    kind: str
    indices: tuple[str, ...] = ()

    @property
    def is_gpu(self) -> bool:
        """True when CUDA device(s) are named explicitly (automatic counts as unknown)."""
        return self.kind == "cuda"

    @property
    def first(self) -> str:
        """The first device as an Ultralytics device string: ``""`` (auto), ``"cpu"``, ``"mps"`` or a CUDA index."""
        if self.kind == "cuda":
            return self.indices[0] if self.indices else "0"
        return "" if self.kind == "auto" else self.kind


def parse_device(device: str | int | None) -> DeviceSpec:
    """Parse an Ultralytics device argument.

    Args:
        device (str | int | None): None, ``""``, ``"cpu"``, ``"mps"``, ``"cuda"``, a CUDA index or a list of them
            (``"0,1"``, ``"[0, 1]"``, ``"cuda:0,cuda:1"``).

    Returns:
        (DeviceSpec): The parsed device.

    Raises:
        ValueError: If the text is none of these.
    """
    text = "" if device is None else str(device).strip().lower()
    text = text.replace("[", "").replace("]", "").replace(" ", "").replace("cuda:", "")
    if text in {"", "none"}:
        return DeviceSpec("auto")
    if text in {"cpu", "mps", "cuda"}:
        return DeviceSpec(text)
    indices = tuple(part for part in text.split(",") if part)
    if not indices or not all(part.isdigit() for part in indices):
        raise ValueError(f"device={device!r} is not understood: expected 'cpu', 'mps', a CUDA index or a list '0,1'")
    return DeviceSpec("cuda", indices)
