"""Transfer pretrained weights by aligning model YAMLs, not by key: each source layer's tensors go to its own layer.

Ultralytics copies a checkpoint tensor into the model when the key (``model.12.cv1.conv.weight``) and the shape match.
A YAML that inserts a row shifts every later index, so the tensors after it are dropped, or land in a stranger that
happens to have the same shape. Here the two model YAMLs (the checkpoint's ``model.yaml`` and the target's) decide
which layer is which:

1. Each row gets a canonical name (``CA_C2f`` stands where ``C2f`` stood; ``DySample []`` stands where
   ``nn.Upsample [None, 2, "nearest"]`` stood, name and args); channel-preserving attention rows are
   *transparent*: they may be inserted or removed on either side without moving anything else.
2. The other rows are aligned by longest common subsequence on (canonical name, repeats, args). The head's class count
   (its first arg) is left out, since fine-tuning changes it.
3. A matched row truly corresponds only if each of its inputs (``from``, followed through transparent rows to the
   nearest other row) corresponds to the source row's input, in order. A layer whose input ancestry differs does not
   correspond, whatever its shapes, so a different family stops matching after its first difference.
4. Attention rows correspond when they follow corresponding layers through the same chain of attention rows.

This module is pure (torch and the block table). `yolo_attn.integration.loading` applies the plan inside
Ultralytics' ``BaseModel.load``.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from yolo_attn import registry
from yolo_attn.modules.identity_start import AttentionBlock

INPUT = -1  # the image, as the source of the first row
ENV_IDENTITY_START = "YOLO_ATTN_IDENTITY_START"
YAML_IDENTITY_START = "identity_start"
LAYER_KEY = re.compile(r"^model\.(\d+)\.(.+)$")
FALSE_WORDS, TRUE_WORDS = {"0", "false", "no", "off"}, {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class Row:
    """One model YAML row with its input ancestry resolved.

    Attributes:
        index (int): Layer index.
        name (str): Module name as written (``CBAM``, ``CA_C2f``, ``nn.Upsample``).
        key (tuple): What must be equal for two rows to align: canonical name, repeats, args (as text).
        inputs (tuple[int, ...]): Absolute indices read by this row (``INPUT`` for the image), in order.
        transparent (bool): A channel-preserving attention row, skipped by the alignment.
    """

    index: int
    name: str
    key: tuple
    inputs: tuple[int, ...]
    transparent: bool

    def describe(self) -> str:
        """Return ``"layer 10 CBAM []"`` style text for logs."""
        return f"layer {self.index} {self.name} {self.key[2]}"


def model_rows(d: dict, transparent: set[str], canonical: dict[str, str]) -> list[Row]:
    """Return the backbone and head rows of a model YAML dict, with canonical keys and absolute inputs.

    Args:
        d (dict): Model YAML dict (``backbone``, ``head``; ``nc``), e.g. ``model.yaml`` of an Ultralytics model.
        transparent (set[str]): Names of channel-preserving rows that may be inserted anywhere (our attention blocks).
        canonical (dict[str, str | Callable]): Name -> the name it stands in for (``{"CA_C2f": "C2f"}``), or a
            function of the row's args returning the name and args of the row it stands in for (a block that replaces
            a row of another module, such as DySample for ``nn.Upsample``).

    Returns:
        (list[Row]): One entry per layer.

    Raises:
        ValueError: If the dict has no layer rows or a row is not ``[from, repeats, module, args]``.
    """
    raw = list(d.get("backbone") or []) + list(d.get("head") or [])
    if not raw:
        raise ValueError(f"model YAML has no 'backbone'/'head' rows to align; keys: {sorted(d)}")
    rows = []
    for i, row in enumerate(raw):
        if not isinstance(row, (list, tuple)) or len(row) != 4:
            raise ValueError(f"model YAML layer {i}: expected [from, repeats, module, args], got {row!r}")
        f, n, name, args = row
        name = str(name)
        args = [None if a == "None" else a for a in args or []]  # parse_model reads YAML's string 'None' as None
        if i == len(raw) - 1 and args:  # the task head: its first arg is the class count, which fine-tuning changes
            args[0] = "nc"
        sources = f if isinstance(f, (list, tuple)) else [f]
        inputs = tuple(INPUT if (s < 0 and i + s < 0) else (i + s if s < 0 else s) for s in map(int, sources))
        canon = canonical.get(name, name)
        if callable(canon):
            canon, args = canon(args)
        elif name in canonical and args and isinstance(args[-1], dict):  # C3k2_EMA's own args: no part of its host's
            args = args[:-1]
        key = (canon.removeprefix("torch."), n, repr(args))
        rows.append(Row(i, name, key, inputs, name in transparent))
    return rows


def _base(rows: list[Row], i: int) -> int:
    """Follow ``i`` back through transparent rows to the nearest other row (or ``INPUT``)."""
    while i != INPUT and rows[i].transparent:
        i = rows[i].inputs[0]
    return i


def _chain(rows: list[Row], i: int) -> tuple[int, tuple]:
    """Return a transparent row's base and the keys of the transparent rows from the base to it, in order."""
    keys = []
    while i != INPUT and rows[i].transparent:
        keys.append(rows[i].key)
        i = rows[i].inputs[0]
    return i, tuple(reversed(keys))


