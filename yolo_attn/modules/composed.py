"""Compositions: any registered channel block B inside the CSP blocks of Ultralytics, by name (``C3k2_EMA``).

The forks' most common recipe puts the attention inside a stage's CSP block rather than in a row after it. Here each
composition follows from the block table and `HOSTS`, so no list of compositions is kept and a block registered
tomorrow gets all of them:

- ``C2f_B``, ``C3k2_B`` and ``C3_B``: the host exactly as Ultralytics builds it (C3k2's C3k inner blocks and YOLO26's
  bottleneck + PSABlock units included), with a B in every ``Bottleneck`` between ``cv2`` and the residual add:
  ``x + B(cv2(cv1(x)))`` (`AttnBottleneck`).
- ``C2PSA_B``: C2PSA with B in place of each PSABlock's attention: ``x + B(x)``, then the PSABlock's feed-forward.

A row takes exactly the host's YAML args and scales like the host (the parse wrapper builds the host as a placeholder).
B's own args go in a trailing mapping, by name: ``[-1, 2, C3k2_EMA, [256, False, 0.25, {factor: 16}]]``. Names
resolve in any case, with ``_`` or ``-``, and through B's aliases (``C2f_GAM_Attention``).

Classes are made on demand and cached, under this module (``yolo_attn.modules.composed.C3k2_EMA``); the module's PEP 562
``__getattr__`` makes them for pickle, so checkpoints load in a fresh process. Every composed state-dict key of the host
is the host's own (``m.0.cv1.conv.weight``); B's tensors sit under ``m.0.attn`` (bottlenecks) or ``m.0.attn``
(PSABlocks, where the pretrained attention is replaced).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from ultralytics.nn.modules.block import C2PSA, C3, Bottleneck, C2f, C3k, C3k2, PSABlock

from yolo_attn import registry
from yolo_attn.registry.table import BlockSpec

COMPOSED_MODULE = __name__


class AttnBottleneck(nn.Module):
    """An Ultralytics ``Bottleneck`` with a block on its residual branch: ``x + attn(cv2(cv1(x)))``.

    Takes over the convolutions and the shortcut decision of an existing ``Bottleneck`` (so its state-dict keys stay
    ``cv1.*`` and ``cv2.*``). Without a shortcut the output is ``attn(cv2(cv1(x)))``.

    Attributes:
        cv1 (nn.Module): First convolution of the bottleneck.
        cv2 (nn.Module): Second convolution of the bottleneck.
        add (bool): Whether the residual shortcut is used.
        attn (nn.Module): The channel-preserving block on the residual branch.

    Examples:
        >>> from yolo_attn.modules.ema import EMA
        >>> block = AttnBottleneck(Bottleneck(64, 64), EMA(64))
        >>> block(torch.randn(2, 64, 20, 20)).shape
        torch.Size([2, 64, 20, 20])
    """

    def __init__(self, bottleneck: Bottleneck, attn: nn.Module) -> None:
        """Initialize from an existing bottleneck, reusing its layers.

        Args:
            bottleneck (Bottleneck): The bottleneck whose ``cv1``, ``cv2`` and ``add`` are taken over.
            attn (nn.Module): The block applied after ``cv2``, on the bottleneck's output channels.
        """
        super().__init__()
        self.cv1 = bottleneck.cv1
        self.cv2 = bottleneck.cv2
        self.add = bottleneck.add
        self.attn = attn

    def __setstate__(self, state: dict) -> None:
        """Unpickle; a ``CoordAttBottleneck`` of an earlier release kept its CoordAtt as ``ca``."""
        modules = state.get("_modules")
        if modules is not None and "ca" in modules and "attn" not in modules:
            state["_modules"] = {("attn" if k == "ca" else k): v for k, v in modules.items()}
        super().__setstate__(state)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the bottleneck with the block on its residual branch.

        Args:
            x (torch.Tensor): Input of shape (B, C1, H, W).

        Returns:
            (torch.Tensor): Output of shape (B, C2, H, W).
        """
        y = self.attn(self.cv2(self.cv1(x)))
        return x + y if self.add else y


