"""`check_block`: the contract every registered block, shipped or a user's, must pass.

Properties, one row each in the report:

- **registers**: the class can be a block (an input-channel argument first, a forward of one tensor; an extends block
  subclasses its parent and has ``parent_args``), and how it starts as the identity.
- **shape kept**: the output has the input's shape (an extends block: its parent's output shape; a block that replaces
  rows: the replaced module's output shape, e.g. upsampled) at yolov8n's P3, P4 and P5 shapes, at scale x widths, at
  batch 2 and at an odd H x W (spatial sizes for ``imgsz``, 320 by default).
- **YAML rows v8/11/26**: the block builds from a YAML row in YOLOv8, YOLO11 and YOLO26 (after layer 9, or in place of
  every parent row, or of every row it replaces, e.g. ``nn.Upsample``), with channels inferred, and the detector runs.
- **bad arg -> YAMLRowError**: a row with a surplus argument raises a `YAMLRowError` naming the block.
- **identity start**: a trained (random-weight) block started as the identity returns its input within 1e-6 (an extends
  block: its parent's output; a replacing block: the replaced module's output), and from that start one optimiser step
  lets every parameter get a gradient.
- **state dict + pickle**: the state dict, ``torch.save``/``torch.load`` and ``deepcopy`` round-trip.
- **safe load**: a detector checkpoint holding the block loads with Ultralytics' weights-only loading (what
  ``ULTRALYTICS_SAFE_LOAD=1`` turns on) and computes the same.
- **fuse**: the block's own fuse path and the whole detector's ``model.fuse()`` keep outputs within 1e-5.
- **torch.compile**: the compiled block matches within 1e-5 (opt-in, ``compile=True``: an inductor build costs tens of
  seconds on a CPU).
- **ONNX**: exported as Ultralytics exports (TorchScript-based exporter, dynamic batch, H and W), unfused and fused,
  onnxruntime matches at another batch, H and W (within 1e-4; skipped when onnx or onnxruntime is missing). At opset
  17, or at the highest ``onnx_min_opset`` class attribute of the block's modules where that is higher (an operator
  ONNX has only from a later opset, such as ``DeformConv``, 19; `yolo_attn.profiling.runtime.model_opset`).
- **transfer**: yolov8n's weights (yolo11n's for a C3k2 block) load into that YAML with the block inserted; every
  baseline tensor lands, unchanged, and the step-0 outputs equal the baseline's.
"""

from __future__ import annotations

import copy
import importlib
import importlib.util
import inspect
import io
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from yolo_attn import registry
from yolo_attn.modules.fusion import fuse_blocks
from yolo_attn.modules.identity_start import start_as_identity
from yolo_attn.modules.random_weights import randomize_
from yolo_attn.registry.rows import YAMLRowError
from yolo_attn.testing.report import FAIL, PASS, SKIP, CheckReport, PropertyResult

C = 64  # channels of the block-level checks (yolov8n's P3)
BASES = ("yolov8n.yaml", "yolo11n.yaml", "yolo26n.yaml")
INSERT_AFTER = 9  # SPPF in all three bases (P5/32)
IDENTITY_TOL = 1e-6
FUSE_TOL = 1e-5
ONNX_TOL = 1e-4
MAX_BACKWARDS = 4  # a zero mix before a zero-initialised last layer (CBAM's gates) reaches every weight by pass 3


class _Skip(Exception):  # noqa: N818
    """A property that does not apply, or whose tool is missing; the message says which."""


def resolve(target: str | type[nn.Module]) -> type[nn.Module]:
    """Return the class a CLI target names: ``module:Class`` (imported) or a registered YAML name.

    Args:
        target (str | type[nn.Module]): ``"mypkg.attn:SimAM"``, ``"CBAM"`` or a class.

    Returns:
        (type[nn.Module]): The class.

    Raises:
        ValueError: When the target is neither an importable ``module:Class`` nor a registered name.
    """
    if isinstance(target, type):
        return target
    if ":" in target:
        module, _, name = target.partition(":")
        try:
            return getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError) as e:
            raise ValueError(f"cannot import {target!r}: {type(e).__name__}: {e}") from e
    spec = registry.get(target)
    if spec is None:
        raise ValueError(f"{target!r} is neither module:Class nor a registered block ({', '.join(registry.names())})")
    return spec.cls


