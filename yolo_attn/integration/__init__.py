"""The integration with Ultralytics: the only code that knows Ultralytics internals, one file per touch point.

- `registration`: the declarative list of patches that `register` applies and `unregister` undoes.
- `parse`: the ``parse_model`` wrapper (placeholders, shape probe, real blocks, the layer table, unknown names).
- `lookup`: the ``yaml_model_load`` wrapper (scale-like folders, shipped YAMLs by bare name) and Ultralytics' names.
- `loading`: the ``BaseModel.load`` wrapper (transfer by YAML alignment, identity start).
- `fusing`: the ``BaseModel.fuse`` wrapper (registered blocks' ``fuse()`` first).
- `run_yaml`: a default training callback that keeps a generated (or shipped) model YAML in the run folder.
- `workers`: the DDP callback and the ``ULTRALYTICS_SAFE_LOAD`` allow-list.

Pure logic stays outside: the block table (`yolo_attn.registry`), row checks
(`yolo_attn.registry.rows`) and the transfer plan (`yolo_attn.finetune.transfer`).

Every Ultralytics internal the project relies on (`internals.CHECKS` tests each one against the installed release):

- ultralytics.nn.tasks.parse_model(d, ch, verbose)
- parse_model -> (nn.Sequential, save); layers carry i, f, type, np
- layer table lines start with the layer index in 3 characters (`parse._LogCapture` replays them)
- ultralytics.nn.tasks.yaml_model_load(path), also imported as ultralytics.engine.model.yaml_model_load
- ultralytics.nn.tasks.guess_model_scale(path)
- ultralytics.nn.tasks.BaseModel.load(self, weights, verbose) and BaseModel.fuse(self, verbose)
- ultralytics.nn.tasks.load_checkpoint(weight) and torch_safe_load(weight, safe_only)
- ultralytics.utils.callbacks.base.default_callbacks['on_pretrain_routine_start']
- ultralytics/cfg/models/{v8,11,26}/{family}[-{task}].yaml, the bases of generated YAMLs (`yolo_attn.cfg.generated`)
- BaseTrainer.save_dir and its args.yaml, written before the on_pretrain_routine_start callbacks (`run_yaml`)
- C2f / C3k2 attributes cv1, cv2, m, c and args; Bottleneck cv1, cv2, add; Conv.conv (`CA_C2f`, `CA_C3k2` read them)
- checkpoint keys epoch, model, ema, optimizer (BaseTrainer.save_model) (`experiments.cell` reads ``last.pt``)
- ULTRALYTICS_SAFE_LOAD (ultralytics.utils.SAFE_LOAD) and torch.serialization safe globals

Also relied upon, through Ultralytics' public behaviour: ``parse_model`` resolves a row's module in its module's
globals (``nn.X`` and ``torchvision.ops.X`` aside), so YAML names of Ultralytics modules are
``vars(ultralytics.nn.tasks)``; Ultralytics' own ``CBAM``, ``ChannelAttention`` and ``SpatialAttention`` are not among
them, so those names are free for ours.
"""

from yolo_attn.integration.loading import load_pretrained, transfer_report_of
from yolo_attn.integration.registration import is_registered, register, unregister

__all__ = ("is_registered", "load_pretrained", "register", "transfer_report_of", "unregister")