def _lcs(a: list[Row], b: list[Row]) -> dict[int, int]:
    """Align two row lists by longest common subsequence of their keys; return {b index: a index} of matched rows."""
    n, m = len(a), len(b)
    table = [[0] * (m + 1) for _ in range(n + 1)]
    for i in range(n - 1, -1, -1):
        for j in range(m - 1, -1, -1):
            same = a[i].key == b[j].key
            table[i][j] = table[i + 1][j + 1] + 1 if same else max(table[i + 1][j], table[i][j + 1])
    matches, i, j = {}, 0, 0
    while i < n and j < m:
        if a[i].key == b[j].key and table[i][j] == table[i + 1][j + 1] + 1:
            matches[b[j].index] = a[i].index
            i, j = i + 1, j + 1
        elif table[i + 1][j] >= table[i][j + 1]:
            i += 1
        else:
            j += 1
    return matches


@dataclass
class Alignment:
    """Which target layer each source layer corresponds to, and where the YAMLs first differ.

    Attributes:
        layer_map (dict[int, int]): Source layer index -> target layer index, for truly corresponding layers.
        first_difference (str | None): The first target layer (in index order) that does not correspond, and why.
        source (list[Row]): Source rows.
        target (list[Row]): Target rows.
    """

    layer_map: dict[int, int]
    first_difference: str | None
    source: list[Row]
    target: list[Row]


def align(source: dict, target: dict, transparent: set[str], canonical: dict[str, str]) -> Alignment:
    """Align the layers of two model YAML dicts.

    Args:
        source (dict): The checkpoint's model YAML dict.
        target (dict): The model YAML dict of the model being loaded into.
        transparent (set[str]): Names of channel-preserving rows that may be inserted or removed anywhere.
        canonical (dict[str, str]): Name -> the name it stands in for, e.g. ``{"CA_C2f": "C2f"}`` (see `model_rows`).

    Returns:
        (Alignment): The correspondence and the first difference.
    """
    src, tgt = model_rows(source, transparent, canonical), model_rows(target, transparent, canonical)
    matches = _lcs([r for r in src if not r.transparent], [r for r in tgt if not r.transparent])
    corr: dict[int, int] = {INPUT: INPUT}  # target -> source
    first: str | None = None
    last_source = -1
    for row in (r for r in tgt if not r.transparent):
        i = matches.get(row.index)
        reason = None
        if i is None:
            candidate = next((r for r in src[last_source + 1 :] if not r.transparent), None)
            if candidate is None:
                reason = "it has no counterpart in the source (the source has no more layers)"
            elif candidate.key[0] != row.key[0]:
                reason = f"module differs: source {candidate.describe()}"
            else:
                reason = f"repeats/args differ: source {candidate.describe()} (repeats {candidate.key[1]})"
        else:
            theirs = tuple(_base(src, s) for s in src[i].inputs)
            ours = tuple(corr.get(_base(tgt, t)) for t in row.inputs)
            if ours != theirs:
                reason = (
                    f"inputs differ: it reads target layers {[_base(tgt, t) for t in row.inputs]}, "
                    f"source {src[i].describe()} reads {list(theirs)}"
                )
            else:
                corr[row.index] = i
                last_source = i
        if reason and first is None:
            first = f"target {row.describe()} (repeats {row.key[1]}): {reason}"
    if first is None:
        extra = [r for r in src if not r.transparent and r.index not in set(corr.values())]
        if extra:
            first = f"source {extra[0].describe()} has no counterpart in the target"
    # attention rows: same block chain after corresponding layers
    src_chains: dict[tuple, list[int]] = {}
    for r in src:
        if r.transparent:
            base, keys = _chain(src, r.index)
            src_chains.setdefault((base, keys), []).append(r.index)
    for r in tgt:
        if r.transparent:
            base, keys = _chain(tgt, r.index)
            if base in corr and src_chains.get((corr[base], keys)):
                corr[r.index] = src_chains[(corr[base], keys)].pop(0)
    layer_map = {s: t for t, s in corr.items() if t != INPUT}
    return Alignment(dict(sorted(layer_map.items())), first, src, tgt)