def insert_in_bottlenecks(module: nn.Module, make: Callable[[int], nn.Module]) -> int:
    """Replace, in place and at any depth, every plain ``Bottleneck`` under ``module`` by an `AttnBottleneck`.

    Args:
        module (nn.Module): Module whose descendants are upgraded (``module`` itself is not replaced).
        make (Callable[[int], nn.Module]): Builds the block for a bottleneck's output channels.

    Returns:
        (int): How many bottlenecks were upgraded.
    """
    upgraded = 0
    for name, child in module.named_children():
        if type(child) is Bottleneck:  # exact type: subclasses may compute something else
            setattr(module, name, AttnBottleneck(child, make(child.cv2.conv.out_channels)))
            upgraded += 1
        else:
            upgraded += insert_in_bottlenecks(child, make)
    return upgraded


def replace_psa_attention(module: nn.Module, make: Callable[[int], nn.Module]) -> int:
    """Replace the attention of every ``PSABlock`` under ``module`` by a block on its channels: ``x + B(x)``.

    Args:
        module (nn.Module): Module whose PSABlocks are changed.
        make (Callable[[int], nn.Module]): Builds the block for a PSABlock's channels.

    Returns:
        (int): How many attentions were replaced.
    """
    replaced = 0
    for block in module.modules():
        if isinstance(block, PSABlock):
            block.attn = make(block.ffn[0].conv.in_channels)
            replaced += 1
    return replaced


def _expansion(hidden: int, c2: int) -> float:
    """Return an expansion ratio ``e`` with ``int(c2 * e) == hidden``, as the hosts compute their hidden width."""
    e = hidden / c2
    return e if int(c2 * e) == hidden else math.nextafter(e, math.inf)


def _bottleneck_options(parent: nn.Module, default_shortcut: bool) -> tuple[bool, int]:
    """Return ``(shortcut, g)`` of the first bottleneck in ``parent.m``; ``(default_shortcut, 1)`` if none."""
    first = next((m for m in parent.m.modules() if isinstance(m, (Bottleneck, AttnBottleneck))), None)
    return (default_shortcut, 1) if first is None else (first.add, first.cv2.conv.groups)


def _c2f_args(p: C2f) -> list:
    shortcut, g = _bottleneck_options(p, default_shortcut=False)
    c2 = p.cv2.conv.out_channels
    return [p.cv1.conv.in_channels, c2, len(p.m), shortcut, g, _expansion(p.c, c2)]


def _c3k2_args(p: C3k2) -> list:
    shortcut, g = _bottleneck_options(p, default_shortcut=True)
    c2 = p.cv2.conv.out_channels
    c3k = any(isinstance(m, C3k) for m in p.m)
    attn = any(isinstance(m, PSABlock) for m in p.m.modules())
    return [p.cv1.conv.in_channels, c2, len(p.m), c3k, _expansion(p.c, c2), attn, g, shortcut]


def _c3_args(p: C3) -> list:
    shortcut, g = _bottleneck_options(p, default_shortcut=True)
    c2 = p.cv3.conv.out_channels
    return [p.cv1.conv.in_channels, c2, len(p.m), shortcut, g, _expansion(p.cv1.conv.out_channels, c2)]


def _c2psa_args(p: C2PSA) -> list:
    c1 = p.cv1.conv.in_channels
    return [c1, p.cv2.conv.out_channels, len(p.m), _expansion(p.c, c1)]


