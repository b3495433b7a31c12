"""Sine position encoding of feature maps, with separate temperatures for the
y and x halves (the original's `pe_temperatureH` / `pe_temperatureW`) and an
optional offset of the pixel positions (`pe_offset`; detrex uses -0.5 with
temperature 10000, the original DINO 0 with temperature 20)."""
import math

import torch
from torch import Tensor, nn

from util.misc import NestedTensor


def _sine_features(coord: Tensor, num_feats: int, temperature: float) -> Tensor:
    """[..., ] coordinates -> [..., num_feats] interleaved sin/cos features."""
    dim_t = torch.arange(num_feats, dtype=torch.float32, device=coord.device)
    dim_t = temperature ** (2 * torch.div(dim_t, 2, rounding_mode="floor") / num_feats)
    pos = coord[..., None] / dim_t
    return torch.stack((pos[..., 0::2].sin(), pos[..., 1::2].cos()), dim=-1).flatten(-2)


class PositionEmbeddingSineHW(nn.Module):
    """Encodes the (y, x) position of every unpadded pixel of a padded batch.

    With `normalize`, positions are cumulative counts of valid pixels plus
    `offset`, divided by the valid height/width and scaled to [0, 2*pi], so
    the encoding does not depend on padding. Output: [B, 2 * num_pos_feats, H, W] (y features
    first, then x).
    """

    def __init__(self, num_pos_feats: int = 64, temperatureH: float = 10000, temperatureW: float = 10000,
                 normalize: bool = False, scale: float = None, offset: float = 0.0):
        super().__init__()
        if scale is not None and not normalize:
            raise ValueError("a scale for the position encoding needs normalize=True")
        self.num_pos_feats = num_pos_feats
        self.temperatureH = temperatureH
        self.temperatureW = temperatureW
        self.normalize = normalize
        self.offset = offset
        self.scale = 2 * math.pi if scale is None else scale

    def forward(self, tensor_list: NestedTensor) -> Tensor:
        not_mask = ~tensor_list.mask
        y_embed = not_mask.cumsum(1, dtype=torch.float32)
        x_embed = not_mask.cumsum(2, dtype=torch.float32)
        if self.normalize:
            eps = 1e-6
            y_embed = (y_embed + self.offset) / (y_embed[:, -1:, :] + eps) * self.scale
            x_embed = (x_embed + self.offset) / (x_embed[:, :, -1:] + eps) * self.scale
        pos_y = _sine_features(y_embed, self.num_pos_feats, self.temperatureH)
        pos_x = _sine_features(x_embed, self.num_pos_feats, self.temperatureW)
        return torch.cat((pos_y, pos_x), dim=3).permute(0, 3, 1, 2)


def build_position_encoding(args) -> nn.Module:
    if args.position_embedding not in ("sine", "v2"):
        raise ValueError(f"position_embedding={args.position_embedding!r} is not supported; use 'sine'")
    return PositionEmbeddingSineHW(
        args.hidden_dim // 2,
        temperatureH=args.pe_temperatureH,
        temperatureW=args.pe_temperatureW,
        normalize=True,
        offset=float(getattr(args, "pe_offset", 0.0)),
    )