def rename_keys(state_keys: list[str], layer_map: dict[int, int]) -> tuple[dict[str, str], dict[str, str]]:
    """Map source state-dict keys to target keys through a layer map.

    Args:
        state_keys (list[str]): Source keys, e.g. ``model.12.cv1.conv.weight``.
        layer_map (dict[int, int]): Source layer -> target layer.

    Returns:
        renamed (dict[str, str]): Source key -> target key, for keys of corresponding layers (others are unchanged).
        orphans (dict[str, str]): Source key -> why it has no target key (its layer has no counterpart).
    """
    renamed, orphans = {}, {}
    for k in state_keys:
        match = LAYER_KEY.match(k)
        if match is None:
            renamed[k] = k
        elif int(match[1]) in layer_map:
            renamed[k] = f"model.{layer_map[int(match[1])]}.{match[2]}"
        else:
            orphans[k] = f"layer {match[1]} has no corresponding target layer"
    return renamed, orphans


def outermost_attention_blocks(model: nn.Module) -> dict[str, nn.Module]:
    """Return the attention blocks of a model that are not inside another attention block, by module path.

    An attention block is an `AttentionBlock` or an instance of a registered channel-preserving block (a user's block
    that starts as the identity through the generic mix). CBAM counts once (its channel and spatial gates are inside
    it); a CoordAtt inside a CA_C2f bottleneck counts.

    Args:
        model (nn.Module): Any module.

    Returns:
        (dict[str, nn.Module]): Module path (``model.10``) -> block.
    """
    channel = tuple(registry.channel_blocks().values())
    found: dict[str, nn.Module] = {}
    for name, module in model.named_modules():
        if isinstance(module, (AttentionBlock, *channel)) and not any(name.startswith(f"{p}.") for p in found):
            found[name] = module
    return found


def identity_start_enabled(d: dict | None) -> bool:
    """Whether new attention blocks start as the identity: the YAML key ``identity_start``, else the environment.

    Args:
        d (dict | None): The target model's YAML dict; ``identity_start: false`` there opts out (and travels inside
            checkpoints). Without the key, ``YOLO_ATTN_IDENTITY_START=0`` opts out. The default is on.

    Returns:
        (bool): True to start new blocks as the identity.

    Raises:
        ValueError: If the YAML key or the environment variable is not a boolean.
    """
    value = (d or {}).get(YAML_IDENTITY_START)
    if value is not None:
        if not isinstance(value, bool):
            raise ValueError(f"model YAML key '{YAML_IDENTITY_START}' must be true or false, got {value!r}")
        return value
    text = os.environ.get(ENV_IDENTITY_START, "1").strip().lower()
    if text not in FALSE_WORDS | TRUE_WORDS:
        raise ValueError(f"{ENV_IDENTITY_START} must be 1 or 0 (true/false), got {text!r}")
    return text in TRUE_WORDS


