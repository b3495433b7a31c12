"""Exponential moving average of model weights (`use_ema`, `ema_decay`, `ema_epoch`).

`ModelEma(model, decay)` keeps a frozen copy of the model in `.module`;
`update(model)` moves every floating-point entry of its state dict towards the
model's (`ema = decay * ema + (1 - decay) * weight`) and copies the others
(integer buffers). `.module.state_dict()` is what checkpoints store under
'ema_model', as the original does.
"""
from __future__ import annotations

import copy
from typing import Optional

import torch
from torch import nn


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if hasattr(model, "module") and isinstance(model.module, nn.Module) else model


class ModelEma(nn.Module):
    def __init__(self, model: nn.Module, decay: float = 0.9997, device: Optional[torch.device] = None):
        super().__init__()
        self.module = copy.deepcopy(_unwrap(model))
        self.module.eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.decay = float(decay)
        self.device = device
        if device is not None:
            self.module.to(device=device)

    @torch.no_grad()
    def _merge(self, model: nn.Module, blend: bool) -> None:
        src = _unwrap(model).state_dict()
        seen = set()
        for name, ema_v in self.module.state_dict().items():
            # DINO shares its box/class heads between the decoder and the model, so one tensor
            # appears under several names; average it once
            key = (ema_v.data_ptr(), ema_v.storage_offset(), tuple(ema_v.shape))
            if key in seen:
                continue
            seen.add(key)
            model_v = src[name].detach()
            if self.device is not None:
                model_v = model_v.to(device=self.device)
            if blend and ema_v.dtype.is_floating_point:
                ema_v.mul_(self.decay).add_(model_v.to(ema_v.dtype), alpha=1.0 - self.decay)
            else:
                ema_v.copy_(model_v)

    def update(self, model: nn.Module) -> None:
        """One EMA step towards `model` (a DDP wrapper is looked through)."""
        self._merge(model, blend=True)

    def set(self, model: nn.Module) -> None:
        """Copy `model`'s weights into the average."""
        self._merge(model, blend=False)
