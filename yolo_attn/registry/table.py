"""The block table: the one declaration of every block, read by every part of yolo_attn that needs to know blocks.

A block is declared once, where it is defined, with `register_block` (also the public API for a user's block and the
loader of plugin packages' entry points). The declaration holds what the other parts need:

- the YAML name and its aliases (YAML resolution, the layer table, the checkpoint allow-list);
- the kind: ``"channel"`` (a channel-preserving ``Block(c1, *yaml_args)`` whose input channels are inferred),
  ``"extends"`` (it extends an Ultralytics block such as C2f, takes its parent's YAML args and scales like it) or
  ``"replaces"`` (a ``Block(c1, *yaml_args)`` that stands in place of a row of another module with the same output
  shape, as the upsampler DySample replaces ``nn.Upsample``: its classmethod ``replaced_args(*yaml_args)`` gives that
  row's args);
- the argument signature, from which row checks and their messages are derived (`BlockSpec.expected`);
- the benchmark levels (``bench_levels``) of the block micro-benchmark, where it is benchmarked.

What a block computes in other forms is a method of the block class, so nothing else needs a table: ``forward_plain``
(the plain formulation the profiler times the block against; kept on the class, as ``fuse`` is, so that a user's block
can declare one and no list of blocks is kept elsewhere; CBAM and ParNet also compute their forward through it),
``fuse`` (inference form), ``attention_map`` (the visualizer's map), ``start_as_identity`` (the identity start; blocks
without one get the generic identity mix of `yolo_attn.modules.identity_start.add_identity_mix`), ``check_feature_map``
(size constraints at 640 px).

This module is pure: it imports neither Ultralytics nor the blocks. A name that Ultralytics already resolves in a
model YAML is refused through the name checks the integration installs (`add_name_check`).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from torch import nn

CHANNEL, EXTENDS, REPLACES = "channel", "extends", "replaces"


class BlockRegistrationError(ValueError):
    """A block cannot be registered as asked; the message says why and what would work."""


@dataclass(frozen=True)
class BlockSpec:
    """The declaration of one block.

    Attributes:
        name (str): YAML name, e.g. ``"CBAM"``.
        cls (type[nn.Module]): The block class.
        aliases (tuple[str, ...]): Other YAML names of the block, e.g. ``("CA-C2f",)``.
        parent (type[nn.Module] | None): The Ultralytics block it extends (kind ``"extends"``), else None.
        replaces (type[nn.Module] | None): The module whose rows it stands in for (kind ``"replaces"``, e.g.
            ``nn.Upsample``), else None.
        bench_levels (tuple[str, ...]): yolov8n levels (``"P3"``, ``"P4"``, ``"P5"``) of the block micro-benchmark;
            empty when the block is not benchmarked.
        origin (str): Who declared it: ``"yolo_attn"``, a plugin's distribution name, or a user's module.
        identity (str): How a new block starts as the identity: ``"own"`` (its ``start_as_identity``), ``"mix"``
            (the generic zero-initialised residual mix) or ``"inner"`` (the attention blocks inside an extends block).
        inner (BlockSpec | None): For a composition (``C3k2_EMA``, made by a resolver, see `add_resolver`): the
            channel block inside the host; its args are the row's trailing mapping. None otherwise.
    """

    name: str
    cls: type[nn.Module]
    aliases: tuple[str, ...] = ()
    parent: type[nn.Module] | None = None
    bench_levels: tuple[str, ...] = ()
    origin: str = "yolo_attn"
    identity: str = "own"
    replaces: type[nn.Module] | None = None
    inner: BlockSpec | None = None

    @property
    def kind(self) -> str:
        """``"channel"`` (channel-preserving), ``"extends"`` (extends an Ultralytics block) or ``"replaces"``."""
        return EXTENDS if self.parent is not None else REPLACES if self.replaces is not None else CHANNEL

    @property
    def stands_for(self) -> str | None:
        """The YAML name of the rows the block takes the place of (``"C2f"``, ``"nn.Upsample"``); None: inserted."""
        if self.parent is not None:
            return self.parent.__name__
        if self.replaces is not None:
            torch_nn = self.replaces.__module__.startswith("torch.nn")
            return f"nn.{self.replaces.__name__}" if torch_nn else self.replaces.__name__
        return None

    def replaced_row(self, args: Sequence[Any]) -> tuple[str, list]:
        """Return the module name and args of the row a ``"replaces"`` block's row stands in for.

        Args:
            args (Sequence[Any]): The block row's YAML args (a trailing mapping holds keyword args).

        Returns:
            (tuple[str, list]): E.g. ``("nn.Upsample", [None, 2, "nearest"])`` for ``DySample []``.
        """
        args = list(args or [])
        keywords = args.pop() if args and isinstance(args[-1], dict) else {}
        return self.stands_for, list(self.cls.replaced_args(*args, **keywords))

    @property
    def names(self) -> tuple[str, ...]:
        """The YAML name, then the aliases."""
        return (self.name, *self.aliases)

    def yaml_parameters(self) -> list[inspect.Parameter]:
        """Return the parameters a YAML row's args fill: after ``c1`` (channel kind), or the parent's after c1 and n."""
        if self.parent is None:
            return list(inspect.signature(self.cls).parameters.values())[1:]
        return [p for p in list(inspect.signature(self.parent).parameters.values())[1:] if p.name != "n"]

    def expected(self, alias: str | None = None) -> str:
        """Describe the YAML args the block expects, e.g. ``CBAM [r=16, k=7] (no channel argument: ...)``.

        Args:
            alias (str | None): The name as written in the YAML row; defaults to the block's name.

        Returns:
            (str): The description used in every row error.
        """
        name = alias or self.name
        params = ", ".join(_describe(p) for p in self.yaml_parameters())
        if self.replaces is not None:
            return (
                f"{name} [{params}] (no channel argument: input channels are inferred; it stands in place of a "
                f"{self.stands_for} row)"
            )
        if self.inner is not None:
            own = ", ".join(f"{_describe(p)}" for p in self.inner.yaml_parameters())
            return (
                f"{name} [{params}, {{{self.inner.name}'s args by name: {own}}}] (same args as {self.parent.__name__}, "
                f"then optionally a mapping of {self.inner.name}'s own args), e.g. [-1, 2, {name}, [256]]"
            )
        if self.parent is None:
            return f"{name} [{params}] (no channel argument: input channels are inferred)"
        return (
            f"{name} [{params}] (same args as {self.parent.__name__}; its repeat count n is the row's second field), "
            f"e.g. [-1, 3, {name}, [256, True]]"
        )

    def bind(self, positional: Sequence[Any], keywords: dict[str, Any], repeats: int = 1) -> None:
        """Check that YAML args fit the constructor, as the block (channel kind) or its parent (extends) is called.

        Args:
            positional (Sequence[Any]): Positional YAML args.
            keywords (dict[str, Any]): Keyword YAML args (a trailing mapping in the row).
            repeats (int): The row's repeat count (the parent's ``n``).

        Raises:
            TypeError: From ``inspect.Signature.bind`` when the args do not fit.
        """
        if self.inner is not None:
            inspect.signature(self.parent).bind(0, positional[0], repeats, *positional[1:])
            inspect.signature(self.inner.cls).bind(0, **keywords)
        elif self.parent is None:
            inspect.signature(self.cls).bind(0, *positional, **keywords)
        else:
            inspect.signature(self.parent).bind(0, positional[0], repeats, *positional[1:], **keywords)


def _describe(p: inspect.Parameter) -> str:
    return p.name if p.default is inspect.Parameter.empty else f"{p.name}={p.default!r}"


_TABLE: dict[str, BlockSpec] = {}  # every YAML name (names and aliases) -> its declaration
_NAME_CHECKS: list[Callable[[str], str | None]] = []  # name -> who else resolves it (None: free)
_LISTENERS: list[Callable[[str, BlockSpec], None]] = []  # ("add" | "remove", spec), e.g. the safe-load allow-list
_RESOLVERS: list[Callable[[str], BlockSpec | None]] = []  # names derived from the table, e.g. compositions C3k2_EMA


def add_resolver(resolver: Callable[[str], BlockSpec | None]) -> None:
    """Install a resolver of names the table derives rather than holds (``C3k2_EMA``: EMA inside C3k2).

    `get` asks the resolvers, in order, for a name the table does not hold. Derived names are not listed by `names`
    or `specs`: they follow from the blocks that are.

    Args:
        resolver (Callable[[str], BlockSpec | None]): Name -> its declaration, or None.
    """
    if resolver not in _RESOLVERS:
        _RESOLVERS.append(resolver)


def add_name_check(check: Callable[[str], str | None]) -> None:
    """Install a check that tells who else resolves a YAML name (the integration installs Ultralytics' names).

    Args:
        check (Callable[[str], str | None]): Returns a description of the owner of a name, or None when it is free.
    """
    if check not in _NAME_CHECKS:
        _NAME_CHECKS.append(check)


def add_listener(listener: Callable[[str, BlockSpec], None]) -> None:
    """Call ``listener("add" | "remove", spec)`` whenever a block is registered or unregistered."""
    if listener not in _LISTENERS:
        _LISTENERS.append(listener)


def remove_listener(listener: Callable[[str, BlockSpec], None]) -> None:
    """Remove a listener installed by `add_listener` (no-op when absent)."""
    if listener in _LISTENERS:
        _LISTENERS.remove(listener)


def identity_kind(cls: type[nn.Module], parent: type[nn.Module] | None, replaces: type[nn.Module] | None = None) -> str:
    """Return how a new block of ``cls`` starts as the identity, or raise why it cannot be registered.

    Args:
        cls (type[nn.Module]): The block class.
        parent (type[nn.Module] | None): The Ultralytics block it extends, if any.
        replaces (type[nn.Module] | None): The module whose rows it stands in for, if any.

    Returns:
        (str): ``"own"``, ``"mix"`` or ``"inner"`` (see `BlockSpec.identity`).

    Raises:
        BlockRegistrationError: When ``cls`` is no ``nn.Module``, takes no input-channel argument, its forward does
            not take exactly one tensor, an extends block does not subclass its parent or lacks ``parent_args``, or a
            block that replaces rows lacks ``replaced_args`` (or also extends a parent).
    """
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise BlockRegistrationError(f"{cls!r} is not an nn.Module subclass; a block must be one")
    params = list(inspect.signature(cls).parameters.values())
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    if not params or params[0].kind not in positional:
        raise BlockRegistrationError(
            f"{cls.__name__}({', '.join(str(p) for p in params)}) takes no input-channel argument: a block is built as "
            f"{cls.__name__}(c1, *yaml_args) with the input channels c1 first (inferred from the network)"
        )
    forward = list(inspect.signature(cls.forward).parameters.values())[1:]
    required = [p for p in forward if p.default is inspect.Parameter.empty and p.kind in positional]
    if len(required) != 1:
        raise BlockRegistrationError(
            f"{cls.__name__}.forward takes {len(required)} required inputs ({', '.join(p.name for p in required)}); "
            "a YAML row feeds a block one tensor x of shape (B, C, H, W)"
        )
    if parent is not None:
        if not issubclass(cls, parent):
            raise BlockRegistrationError(
                f"{cls.__name__} is registered with parent {parent.__name__} but does not "
                f"subclass it; an extends block is its parent with attention added"
            )
        if not callable(getattr(cls, "parent_args", None)):
            raise BlockRegistrationError(
                f"{cls.__name__} extends {parent.__name__} but has no classmethod parent_args(built_parent) -> list: "
                f"the network is scaled with a {parent.__name__} placeholder, and parent_args tells how to rebuild "
                f"that placeholder as a {cls.__name__} with the same shapes"
            )
        return "inner"
    if replaces is not None and not callable(getattr(cls, "replaced_args", None)):
        raise BlockRegistrationError(
            f"{cls.__name__} replaces {replaces.__name__} rows but has no classmethod replaced_args(*yaml_args) -> "
            f"list: the network is scaled with a {replaces.__name__} placeholder built from those args"
        )
    return "own" if callable(getattr(cls, "start_as_identity", None)) else "mix"


def register_block(
    cls: type[nn.Module] | None = None,
    *,
    name: str | None = None,
    aliases: Sequence[str] = (),
    parent: type[nn.Module] | None = None,
    replaces: type[nn.Module] | None = None,
    bench_levels: Sequence[str] = (),
    override: bool = False,
    origin: str | None = None,
) -> Any:
    """Register a block under a YAML name (and aliases); usable as ``@register_block`` or ``@register_block(...)``.

    A channel-preserving block is built as ``cls(c1, *yaml_args)`` with the inferred input channels ``c1`` first and
    must return a tensor of its input's shape. A block that extends an Ultralytics block (as ``CA_C2f`` extends
    ``C2f``) registers with ``parent=`` and takes its parent's YAML args. Every registered block gets the guarantees of
    `yolo_attn.testing.check_block`: channels inferred, argument errors naming the layer, transfer, identity start
    (blocks without their own ``start_as_identity`` get the generic zero-initialised residual mix), fuse, ONNX,
    safe-load and DDP.

    Args:
        cls (type[nn.Module] | None): The class (None when used as ``@register_block(...)``).
        name (str | None): YAML name; defaults to the class name.
        aliases (Sequence[str]): Other YAML names.
        parent (type[nn.Module] | None): The Ultralytics block ``cls`` extends.
        replaces (type[nn.Module] | None): The module whose rows ``cls`` stands in for, with the same output shape
            (``nn.Upsample`` for an upsampler); ``cls.replaced_args(*yaml_args)`` gives the args of that row.
        bench_levels (Sequence[str]): Levels of yolov8n (``P3``/``P4``/``P5``) the block micro-benchmark times it at.
        override (bool): Replace a block already registered under one of the names, or shadow an Ultralytics module
            of that name in YAMLs. Without it, a taken name raises `BlockRegistrationError`.
        origin (str | None): Who registers (named in conflicts); defaults to ``cls.__module__``.

    Returns:
        (type[nn.Module] | Callable): ``cls`` (or the decorator).

    Raises:
        BlockRegistrationError: For a taken name (without ``override``) or a class that cannot be a block.

    Examples:
        >>> import yolo_attn
        >>> @yolo_attn.register_block(aliases=["simam"])
        ... class SimAM(nn.Module):
        ...     def __init__(self, c1: int, e_lambda: float = 1e-4): ...
    """

    def decorate(block: type[nn.Module]) -> type[nn.Module]:
        if parent is not None and replaces is not None:
            raise BlockRegistrationError(f"{block.__name__}: a block extends a parent or replaces rows, not both")
        identity = identity_kind(block, parent, replaces)
        spec = BlockSpec(
            name=name or block.__name__,
            cls=block,
            aliases=tuple(aliases),
            parent=parent,
            bench_levels=tuple(bench_levels),
            origin=origin or block.__module__.split(".")[0],
            identity=identity,
            replaces=replaces,
        )
        add(spec, override=override)
        return block

    return decorate if cls is None else decorate(cls)


def add(spec: BlockSpec, override: bool = False) -> None:
    """Add a declaration to the table (see `register_block`).

    Registering the same declaration again is a no-op; registering a class again with other names or settings
    replaces its declaration.

    Args:
        spec (BlockSpec): The declaration.
        override (bool): Replace blocks and shadow Ultralytics modules that use one of its names.

    Raises:
        BlockRegistrationError: For a name taken by another block or by Ultralytics, without ``override``.
    """
    earlier = next((s for s in specs() if s.cls is spec.cls), None)
    if earlier == spec:
        return
    for alias in spec.names:
        if not alias.isidentifier() and not alias.replace("-", "_").isidentifier():
            raise BlockRegistrationError(f"block name {alias!r} is not a valid YAML module name")
        taken = _TABLE.get(alias)
        if taken is not None and taken.cls is spec.cls:
            continue
        owner = (
            f"block {taken.cls.__module__}.{taken.cls.__qualname__} (registered by {taken.origin})"
            if taken is not None
            else next((o for check in _NAME_CHECKS if (o := check(alias)) is not None), None)
        )
        if owner is not None and not override:
            raise BlockRegistrationError(
                f"cannot register {spec.cls.__module__}.{spec.cls.__qualname__} as {alias!r}: the name is already "
                f"used by {owner}. Choose another name, or pass override=True to replace it"
            )
    replaced = {id(s): s for alias in spec.names if (s := _TABLE.get(alias)) is not None}
    if earlier is not None:
        replaced[id(earlier)] = earlier
    for old in replaced.values():
        remove(old.name)
    for alias in spec.names:
        _TABLE[alias] = spec
    for listener in list(_LISTENERS):
        listener("add", spec)


def unregister_block(name_or_cls: str | type[nn.Module]) -> BlockSpec:
    """Remove a block (all its names) from the table; its YAML names become unknown again.

    Args:
        name_or_cls (str | type[nn.Module]): One of its YAML names, or the class.

    Returns:
        (BlockSpec): The removed declaration.

    Raises:
        KeyError: When no block has that name or class.
    """
    spec = (
        get(name_or_cls) if isinstance(name_or_cls, str) else next((s for s in specs() if s.cls is name_or_cls), None)
    )
    if spec is None:
        raise KeyError(f"no registered block {name_or_cls!r}; registered: {sorted(_TABLE)}")
    return remove(spec.name)


def remove(name: str) -> BlockSpec:
    """Remove the block registered under ``name`` (all its names) and return its declaration."""
    spec = _TABLE[name]
    for alias in spec.names:
        if _TABLE.get(alias) is spec:
            del _TABLE[alias]
    for listener in list(_LISTENERS):
        listener("remove", spec)
    return spec


def get(name: str) -> BlockSpec | None:
    """Return the declaration a YAML name (or alias) resolves to, or None; derived names through the resolvers."""
    spec = _TABLE.get(name)
    if spec is None and isinstance(name, str):
        spec = next((found for resolve in _RESOLVERS if (found := resolve(name)) is not None), None)
    return spec


def specs(kind: str | None = None) -> Iterator[BlockSpec]:
    """Yield each registered block once, in registration order, optionally of one kind (`BlockSpec.kind`)."""
    seen: set[int] = set()
    for spec in _TABLE.values():
        if id(spec) not in seen and (kind is None or spec.kind == kind):
            seen.add(id(spec))
            yield spec


def names() -> list[str]:
    """Every registered YAML name and alias."""
    return list(_TABLE)


def channel_blocks() -> dict[str, type[nn.Module]]:
    """YAML name -> class of the channel-preserving blocks (names only, no aliases)."""
    return {s.name: s.cls for s in specs(CHANNEL)}


def channel_names() -> set[str]:
    """Every YAML name and alias of the channel-preserving blocks (rows that are transparent to weight transfer)."""
    return {alias for s in specs(CHANNEL) for alias in s.names}


def classes() -> tuple[type[nn.Module], ...]:
    """Every registered block class."""
    return tuple(s.cls for s in specs())


def spec_of(module: nn.Module | type[nn.Module]) -> BlockSpec | None:
    """Return the declaration of a block instance or class (exact class first, then through its MRO), or None."""
    cls = module if isinstance(module, type) else type(module)
    by_class = {s.cls: s for s in specs()}
    return next((by_class[c] for c in cls.__mro__ if c in by_class), None)


def canonical_names(also: Iterable[str] = ()) -> dict[str, str | Callable[[list], tuple[str, list]]]:
    """YAML name -> what it stands for, for aligning checkpoints (CA_C2f stands where C2f stood).

    An extends block maps to its parent's name (same args); a block that replaces rows maps to a function of its row's
    args giving the replaced row's name and args (``DySample []`` -> ``("nn.Upsample", [None, 2, "nearest"])``).

    Args:
        also (Iterable[str]): Names to look up too (derived names such as ``C3k2_EMA``, which no table lists).
    """
    found: dict[str, str | Callable[[list], tuple[str, list]]] = {}
    for s in specs():
        if s.kind != CHANNEL:
            found.update(dict.fromkeys(s.names, s.stands_for if s.kind == EXTENDS else s.replaced_row))
    for name in also:
        spec = get(name) if isinstance(name, str) and name not in found else None
        if spec is not None and spec.parent is not None:
            found[name] = spec.parent.__name__
    return found