@dataclass
class TransferReport:
    """What a pretrained-weights load transferred, where, and how the new attention blocks started.

    Attributes:
        source (str): The checkpoint's name (file name) or ``"module"``.
        source_tensors (int): State-dict entries of the source.
        transferred (int): Source entries that landed in the target.
        target_tensors (int): State-dict entries of the target.
        layer_map (list[list[int]]): ``[source layer, target layer]`` pairs of corresponding layers.
        not_transferred (dict[str, str]): Source key -> why it did not land.
        first_difference (str | None): The first layer where the two models differ, and why.
        new_blocks (dict[str, str]): Target path -> class of each attention block that received nothing.
        new_tensors (int): State-dict entries of the new blocks.
        identity_start (bool): Whether the new blocks were started as the identity.
        dropped_blocks (dict[str, str]): Source path -> class of attention blocks with no target counterpart.
        aligned (bool): False when the two models have the same plain rows and Ultralytics' own load ran unchanged.
        replaced (dict[str, str]): Target path -> what replaced the source's own attention there (``C2PSA_B``).
    """

    source: str
    source_tensors: int
    transferred: int
    target_tensors: int
    layer_map: list[list[int]] = field(default_factory=list)
    not_transferred: dict[str, str] = field(default_factory=dict)
    first_difference: str | None = None
    new_blocks: dict[str, str] = field(default_factory=dict)
    new_tensors: int = 0
    identity_start: bool = False
    dropped_blocks: dict[str, str] = field(default_factory=dict)
    aligned: bool = True
    replaced: dict[str, str] = field(default_factory=dict)

    def summary(self) -> str:
        """Return the one-line log summary, e.g.

        ``yolo_attn: 355/355 tensors of yolov8n.pt transferred (layers 10-21 -> 11-25); new: 4 CBAM blocks
        (40 tensors), started as identity``.
        """
        text = f"yolo_attn: {self.transferred}/{self.source_tensors} tensors of {self.source} transferred"
        shifted = [(s, t) for s, t in self.layer_map if s != t]
        if shifted:
            text += f" (layers {shifted[0][0]}-{shifted[-1][0]} -> {shifted[0][1]}-{shifted[-1][1]})"
        if self.new_blocks:
            counts = Counter(self.new_blocks.values())
            kinds = ", ".join(f"{n} {name}" for name, n in counts.items())
            started = "started as identity" if self.identity_start else "paper initialisation (identity start off)"
            text += f"; new: {kinds} block{'s' if len(self.new_blocks) > 1 else ''} ({self.new_tensors} tensors), "
            text += started
        if self.dropped_blocks:
            kinds = ", ".join(f"{n} {name}" for name, n in Counter(self.dropped_blocks.values()).items())
            text += f"; dropped: {kinds} block(s) of the source with no counterpart"
        if self.replaced:
            text += "; replaced: " + ", ".join(f"{p} {what}" for p, what in self.replaced.items())
        if self.not_transferred:
            text += f"; not transferred: {len(self.not_transferred)}"
            if self.first_difference:
                text += f", first difference at {self.first_difference}"
            else:
                key, why = next(iter(self.not_transferred.items()))
                text += f", e.g. {key}: {why}"
        return text

    def to_dict(self) -> dict[str, Any]:
        """Return the report as a JSON-serialisable dict (with ``summary`` added)."""
        return asdict(self) | {"summary": self.summary()}


def land(
    renamed: dict[str, str], orphans: dict[str, str], source: dict[str, torch.Tensor], target: dict[str, torch.Tensor]
) -> tuple[set[str], dict[str, str], str | None]:
    """Decide which renamed source tensors land in the target: the key must exist there with the same shape.

    Args:
        renamed (dict[str, str]): Source key -> target key (see `rename_keys`).
        orphans (dict[str, str]): Source key -> why it has no target key.
        source (dict[str, torch.Tensor]): Source state dict.
        target (dict[str, torch.Tensor]): Target state dict.

    Returns:
        landed (set[str]): Target keys that receive a source tensor.
        not_landed (dict[str, str]): Source key -> why it does not land (orphans included).
        first_shape_difference (str | None): The first tensor, in target layer order, that a shape difference stops.
    """
    landed, not_landed, shape_misses = set(), dict(orphans), []
    for s_key, t_key in renamed.items():
        if t_key not in target:
            not_landed[s_key] = f"the target has no {t_key}"
        elif source[s_key].shape != target[t_key].shape:
            why = f"shape {tuple(source[s_key].shape)} vs target {tuple(target[t_key].shape)}"
            not_landed[s_key] = why
            match = LAYER_KEY.match(t_key)
            shape_misses.append((int(match[1]) if match else -1, t_key, why))
        else:
            landed.add(t_key)
    first = None
    if shape_misses:
        layer, key, why = min(shape_misses, key=lambda m: m[0])
        first = f"target layer {layer}: {key} {why}"
    return landed, not_landed, first


def blocks_without(blocks: dict[str, nn.Module], keys: set[str]) -> dict[str, nn.Module]:
    """Return the blocks (path -> module) none of whose state-dict keys is in ``keys``."""
    return {path: b for path, b in blocks.items() if not any(k.startswith(f"{path}.") for k in keys)}


def new_block_modules(model: nn.Module) -> dict[str, nn.Module]:
    """Return the attention blocks of a fine-tuned model that are new to its pretrained weights, by module path.

    New: a block with an ``identity_mix`` (started as the identity by a pretrained load) or one that the model's
    transfer report lists as new. A model without a transfer report that transferred anything was not fine-tuned.

    Args:
        model (nn.Module): An Ultralytics model (``trainer.model``, possibly wrapped by DDP).

    Returns:
        (dict[str, nn.Module]): Path (``model.10``) -> block; empty from scratch.
    """
    model = getattr(model, "module", model)
    report = getattr(model, "transfer_report", None) or {}
    if not report.get("transferred"):
        return {}
    listed = set(report.get("new_blocks") or {})
    return {
        path: block
        for path, block in outermost_attention_blocks(model).items()
        if path in listed or getattr(block, "identity_mix", None) is not None
    }
