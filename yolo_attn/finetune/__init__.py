"""Fine-tuning a pretrained detector with new blocks.

- `transfer`: a checkpoint's tensors moved into the layers they belong to, by aligning the two model YAMLs.
- `protocol`: the fine-tuning protocol (the new blocks' identity mixes, their learning rate and weight decay).
- `engagement`: how far each new block has moved off the identity after training.
"""
