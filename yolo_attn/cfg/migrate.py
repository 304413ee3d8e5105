"""``yolo-attn migrate``: rewrite a YOLOv8/YOLO11 model YAML written for an attention fork into yolo_attn's rows.

The forks (z1069614715/objectdetection_script's cv-attention, YOLOAir, hand-edited ``tasks.py`` copies) write the
channel count into a block's row and use their own class names: ``[-1, 1, SEAttention, [1024, 16]]``,
``[-1, 1, CoordAttention, [1024, 1024]]``, ``[-1, 1, CBAM, [256]]`` (the scale-n count of a 1024 layer). Ours infer
the channels and take only the hyperparameters: ``[-1, 1, SE, [16]]``, ``[-1, 1, CoordAtt, []]``,
``[-1, 1, CBAM, []]``.

Names: a registered YAML name or alias is ours as written; then `FORK_NAMES` (the fork-only spellings, the one table
of them); then the registered names and aliases case-insensitively (``simam``, ``GAM_Attention`` once ``GAM``
registers that alias). A name Ultralytics resolves is left alone.

Channel args: the layer's input channels are followed through the file (``args[0]`` of Ultralytics' rows, the sum
of a Concat, the input of an Upsample or attention row), unscaled and at every scale of ``scales`` (Ultralytics'
rule: ``ceil(min(c, max_channels) * width / 8) * 8``). A leading arg equal to the input channels in one of those is
dropped, and a second one equal to it too (``[inp, oup]`` of a channel-preserving block). What is left must fit the
block's signature. Rows are neither added nor removed, so every ``from`` stays valid.

The forks' compositions (``C2f_EMA``, ``C3k2_SimAM``, ``C2f_CBAM``: a block in every bottleneck) are ours by name
(`yolo_attn.modules.composed`), and ``C2<B>`` (``C2BRA``, ``C2DA``: B in place of C2PSA's attention) is ``C2PSA_<B>``
where B is registered; each mapping is printed. The tutorials' other channel convention, the input channels followed
by the block's own args (``[-1, 1, CoordAtt, [768, 32]]`` after a 768-channel row: r=32), is read as such when the
second arg is no channel count of the row and the rest fits the block.

Anything else is refused with its reason (`MigrationError`, every refused row listed): a name that is neither ours,
a fork spelling, nor Ultralytics'; a block that changes the channel count; args that do not fit ours.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from yolo_attn import registry
from yolo_attn.cfg.generated import UnknownBlockError, find_block, to_text
from yolo_attn.registry import CHANNEL, BlockSpec
from yolo_attn.registry.rows import yaml_args

#: Fork-only class names -> our YAML name. The block table's names and aliases need no entry (matched directly and
#: case-insensitively); this lists only spellings the forks use that are no registered name.
FORK_NAMES: dict[str, str] = {
    "SEAttention": "SE",  # cv-attention SE.py (External-Attention-pytorch), SEAttention(channel, reduction)
    "SEBlock": "SE",
    "CBAMBlock": "CBAM",  # cv-attention CBAM.py, CBAMBlock(channel, reduction, kernel_size)
    "ECAAttention": "ECA",  # cv-attention ECA.py, ECAAttention(kernel_size)
    "CoordAttention": "CoordAtt",  # CoordAtt(inp, oup, reduction) under its file's name
}

#: Fork signatures ``(c1, c2, ...)`` with the output count second: a row there must keep the channels (c2 == c1).
TWO_CHANNEL_ARGS = frozenset({"CoordAtt", "CoordAttention", "GAM", "GAM_Attention", "GAMAttention"})

PASS_THROUGH = frozenset({"nn.Upsample", "nn.Identity", "Identity"})  # output channels = input channels
HEADS = frozenset({"Detect", "Segment", "Pose", "OBB", "Classify", "WorldDetect", "RTDETRDecoder", "v10Detect"})


class MigrationError(ValueError):
    """Rows of a fork YAML that cannot be mapped; ``reasons`` has one line per refused row."""

    def __init__(self, reasons: list[str]) -> None:
        """Keep the reasons; the message lists them."""
        self.reasons = reasons
        super().__init__("cannot migrate:\n" + "\n".join(f"  {r}" for r in reasons))


@dataclass
class Migration:
    """The result of `migrate`.

    Attributes:
        cfg (dict): The rewritten model dict (keys in the input's order).
        changes (list[str]): One line per changed row.
    """

    cfg: dict
    changes: list[str] = field(default_factory=list)


def migrate(cfg: dict) -> Migration:
    """Rewrite a fork's model dict into yolo_attn rows (see the module docstring).

    Args:
        cfg (dict): Model dict with ``backbone`` and ``head`` rows; left unchanged.

    Returns:
        (Migration): The new dict and the changes made.

    Raises:
        MigrationError: When a row cannot be mapped; nothing is returned then.
    """
    out = yaml.safe_load(yaml.safe_dump(cfg, sort_keys=False))
    rows = out["backbone"] + out["head"]
    systems = _channel_systems(out)
    channels: list[dict[str, int] | None] = []
    changes, refused = [], []
    for i, row in enumerate(rows):
        f, n, name, args = row
        sources = [f] if isinstance(f, int) else list(f)
        inputs = [_at(channels, s, i) if i > 0 or s != -1 else dict.fromkeys(systems, 3) for s in sources]
        spec, why = _resolve(name)
        if why:
            refused.append(f"layer {i} {_row(row)}: {why}")
            channels.append(None)
            continue
        if spec is None:  # Ultralytics' own module
            channels.append(_ultralytics_out(name, args, inputs, systems))
            continue
        new_args, note = (list(args or []), [])
        if spec.kind == CHANNEL:
            new_args, note, problem = _drop_channel_args(spec, list(args or []), inputs[0], name in TWO_CHANNEL_ARGS)
            if problem:
                refused.append(f"layer {i} {_row(row)}: {problem}")
                channels.append(None)
                continue
            channels.append(inputs[0])
        else:
            channels.append(_scaled(args[0], systems) if args and _is_int(args[0]) else None)
        if name != spec.name and name not in spec.aliases:
            note.insert(0, f"{name} is {spec.name}")
        if spec.inner is not None:  # C2f_EMA, C3k2_SimAM, C2BRA: the forks' compositions are ours by name
            note.append(f"{spec.inner.name} inside {spec.parent.__name__} ({spec.name}), the host's args")
        if note:
            new = [f, n, spec.name if name not in spec.names else name, new_args]
            changes.append(f"layer {i}: {_row(row)} -> {_row(new)} ({'; '.join(note)})")
            row[2], row[3] = new[2], new_args
    if refused:
        raise MigrationError(refused)
    return Migration(out, changes)


def migrate_file(src: str | Path, out: str | Path | None = None, echo: Callable[[str], None] = print) -> Path:
    """Migrate a fork YAML file and write the result (``sort_keys=False``); nothing is written when a row is refused.

    Args:
        src (str | Path): The fork's model YAML.
        out (str | Path | None): Output file; default ``{stem}-migrated.yaml`` next to ``src``.
        echo (Callable[[str], None]): Where each change is reported.

    Returns:
        (Path): The file written.

    Raises:
        MigrationError: When a row cannot be mapped.
    """
    src = Path(src)
    result = migrate(yaml.safe_load(src.read_text()))
    for line in result.changes or ["no row needed a change"]:
        echo(line)
    out = Path(out) if out is not None else src.with_name(f"{src.stem}-migrated.yaml")
    header = f"Migrated by `yolo-attn migrate` from {src.name}: {len(result.changes)} rows changed."
    out.write_text(to_text(result.cfg, header))
    return out


def _resolve(name: str) -> tuple[BlockSpec | None, str | None]:
    """(our block, None), (None, None) for Ultralytics' own module, or (None, why it cannot be mapped)."""
    from yolo_attn.integration.lookup import resolves_in_ultralytics

    if registry.get(name) is not None:
        return registry.get(name), None
    if resolves_in_ultralytics(name):
        return None, None
    target = FORK_NAMES.get(name) or _fork_c2psa(name)
    if target is not None:
        spec = registry.get(target)
        return (spec, None) if spec else (None, f"{name} maps to {target}, which is not registered")
    try:
        return find_block(name), None
    except UnknownBlockError as e:
        return None, f"{name} is neither a yolo_attn block, a known fork spelling, nor an Ultralytics module ({e})"


def _fork_c2psa(name: str) -> str | None:
    """The forks' C2PSA variants (``C2BRA``, ``C2DA``): ``C2<B>`` is B in place of C2PSA's attention, ``C2PSA_<B>``."""
    match = re.fullmatch(r"C2([A-Za-z][A-Za-z0-9_]*)", name)
    if match is None or registry.get(f"C2PSA_{match[1]}") is None:
        return None
    return registry.get(f"C2PSA_{match[1]}").name


def _drop_channel_args(
    spec: BlockSpec, args: list, c_in: dict[str, int] | None, two: bool = False
) -> tuple[list, list[str], str]:
    """Drop leading channel counts; return (args, notes, problem) with ``problem`` empty when the rest fits.

    ``two``: the fork's signature is ``(c1, c2, ...)``, so a second arg is the output count and must equal the first.
    """
    positional, keywords = yaml_args(args)
    notes: list[str] = []
    if positional and _is_int(positional[0]) and c_in is not None:
        where = [k for k, v in c_in.items() if v == positional[0]]
        if (
            where
            and two
            and len(positional) > 1
            and positional[1] != positional[0]
            and not _own_args(spec, positional, c_in)
        ):
            return (
                args,
                notes,
                (
                    f"{positional[0]} -> {positional[1]} channels: ours keep the channel count "
                    f"(input {positional[0]}); add a Conv row for the change"
                ),
            )
        if where:
            dropped = 2 if len(positional) > 1 and positional[1] == positional[0] else 1
            notes.append(f"dropped {positional[:dropped]}: the input channels ({', '.join(where)}), now inferred")
            positional = positional[dropped:]
    elif positional and _is_int(positional[0]) and positional[0] >= 8 and c_in is None:
        return args, notes, f"the input channels here are unknown, so {positional[0]} cannot be told from a setting"
    try:
        spec.bind(positional, keywords)
    except TypeError as e:
        return args, notes, f"args {positional} do not fit {spec.expected()}: {e}"
    return positional + ([keywords] if keywords else []), notes, ""


def _own_args(spec: BlockSpec, positional: list, c_in: dict[str, int]) -> bool:
    """Whether ``[c1, *own]`` is the tutorials' convention: input channels, then the block's own args.

    CoordAtt ``[768, 32]`` is r=32, not ``[c1, c2]``: the second arg is no channel count here and the rest fits.
    """
    if positional[1] in c_in.values():
        return False
    try:
        spec.bind(positional[1:], {})
    except TypeError:
        return False
    return True


def _channel_systems(cfg: dict) -> dict[str, tuple[float, float]]:
    """Channel systems to follow: ``unscaled`` and each scale as (width, max_channels)."""
    systems = {"unscaled": (1.0, math.inf)}
    for key, value in (cfg.get("scales") or {}).items():
        systems[f"scale {key}"] = (float(value[1]), float(value[2]))
    if "width_multiple" in cfg:
        systems["width_multiple"] = (float(cfg["width_multiple"]), math.inf)
    return systems


def _scaled(c2: int, systems: dict[str, tuple[float, float]]) -> dict[str, int]:
    return {k: c2 if k == "unscaled" else math.ceil(min(c2, mc) * w / 8) * 8 for k, (w, mc) in systems.items()}


def _ultralytics_out(name: str, args: list, inputs: list, systems: dict) -> dict[str, int] | None:
    """Output channels of an Ultralytics row, per system (None where unknown)."""
    if name == "Concat":
        return None if any(c is None for c in inputs) else {k: sum(c[k] for c in inputs) for k in systems}
    if name in PASS_THROUGH:
        return inputs[0]
    if name in HEADS or not args or not _is_int(args[0]):
        return None
    return _scaled(args[0], systems)


def _at(channels: list, source: int, i: int) -> dict[str, int] | None:
    j = source if source >= 0 else i + source
    return channels[j] if 0 <= j < len(channels) else None


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _row(row: list) -> str:
    return yaml.safe_dump(row, default_flow_style=True, sort_keys=False, width=10**6).strip()