@dataclass(frozen=True)
class Host:
    """A CSP block that takes a channel block inside.

    Attributes:
        cls (type[nn.Module]): The Ultralytics block.
        insert (Callable): ``insert(module, make) -> count``: puts blocks made by ``make(channels)`` inside.
        parent_args (Callable): Built host -> constructor args that rebuild it with the same shapes.
        where (str): Where B goes, for docs and errors.
    """

    cls: type[nn.Module]
    insert: Callable[[nn.Module, Callable[[int], nn.Module]], int]
    parent_args: Callable[[Any], list]
    where: str

    @property
    def name(self) -> str:
        """The host's YAML name, e.g. ``C3k2``."""
        return self.cls.__name__


#: The hosts, YAML name -> host. A composition's name is ``<host>_<block>``.
HOSTS: dict[str, Host] = {
    h.name: h
    for h in (
        Host(C2f, insert_in_bottlenecks, _c2f_args, "every Bottleneck, between cv2 and the residual add"),
        Host(C3k2, insert_in_bottlenecks, _c3k2_args, "every Bottleneck (in C3k and before a PSABlock too)"),
        Host(C3, insert_in_bottlenecks, _c3_args, "every Bottleneck, between cv2 and the residual add"),
        Host(C2PSA, replace_psa_attention, _c2psa_args, "in place of each PSABlock's attention"),
    )
}

_CLASSES: dict[tuple[str, str, type], type] = {}  # (host name, block name, block class) -> composed class
_LEGACY = {"ca_c2f": ("CA_C2f", "C2f_CoordAtt"), "ca_c3k2": ("CA_C3k2", "C3k2_CoordAtt")}  # earlier releases' names


def _key(name: str) -> str:
    return name.replace("-", "_").lower()


def split_name(name: str) -> tuple[Host, BlockSpec] | None:
    """Return the host and the channel block a composed name means, or None.

    ``C3k2_EMA``, ``c3k2-ema``, ``C2f_GAM_Attention`` (an alias of GAM) and ``CA_C2f`` (an earlier release's name of
    ``C2f_CoordAtt``) all resolve.

    Args:
        name (str): A YAML module name.

    Returns:
        (tuple[Host, BlockSpec] | None): The host and the block's declaration (a channel block), or None.
    """
    if not isinstance(name, str):
        return None
    name = _LEGACY.get(_key(name), (None, name))[1]
    match = re.fullmatch(r"([A-Za-z0-9]+)[_-](.+)", name)
    if match is None:
        return None
    host = next((h for h in HOSTS.values() if h.name.lower() == match[1].lower()), None)
    if host is None:
        return None
    wanted = _key(match[2])
    for alias in registry.names():
        spec = registry.get(alias)
        if spec is not None and spec.kind == registry.CHANNEL and _key(alias) == wanted:
            return host, spec
    return None


def composed_class(host: Host | str, block: BlockSpec | str) -> type[nn.Module]:
    """Return the class of block ``block`` inside host ``host`` (made once, then cached), e.g. ``C3k2_EMA``.

    Args:
        host (Host | str): A host or its name (a key of `HOSTS`).
        block (BlockSpec | str): A channel block's declaration or YAML name.

    Returns:
        (type[nn.Module]): A subclass of the host, named ``<host>_<block name>``, under this module.

    Raises:
        KeyError: For an unknown host or a name that is no registered channel block.
    """
    host = HOSTS[host] if isinstance(host, str) else host
    spec = registry.get(block) if isinstance(block, str) else block
    if spec is None or spec.kind != registry.CHANNEL:
        raise KeyError(f"{block!r} is not a registered channel-preserving block")
    key = (host.name, spec.name, spec.cls)  # one class registered under two names composes under each
    if key not in _CLASSES:
        _CLASSES[key] = _make_class(host, spec)
    return _CLASSES[key]


