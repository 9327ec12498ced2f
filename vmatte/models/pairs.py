"""Graphs for onnxruntime's blocked (NCHWc) convolutions on AVX-512 CPUs: two copies of a net side
by side in the channels, exported as `<part>_pairs.onnx` (vmatte.backends.base.PAIRED).

There onnxruntime stores activations in blocks of 16 channels, so an 8-channel layer pays for 16:
an 8 -> 8 convolution costs a 16 -> 16 one, an 8 -> 1 head costs 16 outputs. Two nets of the same
shape that run on the same pixels can share the blocks instead:
- the refiner's patch net on two windows at once: a [K,C,S,S] batch is read as [K/2,2C,S,S] (the
  same memory), so K must be even (PairedPatchNet);
- the generator's content and segmentation encoders, which have the same widths (PairedGenerator).
Each convolution becomes a block-diagonal one (both nets' folded weights), or a grouped one where
each net's channels fill whole blocks; a 3x3 head onto one channel becomes a depthwise convolution
and a channel sum, and 2x upsamples take a constant scale (onnxruntime then keeps them blocked).
Same weights, same output to float rounding (tests/test_pairs.py). On CPUs with 8-channel blocks
(AVX2) or none (ARM) the zeros of the block-diagonal weights would be extra work, so the backend
runs these files only on AVX-512 (vmatte.backends.base.part_file). Eval mode only: batch norm is
folded into the weights."""
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


class PairedConv(nn.Module):
    """ConvBNReLU blocks of the same kind (stride, dilation, activation), one per member, applied
    at once to the members' channels stacked in order."""

    def __init__(self, blocks: list[nn.Sequential], unpadded: bool = False):
        super().__init__()
        folded = [_folded(b) for b in blocks]
        ws = [f[0] for f in folded]
        _, _, conv, self.relu = folded[0]
        kinds = {(f[2].stride, f[2].padding, f[2].dilation, f[2].groups, f[2].kernel_size, f[3]) for f in folded}
        if len(kinds) != 1 or conv.groups != 1:
            raise ValueError(f"paired convolutions must be plain (groups 1) and of one kind; got {sorted(kinds)}")
        cout, cin = ws[0].shape[:2]
        same = all(w.shape == ws[0].shape for w in ws)
        self.groups = len(ws) if same and cin % BLOCK == 0 and cout % BLOCK == 0 else 1
        if self.groups > 1:
            weight = torch.cat(ws, 0)  # [n*cout, cin, k, k]
        else:  # block-diagonal [sum cout, sum cin, k, k]
            weight = torch.zeros(sum(w.shape[0] for w in ws), sum(w.shape[1] for w in ws), *ws[0].shape[2:])
            o = i = 0
            for w in ws:
                weight[o:o + w.shape[0], i:i + w.shape[1]] = w
                o, i = o + w.shape[0], i + w.shape[1]
        self.register_buffer("weight", weight)
        self.register_buffer("bias", torch.cat([f[1] for f in folded]))
        self.stride, self.dilation = conv.stride, conv.dilation
        self.padding = (0, 0) if unpadded else conv.padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)
        return torch.relu(y) if self.relu else y


def _paired(seq: nn.Sequential, n: int, unpadded: bool = False) -> nn.Sequential:
    """A Sequential of ConvBNReLU blocks, n copies side by side."""
    return nn.Sequential(*[PairedConv([b] * n, unpadded) for b in seq])


def _upsample2(x: torch.Tensor) -> torch.Tensor:
    """Bilinear 2x (half-pixel): the same as a resize to twice the size, at a constant scale."""
    return F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)