def check_block(
    cls: type[nn.Module] | str,
    *,
    compile: bool = False,
    onnx: bool = True,
    imgsz: int = 320,
    only: Sequence[str] | None = None,
    compose: bool = True,
    **kwargs: Any,
) -> CheckReport:
    """Check the contract of a block (see the module docstring for the properties).

    A class that is not registered yet is registered for the duration of the check (under its class name) as a
    channel-preserving block, and unregistered afterwards; register a block that extends an Ultralytics block first
    (``register_block(cls, parent=C2f)``) to check it as one.

    Args:
        cls (type[nn.Module] | str): The block class, ``module:Class`` or a registered YAML name.
        compile (bool): Also check ``torch.compile`` (slow on CPU).
        onnx (bool): Check the ONNX export (needs onnx and onnxruntime).
        imgsz (int): Image size whose yolov8n P3/P4/P5 spatial sizes are used (a multiple of 32).
        only (Sequence[str] | None): Names of the properties to check (keys of `PROPERTIES`); None for all. The
            others are reported as skipped.
        compose (bool): For a channel block, also check it composed in C2f and C3k2 (``C2f_B``, ``C3k2_B``: shape,
            YAML rows, identity start, transfer, fuse, ONNX), one row per host.
        **kwargs (Any): Constructor arguments after the input channels, also written into the YAML rows
            (as a trailing mapping).

    Returns:
        (CheckReport): One row per property; ``report.ok`` is False when any failed.

    Examples:
        >>> from yolo_attn.testing import check_block
        >>> report = check_block("CBAM", r=8)
        >>> print(report.table())
    """
    cls = resolve(cls)
    report = CheckReport(getattr(cls, "__name__", str(cls)))
    temporary = None
    spec = next((s for s in registry.specs() if s.cls is cls), None)
    if spec is None and getattr(cls, "block_spec", None) is not None:  # a composition, C3k2_EMA
        spec = registry.get(cls.__name__)
    started = time.perf_counter()
    try:
        if spec is None:
            name = _free_name(cls)
            registry.register_block(cls, name=name, origin="check_block")
            temporary, spec = name, registry.get(name)
        kind = {registry.EXTENDS: "extends ", registry.REPLACES: "replaces "}.get(spec.kind, "channel-preserving")
        kind += spec.stands_for or ""
        report.results.append(
            PropertyResult("registers", PASS, f"{kind}; identity start: {spec.identity}", time.perf_counter() - started)
        )
    except registry.BlockRegistrationError as e:
        report.results.append(PropertyResult("registers", FAIL, str(e), time.perf_counter() - started))
        for name in PROPERTIES:
            report.results.append(PropertyResult(name, SKIP, "the class cannot be registered"))
        return report
    report.block = spec.name
    context = _Context(spec, kwargs, imgsz, compile, onnx)
    try:
        unknown = set(only or ()) - set(PROPERTIES)
        if unknown:
            raise ValueError(f"unknown properties {sorted(unknown)}; expected some of {list(PROPERTIES)}")
        for name, check in PROPERTIES.items():
            if only is not None and name not in only:
                report.results.append(PropertyResult(name, SKIP, "not selected"))
                continue
            _run(report, name, lambda check=check: check(context))
        if compose and spec.kind == registry.CHANNEL:
            for host in COMPOSE_HOSTS:
                _run(report, f"inside {host}", lambda host=host: _check_inside(host, spec, onnx, imgsz, kwargs))
    finally:
        if temporary is not None:
            registry.unregister_block(temporary)
    return report


