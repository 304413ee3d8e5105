"""The plan of a comparison: a fixed grid of cells (model x seed) and the settings every cell shares.

``make_plan`` validates the grid and the settings; ``save_plan`` writes them to ``<out>/plan.json`` when a comparison
starts and refuses to go on in a folder whose cells were made with other settings (data, epochs, imgsz, batch, train
overrides, evaluation backend, pretrained weights, task, fine-tuning protocol). The grid itself may grow between calls
(more seeds, more models): the settings may not. Execution details (device, latency runs) are in the plan too, but may
change on resume.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from yolo_attn.experiments.files import PLAN, load_records, read_json, run_key, run_path, write_json_atomic
from yolo_attn.experiments.tasks import TASKS, get_task
from yolo_attn.finetune.protocol import ADDED_LATER, LEGACY, split_protocol

__all__ = ("TASKS", "Cell", "Plan", "check_settings", "load_plan", "make_plan", "save_plan")

# Settings compare() owns: they are either its own arguments or must differ per run.
ARGUMENT_KEYS = {"data", "epochs", "imgsz", "batch", "device", "pretrained"}
RESERVED_KEYS = {"seed", "project", "name", "exist_ok", "model", "mode", "resume", "task"}


@dataclass(frozen=True)
class Cell:
    """One run of the grid: a model trained with a seed.

    Attributes:
        model (str): Model YAML or weights, as given.
        stem (str): Its file stem, the model's name in file names and tables.
        seed (int): Training seed.
    """

    model: str
    stem: str
    seed: int

    @property
    def key(self) -> str:
        """The cell's name in file names, e.g. ``yolov8n-cbam_seed0``."""
        return run_key(self.stem, self.seed)


@dataclass
class Plan:
    """A comparison: models x seeds under one set of settings.

    Attributes:
        models (list[str]): Model YAMLs or weights; the first is the baseline.
        seeds (list[int]): Seeds; every model is trained once per seed.
        settings (dict[str, Any]): What every cell shares and a resume must not change: ``data``, ``epochs``,
            ``imgsz``, ``batch``, ``train_overrides``, ``backend`` (None for classify), ``pretrained``, ``task``,
            ``protocol`` (the ``attn_*`` settings of `finetune.protocol`, taken out of the overrides; JSON-normalised).
        device (str | None): Ultralytics device of the comparison (how cells are placed is the executor's business).
        latency_runs (int): Timed batch-1 passes per model at report time (0 skips latency).
        placement (list[dict[str, str]] | None): For a placement grid (`yolo_attn.experiments.placement`), one
            ``{"label", "block", "site"}`` per variant (the baseline is the first model): the report's heat map axes.
            Like ``device``, not a guarded setting: a grid may grow by blocks and sites.
    """

    models: list[str]
    seeds: list[int]
    settings: dict[str, Any]
    device: str | None = None
    latency_runs: int = 50
    placement: list[dict[str, str]] | None = None
    stems: list[str] = field(init=False)

    def __post_init__(self) -> None:
        self.stems = check_grid(self.models, self.seeds)

    @property
    def cells(self) -> list[Cell]:
        """The cells, model by model (baseline first), seed by seed."""
        return [Cell(m, s, seed) for m, s in zip(self.models, self.stems, strict=True) for seed in self.seeds]

    def cell(self, key: str) -> Cell:
        """Return the cell named ``key``.

        Args:
            key (str): A cell name, e.g. ``yolov8n_seed0``.

        Returns:
            (Cell): The cell.
        """
        for cell in self.cells:
            if cell.key == key:
                return cell
        raise KeyError(f"no cell {key!r} in this plan; its cells are {', '.join(c.key for c in self.cells)}")

    def to_dict(self) -> dict[str, Any]:
        """Return the plan as written to ``plan.json``."""
        data = asdict(self)
        data.pop("stems")
        if data["placement"] is None:  # the plan.json of a plain grid, as before placement grids existed
            data.pop("placement")
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Plan:
        """Build a plan from the content of ``plan.json``."""
        return cls(
            models=list(data["models"]),
            seeds=[int(s) for s in data["seeds"]],
            settings=dict(data["settings"]),
            device=data.get("device"),
            latency_runs=int(data.get("latency_runs", 50)),
            placement=data.get("placement"),
        )