class _DepthwiseHead(nn.Module):
    """A 3x3 conv onto one channel as a depthwise conv and a channel sum, over `n` members' channels
    stacked in order -> [B,n,...] (member j in channel j)."""

    def __init__(self, head: nn.Conv2d, n: int = 1, padding: int = 0):
        super().__init__()
        if head.kernel_size != (3, 3) or head.out_channels != 1:
            raise ValueError("a depthwise head needs a 3x3 conv onto one channel")
        self.width, self.n, self.padding = head.in_channels, n, padding
        self.register_buffer("weight", head.weight.detach().reshape(self.width, 1, 3, 3).repeat(n, 1, 1, 1).clone())
        self.register_buffer("bias", head.bias.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.conv2d(x, self.weight, None, padding=self.padding, groups=self.n * self.width)  # [B,n*C,H',W']
        return h.unflatten(1, (self.n, self.width)).sum(2) + self.bias  # [B,n,H',W']


class _PairedPatchBody(nn.Module):
    """RefinerNet.forward(x, crop=context) on windows in pairs: x [K,4,S,S] -> correction [K,1,64,64]."""

    def __init__(self, net: nn.Module, pairs: int, context: int):
        super().__init__()
        self.pairs, self.margin = pairs, context - net.trailing_convs()
        if self.margin < 0:
            raise ValueError("the refiner's context is under its decoder's reach; the paired patch net needs it unpadded")
        self.enc1, self.enc2 = _paired(net.enc1, pairs), _paired(net.enc2, pairs)
        self.lift = PairedConv([net.lift] * pairs)
        self.dec = _paired(net.dec, pairs, unpadded=True)
        self.head = _DepthwiseHead(net.head, pairs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        S, m = x.shape[-1], self.margin
        x = x.reshape(-1, self.pairs * x.shape[1], S, S)  # [K/p, p*4, S, S]: windows side by side in the channels
        e1 = self.enc1(x)  # [K/p, p*a, S, S]
        u = _upsample2(self.lift(self.enc2(e1)))
        f = torch.relu(u + e1)[..., m:S - m, m:S - m]  # the centre plus the decoder's reach
        return self.head(self.dec(f)).reshape(-1, 1, PATCH, PATCH)  # [K,1,64,64]


class PairedPatchNet(nn.Module):
    """Refiner.refine_windows on windows in pairs: image [K,3,S,S] in [0,1] and upsampled alpha
    [K,1,S,S] -> refined cells [K,1,64,64], K a multiple of PAIRS. The net sits under `net`, as in
    the plain export, so profiles and int8 scopes find its nodes under the same name (/net/)."""

    def __init__(self, refiner: nn.Module, pairs: int = PAIRS):
        super().__init__()
        self.context = refiner.cfg.context
        self.net = _PairedPatchBody(refiner.net, pairs, self.context)

    def forward(self, image: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
        P = self.context
        delta = self.net(torch.cat([normalize_rgb(image), alpha], 1))  # [K,1,64,64]
        return torch.clamp(alpha[:, :, P:P + PATCH, P:P + PATCH] + delta, 0.0, 1.0)


class PairedGenerator(nn.Module):
    """Generator.forward with its content and segmentation encoders (and their 1x1 skip reducers)
    side by side in the channels: image [B,3,h,w] in [0,1], mask [B,1,h,w] -> alpha [B,1,h,w]."""

    def __init__(self, gen: nn.Module):
        super().__init__()
        self.levels = nn.ModuleList(
            nn.Sequential(*[PairedConv([c, s]) for c, s in zip(lc, ls)])
            for lc, ls in zip(gen.content.levels, gen.seg.levels))
        self.skips = nn.ModuleList(PairedConv([c, s]) for c, s in zip(gen.skip_c, gen.skip_s))
        self.fuse, self.res, self.ups = gen.fuse, gen.res, gen.ups
        self.head = _DepthwiseHead(gen.head, padding=1)

    def forward(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = normalize_rgb(image)
        f = torch.cat([x, mask, x * mask], 1)  # the content encoder's input, then the segmentation encoder's
        feats = []
        for level in self.levels:
            f = level(f)  # [B, 2w, ...]: content channels, then segmentation channels
            feats.append(f)
        f = self.res(self.fuse(feats[-1]))  # feats[-1] is the original's cat([fc[-1], fs[-1]])
        for j, i in enumerate(reversed(range(len(feats) - 1))):
            f = self.ups[j](torch.cat([_upsample2(f), self.skips[i](feats[i])], 1))
        return torch.sigmoid(self.head(f))
