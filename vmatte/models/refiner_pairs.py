"""The refiner's patch net rewritten for onnxruntime's blocked (NCHWc) convolutions on AVX-512 CPUs,
exported as `refiner_patches_pairs.onnx`.

There onnxruntime stores activations in blocks of 16 channels, so the patch net's 8-channel layers
pay for 16 (its 8 -> 8 convolution for 16 -> 16), and the 8 -> 1 head for 16 outputs. This graph
runs two windows side by side in the channels instead: a [K,C,H,W] batch is read as [K/2,2C,H,W]
(the same memory), and each convolution becomes a block-diagonal one (two copies of its folded
weights; a grouped convolution where each window's channels fill whole blocks), so the 16 stored
channels are 16 real ones. The head becomes a depthwise convolution and a channel sum. Same
weights and the same cells to float rounding (tests/test_refiner_pairs.py); 25-30 % less time on
an AVX-512 CPU. On CPUs with 8-channel blocks (AVX2) or none (ARM) the pairs would only add work,
so the backend runs them only on AVX-512 (vmatte.backends.base.patch_net_file). Eval mode only:
batch norm is folded into the weights."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..ops.patches import PATCH
from .layers import normalize_rgb

PAIRS = 2  # windows per stored batch row; the number of windows must be a multiple of it
BLOCK = 16  # onnxruntime's NCHWc block on AVX-512: channel counts that fill it run grouped


def _folded(block: nn.Sequential) -> tuple[torch.Tensor, torch.Tensor, nn.Conv2d, bool]:
    """(weight, bias, conv, has ReLU) of a ConvBNReLU with its batch norm folded into the conv."""
    conv, bn = block[0], block[1]
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    weight = conv.weight * scale[:, None, None, None]
    bias = bn.bias - bn.running_mean * scale
    if conv.bias is not None:
        bias = bias + conv.bias * scale
    return weight.detach().clone(), bias.detach().clone(), conv, len(block) > 2


class _PairedConv(nn.Module):
    """One folded ConvBNReLU applied to `pairs` windows stacked in the channels."""

    def __init__(self, block: nn.Sequential, pairs: int, unpadded: bool = False):
        super().__init__()
        w, b, conv, self.relu = _folded(block)
        cout, cin = w.shape[:2]
        self.grouped = cin % BLOCK == 0 and cout % BLOCK == 0
        if self.grouped:
            self.register_buffer("weight", w.repeat(pairs, 1, 1, 1))  # [pairs*cout, cin, k, k]
        else:
            bd = torch.zeros(pairs * cout, pairs * cin, *w.shape[2:])
            for j in range(pairs):
                bd[j * cout:(j + 1) * cout, j * cin:(j + 1) * cin] = w
            self.register_buffer("weight", bd)
        self.register_buffer("bias", b.repeat(pairs))
        self.pairs = pairs
        self.stride, self.dilation = conv.stride, conv.dilation
        self.padding = (0, 0) if unpadded else conv.padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation,
                     groups=self.pairs if self.grouped else 1)
        return torch.relu(y) if self.relu else y


class PairedPatchNet(nn.Module):
    """Refiner.refine_windows on windows in pairs: image [K,3,S,S] in [0,1] and upsampled alpha
    [K,1,S,S] -> refined cells [K,1,64,64], K a multiple of PAIRS."""

    def __init__(self, refiner: nn.Module, pairs: int = PAIRS):
        super().__init__()
        net = refiner.net
        self.pairs, self.context = pairs, refiner.cfg.context
        self.width = net.head.in_channels
        S = PATCH + 2 * self.context
        if S % 2:
            raise ValueError(f"window side {S} must be even for the paired patch net (a 2x upsample)")
        m = self.context - net.trailing_convs()
        if m < 0:
            raise ValueError("the refiner's context is under its decoder's reach; the paired patch net needs it unpadded")
        self.margin = m
        self.enc1 = nn.Sequential(*[_PairedConv(b, pairs) for b in net.enc1])
        self.enc2 = nn.Sequential(*[_PairedConv(b, pairs) for b in net.enc2])
        self.lift = _PairedConv(net.lift, pairs)
        self.dec = nn.Sequential(*[_PairedConv(b, pairs, unpadded=True) for b in net.dec])
        head = net.head
        if head.kernel_size != (3, 3) or head.out_channels != 1:
            raise ValueError("the paired patch net expects the refiner's 3x3, one-channel head")
        self.register_buffer("head_w", head.weight.detach().reshape(self.width, 1, 3, 3).repeat(pairs, 1, 1, 1).clone())
        self.register_buffer("head_b", head.bias.detach().clone())

    def forward(self, image: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
        P, S, k = self.context, image.shape[-1], self.pairs
        x = torch.cat([normalize_rgb(image), alpha], 1)  # [K,4,S,S]
        x = x.reshape(-1, k * x.shape[1], S, S)  # [K/k, k*4, S, S]: window pairs in the channels
        e1 = self.enc1(x)  # [K/k, k*a, S, S]
        u = F.interpolate(self.lift(self.enc2(e1)), scale_factor=2.0, mode="bilinear", align_corners=False)
        m = self.margin
        f = torch.relu(u + e1)[..., m:S - m, m:S - m]  # the centre plus the decoder's reach
        d = self.dec(f)  # [K/k, k*a, 64+2, 64+2]: the head's reach left
        h = F.conv2d(d, self.head_w, None, groups=k * self.width)  # [K/k, k*a, 64, 64], per channel
        h = h.reshape(h.shape[0], k, self.width, PATCH, PATCH).sum(2) + self.head_b  # [K/k, k, 64, 64]
        delta = h.reshape(-1, 1, PATCH, PATCH)  # [K,1,64,64]
        return torch.clamp(alpha[:, :, P:P + PATCH, P:P + PATCH] + delta, 0.0, 1.0)