def _check_inside(host: str, spec: registry.BlockSpec, onnx: bool, imgsz: int, kwargs: dict[str, Any]) -> str:
    """Check the block composed in a host (``C2f_B``): the properties of `COMPOSED_PROPERTIES`, one summary line."""
    from yolo_attn.modules.composed import composed_class

    only = [p for p in COMPOSED_PROPERTIES if onnx or p != "ONNX"]
    sub = check_block(composed_class(host, spec), onnx=onnx, imgsz=imgsz, only=only, compose=False, **kwargs)
    failed = [r for r in sub.results if r.status == FAIL]
    if failed:
        if all(r.name == "YAML rows v8/11/26" and "YAMLRowError" in r.reason for r in failed):  # args to set
            raise _Skip(f"{host}_{spec.name} with these args is refused in a model, by layer: {failed[0].reason}")
        raise AssertionError("; ".join(f"{r.name}: {r.reason}" for r in failed))
    passed = [r.name for r in sub.results if r.status == PASS and r.name != "registers"]
    return f"{host}_{spec.name}: {', '.join(passed)}"


def _free_name(cls: type) -> str:
    """The class name, or ``<name>_checked`` when it is taken by another block or Ultralytics."""
    name = cls.__name__
    taken = registry.get(name)
    if (taken is None or taken.cls is cls) and not _ultralytics_owns(name):
        return name
    return f"{name}_checked"


def _ultralytics_owns(name: str) -> bool:
    from yolo_attn.integration.lookup import ultralytics_owner

    return ultralytics_owner(name) is not None


def _run(report: CheckReport, name: str, check: Callable[[], str]) -> None:
    start = time.perf_counter()
    try:
        reason, status = check(), PASS
    except _Skip as e:
        reason, status = str(e), SKIP
    except Exception as e:  # any failure of the block is a finding, reported on its row
        message = " ".join(str(e).split())
        reason, status = f"{type(e).__name__}: {message[:400]}", FAIL
    report.results.append(PropertyResult(name, status, reason, time.perf_counter() - start))


class _Context:
    """What the property checks share: the declaration, the arguments, and the detectors built once."""

    def __init__(self, spec: registry.BlockSpec, kwargs: dict[str, Any], imgsz: int, compile: bool, onnx: bool) -> None:
        self.spec, self.kwargs, self.imgsz, self.compile, self.onnx = spec, kwargs, imgsz, compile, onnx
        self.models: dict[str, nn.Module] = {}
        self.cfgs: dict[str, dict] = {}
        self.image = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))

    def make(self, c: int = C) -> nn.Module:
        """A fresh block for ``c`` input channels (an extends block: ``c`` in and out), its initial weights seeded.

        The constructor's own initialisation draws from a fixed seed (the global generator is left as it was), so a
        check's verdict does not depend on what ran before it: a narrow MLP behind a ReLU (GatherExcite's 4 hidden
        units at 64 channels) can start with every unit dead for one draw in sixteen.
        """
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            if self.spec.parent is None:
                return self.spec.cls(c, **self.kwargs)
            if self.spec.inner is not None:  # a composition (C3k2_EMA): the args are the inner block's; e=1 gives
                return self.spec.cls(c, c, e=1.0, block_args=self.kwargs)  # the inner block c channels, as alone
            return self.spec.cls(c, c, **self.kwargs)

    def parent(self, c: int = C) -> nn.Module:
        """The parent block an extends block is built like."""
        return self.spec.parent(c, c, **({"e": 1.0} if self.spec.inner is not None else self.kwargs))

    def expected(self, x: torch.Tensor) -> torch.Tensor:
        """What the block computes on ``x`` when it starts as the identity: ``x``, its parent's or the replaced output.

        For an extends block the parent is a fresh one (the identity check loads the block's tensors into it).
        """
        if self.spec.kind == registry.REPLACES:
            return self.spec.replaces(*self.spec.replaced_row(self.row_args())[1])(x)
        return x if self.spec.parent is None else self.parent(x.shape[1]).eval()(x)

    def row_args(self) -> list:
        """The YAML args: the keyword arguments as a trailing mapping."""
        return [dict(self.kwargs)] if self.kwargs else []

    def cfg(self, base: str) -> dict:
        """The base model dict with the block in it: after layer 9, or in place of every parent row."""
        if base not in self.cfgs:
            from ultralytics.nn.tasks import yaml_model_load

            from yolo_attn.cfg.edit import insert_after

            d = yaml_model_load(base)
            if self.spec.kind == registry.CHANNEL:
                d = insert_after(d, INSERT_AFTER, self.spec.name, self.row_args())
            else:
                parent = self.spec.stands_for
                hits = 0
                rows = d["backbone"] + d["head"]
                sites = range(len(rows))
                if self.spec.inner is not None:  # a composition: the host rows at the standard sites, as generated
                    from yolo_attn.cfg.sites import SiteError, standard_sites

                    try:
                        sites = standard_sites(d, self.spec)
                    except SiteError as e:
                        raise _Skip(f"{base}: {e}") from None
                for i, row in enumerate(rows):
                    if i in sites and row[2] == parent:
                        row[2], hits = self.spec.name, hits + 1
                        if self.spec.kind == registry.REPLACES:
                            row[3] = self.row_args()
                        elif self.kwargs:
                            row[3] = [*row[3], dict(self.kwargs)]
                if not hits:
                    raise _Skip(f"{base} has no {parent} row to replace")
            self.cfgs[base] = d
        return copy.deepcopy(self.cfgs[base])

    def home(self) -> str:
        """The base of the single-detector checks: yolov8n, or the first base with the rows the block stands for."""
        if self.spec.kind == registry.CHANNEL:
            return BASES[0]
        for base in BASES:
            try:
                self.cfg(base)
                return base
            except _Skip:
                continue
        raise _Skip(f"none of {', '.join(BASES)} has a {self.spec.stands_for} row to replace")

    def model(self, base: str | None = None, block: bool = True) -> nn.Module:
        """A fresh detector of ``base`` (default `home`) with the block, or the plain baseline, in eval mode.

        Each is built once (Ultralytics runs a 256 x 256 forward pass to find the strides) and copied for every use.
        """
        from ultralytics.nn.tasks import DetectionModel, yaml_model_load

        base = base or self.home()
        if not block:  # the plain baseline does not depend on the block: built once per process
            if base not in _BASELINES:
                _BASELINES[base] = DetectionModel(yaml_model_load(base), verbose=False).eval()
            return copy.deepcopy(_BASELINES[base])
        if base not in self.models:
            self.models[base] = DetectionModel(self.cfg(base), verbose=False).eval()
        return copy.deepcopy(self.models[base])


