"""DCNv3 (deformable convolution v3, Wang et al., 2023) in plain PyTorch.

`dcnv3_sample` gathers, for every output position and group, `kernel_size**2`
bilinear samples at the regular kernel footprint (scaled by `offset_scale`)
plus learned offsets, and sums them weighted by a mask that is softmax-
normalised over the points of a group. It follows the sampling convention of
the official CUDA kernel (zero padding, pixel centres at +0.5, offsets in
pixels of the padded input), built on `F.grid_sample`, so it runs on any
device and differentiates with autograd.

`DCNv3` is the module InternImage uses: depthwise conv + LayerNorm + GELU
predicts offsets and mask from the input, values go through `input_proj`,
the sampled result through `output_proj`. Parameter names are the official
ones (`dw_conv.0`, `dw_conv.1.1`, `offset`, `mask`, `input_proj`,
`output_proj`).
"""
import torch
import torch.nn.functional as F
from torch import Tensor, nn


def dcnv3_sample(value: Tensor, offset: Tensor, mask: Tensor, kernel_size: int = 3, stride: int = 1,
                 pad: int = 1, dilation: int = 1, group: int = 4, offset_scale: float = 1.0) -> Tensor:
    """Deformable sampling.

    value:  [N, H, W, C] (channels-last), C divisible by `group`.
    offset: [N, Ho, Wo, group * K * K * 2], per group and point an (x, y) offset in pixels.
    mask:   [N, Ho, Wo, group * K * K] weights of the points.
    Points are ordered with the kernel column outer and the row inner, as the
    official kernel. Returns [N, Ho, Wo, C].
    """
    n, h, w, c = value.shape
    _, ho, wo, _ = offset.shape
    dtype = value.dtype
    compute = torch.promote_types(dtype, torch.float32)  # half is too coarse for sampling coordinates
    value = value.to(compute)
    points = kernel_size * kernel_size
    group_channels = c // group
    value = F.pad(value, (0, 0, pad, pad, pad, pad))
    hp, wp = h + 2 * pad, w + 2 * pad

    half = (dilation * (kernel_size - 1)) // 2
    taps = torch.arange(kernel_size, device=value.device, dtype=compute) * dilation - half
    tap_x = taps.repeat_interleave(kernel_size) * offset_scale  # column index outer
    tap_y = taps.repeat(kernel_size) * offset_scale
    centre_y = torch.arange(ho, device=value.device, dtype=compute) * stride + half + 0.5
    centre_x = torch.arange(wo, device=value.device, dtype=compute) * stride + half + 0.5

    off = offset.view(n, ho, wo, group, points, 2).to(compute) * offset_scale
    x = centre_x[None, None, :, None, None] + tap_x + off[..., 0]
    y = centre_y[None, :, None, None, None] + tap_y + off[..., 1]
    # grid_sample with align_corners=False: -1 / +1 are the outer edges of the border pixels.
    grid = torch.stack((x * (2.0 / wp) - 1.0, y * (2.0 / hp) - 1.0), dim=-1)
    grid = grid.permute(0, 3, 1, 2, 4, 5).reshape(n * group, ho * wo, points, 2)

    value = value.reshape(n, hp * wp, group, group_channels).permute(0, 2, 3, 1)
    value = value.reshape(n * group, group_channels, hp, wp)
    sampled = F.grid_sample(value, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    weights = mask.view(n, ho * wo, group, points).transpose(1, 2).reshape(n * group, 1, ho * wo, points)
    out = (sampled * weights.to(compute)).sum(-1)  # [N*G, Cg, Ho*Wo]
    return out.view(n, c, ho * wo).transpose(1, 2).reshape(n, ho, wo, c).to(dtype)


class ToChannelsLast(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return x.permute(0, 2, 3, 1)


class ToChannelsFirst(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return x.permute(0, 3, 1, 2)


def layer_norm_seq(dim: int, channels_first_in: bool = False, channels_first_out: bool = False,
                   eps: float = 1e-6) -> nn.Sequential:
    """LayerNorm wrapped with layout changes, as InternImage builds it (so the
    norm's index in the Sequential, and so its key, is the official one)."""
    layers = [ToChannelsLast()] if channels_first_in else []
    layers.append(nn.LayerNorm(dim, eps=eps))
    if channels_first_out:
        layers.append(ToChannelsFirst())
    return nn.Sequential(*layers)


class DCNv3(nn.Module):
    """Deformable convolution v3 on channels-last maps [N, H, W, C]."""

    def __init__(self, channels: int, kernel_size: int = 3, stride: int = 1, pad: int = 1, dilation: int = 1,
                 group: int = 4, offset_scale: float = 1.0, dw_kernel_size: int = None):
        super().__init__()
        if channels % group != 0:
            raise ValueError(f"channels ({channels}) must be divisible by group ({group})")
        dw_kernel_size = dw_kernel_size or kernel_size
        self.channels, self.kernel_size, self.stride, self.pad = channels, kernel_size, stride, pad
        self.dilation, self.group, self.offset_scale = dilation, group, offset_scale
        self.dw_conv = nn.Sequential(
            nn.Conv2d(channels, channels, dw_kernel_size, padding=(dw_kernel_size - 1) // 2, groups=channels),
            layer_norm_seq(channels, channels_first_in=True),
            nn.GELU())
        self.offset = nn.Linear(channels, group * kernel_size * kernel_size * 2)
        self.mask = nn.Linear(channels, group * kernel_size * kernel_size)
        self.input_proj = nn.Linear(channels, channels)
        self.output_proj = nn.Linear(channels, channels)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Zero offsets and uniform point weights at the start; Xavier projections."""
        for layer in (self.offset, self.mask):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)
        for layer in (self.input_proj, self.output_proj):
            nn.init.xavier_uniform_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, x: Tensor) -> Tensor:
        n, h, w, _ = x.shape
        value = self.input_proj(x)
        feat = self.dw_conv(x.permute(0, 3, 1, 2))
        offset = self.offset(feat)
        mask = self.mask(feat).view(n, h, w, self.group, -1).softmax(-1).view(n, h, w, -1)
        out = dcnv3_sample(value, offset, mask, self.kernel_size, self.stride, self.pad, self.dilation,
                           self.group, self.offset_scale)
        return self.output_proj(out)