def _make_class(host: Host, spec: BlockSpec) -> type[nn.Module]:
    """Make the composed class of ``spec``'s block inside ``host``."""
    name = f"{host.name}_{spec.name}"
    block_cls, parent = spec.cls, host.cls

    def init(self: nn.Module, *args: Any, block_args: dict | None = None, **kwargs: Any) -> None:
        parent.__init__(self, *args, **kwargs)
        self.block_args = dict(block_args or {})
        host.insert(self, lambda c: block_cls(c, **self.block_args))

    def parent_args(cls: type, built: nn.Module) -> list:
        return host.parent_args(built)

    doc = (
        f"Ultralytics' {parent.__name__} with {spec.name} in {host.where} (made by `yolo_attn.modules.composed`).\n\n"
        f"Takes exactly {parent.__name__}'s args; {spec.name}'s own args go in ``block_args`` (a YAML row's trailing "
        f"mapping): ``[-1, 2, {name}, [256, {{...}}]]``."
    )
    return type(
        name,
        (parent,),
        {
            "__init__": init,
            "__module__": COMPOSED_MODULE,
            "__qualname__": name,
            "__doc__": doc,
            "parent_args": classmethod(parent_args),
            "host": host,
            "block_spec": spec,
            # the inner block's operators decide the lowest ONNX opset, where it declares one
            **({"onnx_min_opset": block_cls.onnx_min_opset} if hasattr(block_cls, "onnx_min_opset") else {}),
        },
    )


def resolve(name: str) -> BlockSpec | None:
    """Block-table resolver: the declaration of a composed name (``C3k2_EMA``), made from the host and the block.

    Args:
        name (str): A YAML module name that the block table does not hold.

    Returns:
        (BlockSpec | None): An ``extends`` declaration whose ``inner`` is the channel block's, or None.
    """
    found = split_name(name)
    if found is None:
        return None
    host, spec = found
    legacy = _LEGACY.get(_key(name), (None, None))[0]  # CA_C2f stays CA_C2f in the rows generated for it
    return BlockSpec(
        name=legacy or f"{host.name}_{spec.name}",
        cls=composed_class(host, spec),
        parent=host.cls,
        origin=spec.origin,
        identity="inner",
        inner=spec,
    )


def all_classes() -> Iterator[type[nn.Module]]:
    """Yield the composed class of every registered channel block in every host (for the safe-load allow-list)."""
    for spec in list(registry.specs(registry.CHANNEL)):
        for host in HOSTS.values():
            yield composed_class(host, spec)


def inside_name(rows: list, block: str, sites: list[int] | None = None) -> str:
    """Return the composed name that puts ``block`` inside a model's CSP rows: ``C3k2_EMA`` for YOLO11, ``C2f_EMA``.

    Args:
        rows (list): The model YAML's backbone + head rows.
        block (str): A channel block's YAML name or alias.
        sites (list[int] | None): Layer indices to look at (default: all rows).

    Returns:
        (str): ``<host>_<block name>`` for the first bottleneck host (C3k2, C2f, C3) found at the sites.

    Raises:
        ValueError: When ``block`` is no channel block, or no bottleneck host stands at the sites.
    """
    spec = registry.get(block)
    if spec is None or spec.kind != registry.CHANNEL:
        raise ValueError(f"{block!r} is not a registered channel-preserving block, so it cannot go inside a host")
    names = [str(rows[i][2]) for i in (range(len(rows)) if sites is None else sites)]
    host = next((h for h in ("C3k2", "C2f", "C3") if h in names), None)
    if host is None:
        raise ValueError(f"no C3k2, C2f or C3 row at these sites to put {spec.name} inside (rows: {', '.join(names)})")
    return f"{host}_{spec.name}"


def composed_names() -> list[str]:
    """Every composed YAML name (``<host>_<block name>``) the registry resolves now, blocks x hosts."""
    return [f"{h}_{s.name}" for s in registry.specs(registry.CHANNEL) for h in HOSTS]


def __getattr__(name: str) -> type[nn.Module]:
    """PEP 562: ``yolo_attn.modules.composed.C3k2_EMA`` is made on demand, so pickles of composed blocks load."""
    found = split_name(name) if not name.startswith("__") else None
    if found is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return composed_class(*found)


registry.add_resolver(resolve)