_BASELINES: dict[str, nn.Module] = {}  # plain baseline detectors by base YAML, shared by every check of a process


def _scale(y: torch.Tensor) -> float:
    return max(1.0, float(y.abs().max()))


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).abs().max())


def _fuse_bound(block: nn.Module, x: torch.Tensor, expected: torch.Tensor) -> float:
    """How far a fused float32 block may be from the unfused one.

    `FUSE_TOL` of the output's scale, plus twice the unfused block's own float32 rounding error (its distance from the
    same block run in float64).

    A deep chain of convolutions (GAM's two 7x7 stages) is already ~1e-5 of its scale away from the exact answer in
    float32, by an amount that depends on the CPU's kernels; folding a BatchNorm moves the rounding, not the math.
    """
    exact = copy.deepcopy(block).double()(x.double())
    return FUSE_TOL * _scale(expected) + 2 * float((expected.double() - exact).abs().max())


def _outputs(model: nn.Module, image: torch.Tensor) -> list[torch.Tensor]:
    """Every tensor a detector returns: the decoded boxes and scores, and the head's raw maps.

    The decoded predictions alone saturate (one-hot DFL bins, sigmoid scores of 0 or 1 with random weights), so a
    difference could hide in them; the raw maps before decoding carry it.
    """
    found: list[torch.Tensor] = []

    def collect(value: Any) -> None:
        if isinstance(value, torch.Tensor):
            found.append(value.detach().float())
        elif isinstance(value, dict):
            for v in value.values():
                collect(v)
        elif isinstance(value, (list, tuple)):
            for v in value:
                collect(v)

    collect(model(image))
    return found


def _relative_diff(actual: list[torch.Tensor], expected: list[torch.Tensor]) -> float:
    """The largest difference of corresponding tensors, each relative to its expected tensor's largest value."""
    assert len(actual) == len(expected), f"{len(actual)} output tensors, expected {len(expected)}"
    return max(_max_diff(a, e) / max(float(e.abs().max()), 1e-30) for a, e in zip(actual, expected, strict=True))


