"""Compare models x seeds under identical settings, at any scale: plan -> cell -> executor -> files -> report.

Modules, in the order data flows (each imports only from those before it):

- ``tasks``: one description per Ultralytics task (metric columns, labels, default imgsz, evaluator, data check),
  read by every stage below, so no stage branches on the task;
- ``files``: the comparison folder's layout, atomic JSON writes, the typed cell record, loading records back;
- ``plan``: the grid of cells (models x seeds) and the settings they share, ``plan.json``, the resume guard;
- ``cell``: train and evaluate one cell, write its JSON (also ``python -m yolo_attn.experiments.cell``);
- ``executors``: where cells run, executor objects picked by name from ``EXECUTORS`` (in this process, side by side
  in processes pinned to one GPU each, submitit's local executor, a Slurm job array), each with ``submit`` returning
  a job with submitit's ``done()``/``result()``/``cancel()``, and one slot loop (``run_slots``) for all;
  ``submitit_executor``: what the submitit ones submit (optional ``submitit``); devices are parsed by
  ``yolo_attn.utils.devices``;
- ``costs``: params, FLOPs and latency, measured once at report time into files;
- ``placement``: a placement grid's YAMLs (baseline + each block at each site; ``PlacementGrid`` for ``compare``);
- ``stats`` (intervals, paired t, Holm), ``aggregate`` (records -> rows, Holm-corrected verdicts), ``seeds`` and
  ``heatmap`` (seeds that trained alike; the block x site heat map), ``sections`` (those two as report sections),
  ``render`` (rows -> markdown, CSV), ``plots`` (figures) and ``report`` (the files -> all of them): a pure function
  of the files;
- ``compare``: the ``yolo-attn compare`` command tying them together: ``CompareSettings`` (every setting declared
  once, from which the CLI flags, the ``compare()`` keywords and ``plan.json`` come) and ``run_comparison``.

The entry point ``yolo_attn.experiments.compare.compare`` is not re-exported here, so that
``yolo_attn.experiments.compare`` stays the module.
"""

from yolo_attn.experiments.files import load_runs
from yolo_attn.experiments.report import summarize, write_report

__all__ = ("load_runs", "summarize", "write_report")
