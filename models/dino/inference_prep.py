"""Making a DINO that only runs inference faster, in place (after its weights are loaded):
frozen batch norm of a ResNet backbone folded into its convolutions, and channels_last for
that backbone where it was measured to pay (bfloat16 autocast on the CPU; docs/OPS.md).
Model-specific: the device-generic autocast choice lives in util/precision.py."""
from __future__ import annotations

from typing import Optional, Tuple

import torch
from torch import nn

from util.precision import autocast_dtype, channels_last

from .backbones.resnet import ResNetBody, fold_frozen_batch_norm


def _resnet_body(model: nn.Module) -> Optional[nn.Module]:
    """The model's ResNet backbone body (DINO's `backbone[0]`), or None for other backbones."""
    backbone = getattr(model, "backbone", None)
    body = backbone[0] if isinstance(backbone, nn.Sequential) and len(backbone) else None
    return body if isinstance(body, ResNetBody) else None


def use_channels_last(model: nn.Module, device: torch.device, amp: bool) -> bool:
    """Put the model's ResNet backbone in channels_last where that was measured to pay: bfloat16
    autocast on the CPU (whole DINO-R50 inference 1.38x faster; in float32 it gains nothing,
    docs/OPS.md). Returns whether it did; other backbones are left as they are."""
    body = _resnet_body(model)
    device = torch.device(device)
    if device.type != "cpu" or autocast_dtype(device, amp) is not torch.bfloat16 or body is None:
        return False
    channels_last(body)
    return True


def prepare_for_inference(model: nn.Module, device: torch.device, amp: bool) -> Tuple[str, ...]:
    """Make an inference-only model faster, in place; returns what was done (for the log).

    * frozen batch norm of a ResNet backbone folded into its convolutions (one pass less over
      every feature map, two casts less under bfloat16; the state dict changes, so call this
      after the weights are loaded and never save or train the result);
    * channels_last for that backbone under bfloat16 on the CPU (`use_channels_last`).
    """
    done = []
    body = _resnet_body(model)
    if body is not None:
        folded = fold_frozen_batch_norm(body)
        if folded:
            done.append(f"{folded} frozen batch norms folded into convolutions")
    if use_channels_last(model, device, amp):
        done.append("channels_last ResNet")
    return tuple(done)