def _normal_weights(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random weights scaled by 1/sqrt(fan-in), so activations keep unit scale through a deep network (a baseline)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            fan_in = p[0].numel() if p.ndim > 1 else 1
            p.copy_(torch.randn(p.shape, generator=generator) / fan_in**0.5)
    return model


def _ours(model: nn.Module, spec: registry.BlockSpec) -> list[nn.Module]:
    return [m for m in model.modules() if type(m) is spec.cls]


def _check_shape(ctx: _Context) -> str:
    s = ctx.imgsz
    shapes = [(1, 64, s // 8, s // 8), (1, 128, s // 16, s // 16), (1, 256, s // 32, s // 32)]  # yolov8n P3-P5
    shapes += [(1, 320, s // 8, s // 8), (1, 640, s // 16, s // 16), (1, 640, s // 32, s // 32)]  # yolov8x widths
    shapes += [(2, 64, s // 8, s // 8), (2, 64, 13, 7)]  # batch 2, odd H x W
    wrong = []
    for shape in shapes:
        x = torch.randn(shape)
        block = randomize_(ctx.make(shape[1]), 0)
        with torch.no_grad():
            expected = ctx.expected(x).shape
            for mode in (True, False):
                got = block.train(mode)(x).shape
                if got != expected:
                    wrong.append(f"{tuple(shape)} -> {tuple(got)} ({'train' if mode else 'eval'})")
    if wrong:
        raise AssertionError(f"output shape differs from {ctx.spec.stands_for or 'input'}: {wrong}")
    return f"{len(shapes)} shapes, train and eval"


def _check_yaml(ctx: _Context) -> str:
    found = []
    for base in BASES:
        try:
            model = ctx.model(base)
        except _Skip as e:
            found.append(str(e))
            continue
        layers = _ours(model, ctx.spec)
        assert layers, f"{base}: no {ctx.spec.cls.__name__} in the built model"
        seen: list[tuple] = []
        record = lambda m, a, o, seen=seen: seen.append((a[0].shape, o.shape))  # noqa: E731
        handles = [m.register_forward_hook(record) for m in layers]
        with torch.no_grad():
            model(ctx.image)
        for handle in handles:
            handle.remove()
        if ctx.spec.parent is None:
            bad = [(tuple(i), tuple(o)) for i, o in seen if ctx.expected(torch.zeros(i)).shape != o]
            what = ctx.spec.stands_for or "input"
            assert not bad, f"{base}: output shapes differ from the {what}'s in the model (in, out): {bad}"
        found.append(f"{base[:-6]}: {len(layers)} x C={seen[0][0][1]}")
    return ", ".join(found)


def _check_bad_arg(ctx: _Context) -> str:
    from ultralytics.nn.tasks import DetectionModel

    if ctx.spec.parent is not None:
        d = ctx.cfg(ctx.home())
        row = next(r for r in d["backbone"] + d["head"] if r[2] == ctx.spec.name)
        row[3] = []
        bad = "[]"
    else:
        params = ctx.spec.yaml_parameters()
        if any(p.kind == inspect.Parameter.VAR_POSITIONAL for p in params):
            raise _Skip("the block takes *args: no surplus argument to try")
        args = [p.default for p in params if p.kind != inspect.Parameter.VAR_KEYWORD]
        if any(a is inspect.Parameter.empty for a in args):
            raise AssertionError(f"YAML args must all be optional (inferred channels first), got {params}")
        d = ctx.cfg(ctx.home())
        bad = [*args, "surplus"]
        row = next(r for r in d["backbone"] + d["head"] if r[2] == ctx.spec.name)
        row[3] = bad
    try:
        DetectionModel(d, verbose=False)
    except YAMLRowError as e:
        if ctx.spec.name not in str(e):
            raise AssertionError(f"the YAMLRowError does not name {ctx.spec.name}: {e}") from None
        return f"args {bad}: {str(e)[:90]}..."
    raise AssertionError(f"a row with args {bad} built without a YAMLRowError")


def _attention_parts(block: nn.Module, spec: registry.BlockSpec) -> list[nn.Module]:
    """The block itself, or the attention blocks inside a block that extends an Ultralytics one."""
    from yolo_attn.finetune.transfer import outermost_attention_blocks

    return [block] if spec.parent is None else [b for p, b in outermost_attention_blocks(block).items() if p]


def _start(block: nn.Module, spec: registry.BlockSpec, mix: float | None = None) -> nn.Module:
    """Start a block (or the attention blocks inside an extends block) as the identity; optionally set the mix."""
    for target in _attention_parts(block, spec):
        start_as_identity(target)
        if mix is not None and getattr(target, "identity_mix", None) is not None:
            with torch.no_grad():
                target.identity_mix.fill_(mix)
    return block


def _check_identity(ctx: _Context) -> str:
    x = torch.randn(2, C, 10, 12, generator=torch.Generator().manual_seed(1))
    block = randomize_(ctx.make(), 0).eval()
    with torch.no_grad():
        if ctx.spec.parent is None:
            expected = ctx.expected(x)
        else:
            parent = ctx.parent().eval()
            missing = parent.load_state_dict(
                {k: v for k, v in block.state_dict().items() if k in parent.state_dict()}, strict=False
            ).missing_keys
            assert not missing, f"the parent's tensors {missing} have no counterpart in the block"
            expected = parent(x)
        got = _start(block, ctx.spec)(x)
    diff = _max_diff(got, expected)
    assert diff <= IDENTITY_TOL * _scale(expected), f"started as the identity, output differs by {diff:.3g}"
    scratch = _first_gradients(ctx.make().train(), x, 2)
    late = [name for name, step in scratch.items() if step is None]
    assert not late, f"built from scratch, no gradient after one optimiser step: {late}"
    started = _first_gradients(_start(ctx.make().train(), ctx.spec), x, MAX_BACKWARDS)
    never = [name for name, step in started.items() if step is None]
    assert not never, f"started as the identity, no gradient within {MAX_BACKWARDS} backward passes: {never}"
    first = min((s for s in started.values() if s is not None), default=None)
    assert first == 1, "started as the identity, no parameter gets a gradient at the first step: it cannot leave"
    last = max(started.values())
    learn = f"from scratch all {len(scratch)} parameters get a gradient after one step; " if scratch else ""
    return (
        f"max |out - expected| = {diff:.1g}; {learn}from the identity start the first step moves it, "
        f"all {len(started)} parameters by backward pass {last}"
    )


def _first_gradients(block: nn.Module, x: torch.Tensor, passes: int) -> dict[str, int | None]:
    """Train a block on a random target; return each parameter's first backward pass (1-based) with a gradient."""
    first: dict[str, int | None] = {name: None for name, _ in block.named_parameters()}
    if not first:  # a parameter-free block (before its identity mix): nothing to learn
        return first
    torch.manual_seed(0)
    optimizer = torch.optim.SGD(block.parameters(), lr=0.1)
    with torch.no_grad():
        target = torch.randn_like(block(x))
    for k in range(1, passes + 1):
        optimizer.zero_grad()
        nn.functional.mse_loss(block(x), target).backward()
        for name, p in block.named_parameters():
            if first[name] is None and p.grad is not None and bool(p.grad.abs().sum() > 0):
                first[name] = k
        if all(v is not None for v in first.values()):
            break
        optimizer.step()
    return first


def _check_round_trip(ctx: _Context) -> str:
    x = torch.randn(2, C, 9, 11, generator=torch.Generator().manual_seed(2))
    block = _start(randomize_(ctx.make(), 0), ctx.spec, mix=0.3).eval()
    twin = _start(ctx.make(), ctx.spec).eval()
    twin.load_state_dict(block.state_dict(), strict=True)
    buffer = io.BytesIO()
    torch.save(block, buffer)
    buffer.seek(0)
    copies = {"state dict": twin, "torch.save/load": torch.load(buffer, weights_only=False), "deepcopy": None}
    copies["deepcopy"] = copy.deepcopy(block)
    with torch.no_grad():
        expected = block(x)
        for how, other in copies.items():
            diff = _max_diff(other.eval()(x), expected)
            assert diff == 0, f"{how} round trip changes the output by {diff:.3g}"
    return ", ".join(copies)


def _check_safe_load(ctx: _Context) -> str:
    from ultralytics.nn.tasks import torch_safe_load

    model = ctx.model()
    for block in _ours(model, ctx.spec):
        _start(randomize_(block, 0), ctx.spec, mix=0.3)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "block.pt"
        torch.save({"model": model, "epoch": -1}, path)
        ckpt, _ = torch_safe_load(path, safe_only=True)
    loaded = ckpt["model"].eval()
    with torch.no_grad():
        diff = _relative_diff(_outputs(loaded, ctx.image), _outputs(model, ctx.image))
    assert diff == 0, f"the weights-only loaded detector differs by {diff:.3g}"
    return f"weights-only load of a {ctx.home()[:-5]} checkpoint"


def _check_fuse(ctx: _Context) -> str:
    x = torch.randn(2, C, 10, 12, generator=torch.Generator().manual_seed(3))
    block = randomize_(ctx.make(), 0).eval()
    with torch.no_grad():
        expected = block(x)
        fused = copy.deepcopy(block)
        n = fuse_blocks(fused)
        diff = _max_diff(fused(x), expected)
        bound = _fuse_bound(block, x, expected)
    assert diff <= bound, f"block fuse() changes the output by {diff:.3g} (allowed: {bound:.3g})"
    # Ultralytics' model.fuse() (predict, val and export call it) must fuse the blocks inside the detector the same
    # way. A random-weight detector's activations are tiny, which would hide a difference, so the blocks taken out of
    # the fused detector are compared with their unfused copies on inputs of unit scale.
    model = ctx.model()
    inside = _ours(model, ctx.spec)
    shapes: list[torch.Size] = []
    handles = [b.register_forward_hook(lambda m, a, o: shapes.append(a[0].shape)) for b in inside]
    for b in inside:  # its attention, not an extended parent's convolutions (they would explode)
        for part in _attention_parts(b, ctx.spec):
            randomize_(part, 0)
    with torch.no_grad():
        before = _outputs(model, ctx.image)
        for handle in handles:
            handle.remove()
        unfused = copy.deepcopy(inside)
        model = model.fuse(verbose=False)
        model_diff = _relative_diff(_outputs(model, ctx.image), before)
        errors = []  # (difference, its bound), both relative to the block's output scale
        for shape, reference, block in zip(shapes, unfused, _ours(model, ctx.spec), strict=True):
            x = torch.randn(shape, generator=torch.Generator().manual_seed(4))
            y = reference(x)
            errors.append((_max_diff(block(x), y) / _scale(y), _fuse_bound(reference, x, y) / _scale(y)))
        worst, worst_bound = max(errors, key=lambda e: e[0] / e[1], default=(0.0, FUSE_TOL))
    assert worst <= worst_bound, (
        f"model.fuse() changes a block's output by {worst:.3g} (relative; allowed: {worst_bound:.3g})"
    )
    assert model_diff <= FUSE_TOL, f"detector fuse() changes the outputs by {model_diff:.3g} (relative)"
    return f"{n} block fuse() call(s); block {diff:.1g}, inside the fused detector {worst:.1g}"


def _check_compile(ctx: _Context) -> str:
    if not ctx.compile:
        raise _Skip("opt-in (compile=True / --compile): an inductor build takes tens of seconds on a CPU")
    x = torch.randn(2, C, 10, 12, generator=torch.Generator().manual_seed(4))
    block = randomize_(ctx.make(), 0).eval()
    with torch.no_grad():
        expected = block(x)
        diff = _max_diff(torch.compile(block)(x), expected)
    assert diff <= FUSE_TOL * _scale(expected), f"compiled output differs by {diff:.3g}"
    return f"max diff {diff:.1g}"


def _check_onnx(ctx: _Context) -> str:
    if not ctx.onnx:
        raise _Skip("turned off (onnx=False / --no-onnx)")
    if importlib.util.find_spec("onnx") is None or importlib.util.find_spec("onnxruntime") is None:
        raise _Skip("onnx and onnxruntime are not installed (pip install onnx onnxruntime)")
    import onnxruntime as ort

    from yolo_attn.profiling.blocks import deployed_block
    from yolo_attn.profiling.runtime import model_opset

    # an extends block's own convolutions get fan-in-scaled weights: unscaled random weights through a chain of
    # convolutions and attention grow the map to ~1e6, where float32 rounding alone breaks any tolerance
    block = randomize_(ctx.make(32), 0, fan_in=ctx.spec.kind == registry.EXTENDS).eval()
    opset = model_opset(block)  # 17, or later where a block's operator exists only in a later opset
    x = torch.randn(2, 32, 12, 7, generator=torch.Generator().manual_seed(5))
    diffs = []
    for form, module in (("unfused", block), ("fused", deployed_block(block))):
        onnx_model = export_onnx(module, torch.randn(1, 32, 8, 10), opset)
        session = ort.InferenceSession(onnx_model, providers=["CPUExecutionProvider"])
        (y,) = session.run(None, {"x": x.numpy()})
        with torch.no_grad():
            expected = module(x)
        diff = _max_diff(torch.from_numpy(y), expected)
        assert y.shape == tuple(expected.shape), f"{form}: ONNX output {y.shape} at input {tuple(x.shape)}"
        assert diff <= ONNX_TOL * _scale(expected), f"{form}: onnxruntime differs by {diff:.3g}"
        diffs.append(f"{form} {diff:.1g}")
    return f"opset {opset}, traced at 1x8x10, run at 2x12x7: " + ", ".join(diffs)


def export_onnx(module: nn.Module, example: torch.Tensor, opset: int) -> bytes:
    """Export a block to ONNX as Ultralytics exports a model: TorchScript-based, dynamic batch, H and W.

    Args:
        module (nn.Module): The block, in eval mode.
        example (torch.Tensor): The tracing input, (B, C, H, W).
        opset (int): The ONNX opset.

    Returns:
        (bytes): The ONNX model, input ``x`` and output ``y``, both with dynamic batch, H and W.
    """
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about Python values; callers compare the outputs
        torch.onnx.export(
            module,
            example,
            buffer,
            opset_version=opset,
            dynamo=False,  # what Ultralytics uses
            input_names=["x"],
            output_names=["y"],
            dynamic_axes={"x": {0: "b", 2: "h", 3: "w"}, "y": {0: "b", 2: "h", 3: "w"}},
        )
    return buffer.getvalue()


def _check_transfer(ctx: _Context) -> str:
    from yolo_attn.finetune.transfer import rename_keys
    from yolo_attn.integration.loading import load_pretrained

    baseline, target = _normal_weights(ctx.model(block=False)), ctx.model()
    report = load_pretrained(target, baseline, verbose=False)
    source, landed = baseline.state_dict(), target.state_dict()
    renamed, _ = rename_keys(list(source), {s: t for s, t in report.layer_map})
    lost = [k for k in source if k not in renamed or not torch.equal(landed.get(renamed[k], torch.empty(0)), source[k])]
    assert report.transferred == report.source_tensors and not lost, (
        f"{report.transferred}/{report.source_tensors} baseline tensors transferred; not kept: {lost[:5]}"
    )
    target.eval()
    with torch.no_grad():
        expected = _outputs(baseline, ctx.image)
        diff = _relative_diff(_outputs(target, ctx.image), expected)
    assert diff <= IDENTITY_TOL, f"step-0 outputs differ from the baseline's by {diff:.3g} (relative)"
    return f"{ctx.home()[:-5]}: {report.transferred}/{report.source_tensors} tensors; step-0 max diff {diff:.1g}"


COMPOSE_HOSTS = ("C2f", "C3k2")  # a channel block is also checked inside these hosts
COMPOSED_PROPERTIES = ("shape kept", "YAML rows v8/11/26", "identity start", "transfer", "fuse", "ONNX")

PROPERTIES: dict[str, Callable[[_Context], str]] = {
    "shape kept": _check_shape,
    "YAML rows v8/11/26": _check_yaml,
    "bad arg -> YAMLRowError": _check_bad_arg,
    "identity start": _check_identity,
    "state dict + pickle": _check_round_trip,
    "safe load": _check_safe_load,
    "fuse": _check_fuse,
    "torch.compile": _check_compile,
    "ONNX": _check_onnx,
    "transfer": _check_transfer,
}