def make_plan(
    data: str | Path,
    models: Sequence[str | Path],
    seeds: Sequence[int],
    epochs: int,
    imgsz: int | None = None,
    batch: int = 16,
    device: str | int | None = None,
    train_overrides: dict[str, Any] | None = None,
    backend: str = "pycocotools",
    latency_runs: int = 50,
    pretrained: str | Path | None = None,
    task: str = "detect",
    **more: Any,
) -> Plan:
    """Validate a comparison's arguments and return its plan (see ``yolo_attn.experiments.compare.compare``).

    The arguments are the ``plan=True`` fields of ``CompareSettings``; a field added there with ``plan=True`` arrives
    in ``more`` and is recorded as it is (JSON-normalised) among the settings every cell shares, guarded on resume.

    Returns:
        (Plan): The plan; paths of files that exist (data, pretrained weights) are made absolute. The task's
            description (`yolo_attn.experiments.tasks`) checks the data (classify: an ImageFolder root or a data YAML
            naming one, the root is kept) and gives the default ``imgsz``; ``backend`` (a COCO setting) is recorded
            as None for the tasks not evaluated by COCO.
    """
    spec = get_task(task)  # what the task defaults to and how its data argument is checked
    data = spec.resolve_data(data)
    backend = backend if spec.uses_backend else None
    protocol, train_overrides = split_protocol(train_overrides or {})  # attn_* keys: how new blocks fine-tune
    if protocol.warmup_epochs >= int(epochs):
        raise ValueError(f"attn_warmup_epochs={protocol.warmup_epochs} leaves none of the {epochs} epochs to train")
    settings = {
        "data": _absolute_if_file(data),
        "epochs": int(epochs),
        "imgsz": int(spec.default_imgsz if imgsz is None else imgsz),
        "batch": int(batch),
        "train_overrides": check_overrides(train_overrides or {}, device),
        "backend": backend,
        "pretrained": None if pretrained is None else _absolute_if_file(pretrained),
        "task": task,
        "protocol": protocol.to_settings(),
        **more,
    }
    settings = json.loads(json.dumps(settings))  # the form it takes in a JSON file, so resume checks compare alike
    return Plan(
        models=[str(m) for m in models],
        seeds=[int(s) for s in seeds],
        settings=settings,
        device=None if device is None else str(device),
        latency_runs=int(latency_runs),
    )


def save_plan(out: Path, plan: Plan) -> None:
    """Write ``out/plan.json``, or refuse when ``out`` holds a comparison made with other settings.

    Both the previous ``plan.json`` and every finished cell's own record are checked, so a folder written before
    plans existed is guarded too.

    Args:
        out (Path): Comparison folder (created if needed).
        plan (Plan): This comparison.
    """
    out = Path(out)
    (out / "runs").mkdir(parents=True, exist_ok=True)
    if (out / PLAN).exists():
        check_settings(out / PLAN, read_json(out / PLAN)["settings"], plan.settings)
    for record in load_records(out):
        if record["status"] == "done":
            path = run_path(out, run_key(record["stem"], record["seed"]))
            check_settings(path, record["settings"], plan.settings)
    write_json_atomic(out / PLAN, plan.to_dict())


def load_plan(out: Path) -> Plan:
    """Return the plan of a comparison folder.

    Args:
        out (Path): Comparison folder.

    Returns:
        (Plan): The plan written by the last ``compare`` call on it.
    """
    path = Path(out) / PLAN
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: {out} is not a comparison folder (or predates plan.json)")
    return Plan.from_dict(read_json(path))


def check_settings(path: Path, before: dict[str, Any], now: dict[str, Any]) -> None:
    """Raise if the settings recorded in ``path`` differ from this comparison's.

    Args:
        path (Path): The file the old settings come from (named in the message).
        before (dict[str, Any]): Settings recorded there.
        now (dict[str, Any]): This comparison's settings (JSON-normalised).
    """
    # folders written before these settings existed were detection ones, with Ultralytics' own param groups
    before = {"task": "detect", "protocol": LEGACY.to_settings(), **before}
    before["protocol"] = {**ADDED_LATER, **before["protocol"]}  # keys added since: what its runs got
    changed = {k: (before.get(k), v) for k, v in now.items() if before.get(k) != v}
    if changed:
        detail = "; ".join(f"{k}: {old!r} before, {new!r} now" for k, (old, new) in changed.items())
        raise ValueError(
            f"{path} was made with other settings ({detail}). Cells of one comparison must share their settings: "
            f"use another out folder, or repeat the settings it was started with."
        )


def check_grid(models: Sequence[str], seeds: Sequence[int]) -> list[str]:
    """Validate the grid and return each model's stem (its name in file names and tables).

    Args:
        models (Sequence[str]): Model YAMLs or weights.
        seeds (Sequence[int]): Seeds.

    Returns:
        (list[str]): File stems of ``models``, in order.
    """
    if not models or not seeds:
        raise ValueError(f"compare needs at least one model and one seed, got models={models} seeds={seeds}")
    stems = [Path(m).stem for m in models]
    for name, values in (("model file name", stems), ("seed", list(seeds))):
        repeated = sorted({str(v) for v in values if values.count(v) > 1})
        if repeated:
            raise ValueError(f"each {name} must appear once, repeated: {', '.join(repeated)}")
    return stems


def check_overrides(overrides: dict[str, Any], device: str | int | None) -> dict[str, Any]:
    """Refuse train overrides that compare owns, and return a plain copy of the others.

    Args:
        overrides (dict[str, Any]): Ultralytics train settings.
        device (str | int | None): The compare device (only used in the message).

    Returns:
        (dict[str, Any]): The overrides.
    """
    arguments = sorted(ARGUMENT_KEYS & overrides.keys())
    if arguments:
        raise ValueError(f"set {', '.join(arguments)} with the compare argument(s) of that name, not as an override")
    reserved = sorted(RESERVED_KEYS & overrides.keys())
    if reserved:
        raise ValueError(f"compare sets {', '.join(reserved)} itself for each run (device={device}); remove them")
    return dict(overrides)


def _absolute_if_file(path: str | Path) -> str:
    """Return ``path`` made absolute when it names an existing file, else as given (a name Ultralytics resolves)."""
    return str(Path(path).resolve()) if Path(path).exists() else str(path)
