"""MobileNetV3-Large feature extractor, atrous at stride 16, with batch norm folded into the convs.

A second ImageNet-lineage backbone for the segmenter, shaped so that it can start from the
encoder of Robust Video Matting (`rvm_mobilenetv3_fp32.onnx`, GPL-3.0): torchvision's
mobilenet_v3_large `features[0:16]` with the last stage dilated (stride 1, dilation 2), which RVM
trained on people from ImageNet weights. The ONNX file carries each conv with its batch norm
folded in (weight and bias), so this module has conv + bias and no batch norm: batch statistics
of small training batches would otherwise undo the folded scales. `load_rvm_encoder` maps the
file's first 61 convolutions, in graph order, onto it."""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .layers import run_blocks

# (kernel, expanded channels, out, squeeze-excite, hard-swish, stride) of features[1..15]; in = previous out.
MV3_BLOCKS: tuple[tuple[int, int, int, bool, bool, int], ...] = (
    (3, 16, 16, False, False, 1),
    (3, 64, 24, False, False, 2), (3, 72, 24, False, False, 1),
    (5, 72, 40, True, False, 2), (5, 120, 40, True, False, 1), (5, 120, 40, True, False, 1),
    (3, 240, 80, False, True, 2), (3, 200, 80, False, True, 1), (3, 184, 80, False, True, 1), (3, 184, 80, False, True, 1),
    (3, 480, 112, True, True, 1), (3, 672, 112, True, True, 1),
    (5, 672, 160, True, True, 2), (5, 960, 160, True, True, 1), (5, 960, 160, True, True, 1),
)
LOW_BLOCK = 2  # index into MV3_BLOCKS of the last stride-4 block (24 channels)
ATROUS_FROM = 12  # blocks from here on (the stride-32 stage) run at stride 1, dilation 2
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _divisible(v: float, d: int = 8) -> int:
    """torchvision's _make_divisible: round to a multiple of d, never more than 10 % down."""
    n = max(d, int(v + d / 2) // d * d)
    return n + d if n < 0.9 * v else n


def _act(hard_swish: bool) -> nn.Module:
    return nn.Hardswish(inplace=True) if hard_swish else nn.ReLU(inplace=True)


class SqueezeExcite(nn.Module):
    def __init__(self, ch: int):
        super().__init__()
        sq = _divisible(ch // 4)
        self.fc1, self.fc2 = nn.Conv2d(ch, sq, 1), nn.Conv2d(sq, ch, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = F.relu(self.fc1(x.mean(dim=(2, 3), keepdim=True)))  # [B,sq,1,1]
        return x * F.hardsigmoid(self.fc2(s))


class InvertedResidual(nn.Module):
    """1x1 expand (absent when expanded == in), depthwise kxk, optional squeeze-excite, 1x1 project."""

    def __init__(self, cin: int, k: int, mid: int, cout: int, se: bool, hs: bool, stride: int, dilation: int = 1):
        super().__init__()
        layers: list[nn.Module] = []
        if mid != cin:
            layers += [nn.Conv2d(cin, mid, 1), _act(hs)]
        layers += [nn.Conv2d(mid, mid, k, stride, dilation * (k // 2), dilation=dilation, groups=mid), _act(hs)]
        if se:
            layers.append(SqueezeExcite(mid))
        layers.append(nn.Conv2d(mid, cout, 1))
        self.block = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.block(x)
        return x + y if self.residual else y


class MobileNetV3Large(nn.Module):
    """Stem and blocks 1-15 of MobileNetV3-Large at output stride 16. forward(x) -> (stride-4
    features [B,24,h/4,w/4], stride-16 features [B,160,h/16,w/16]). Takes the segmenter's input
    normalised as (x - 0.5) * 2 and re-normalises it with ImageNet's mean and std, as RVM does."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1), nn.Hardswish(inplace=True))
        blocks, cin = [], 16
        for i, (k, mid, cout, se, hs, s) in enumerate(MV3_BLOCKS):
            atrous = i >= ATROUS_FROM
            blocks.append(InvertedResidual(cin, k, mid, cout, se, hs, 1 if atrous else s, 2 if atrous else 1))
            cin = cout
        self.blocks = nn.ModuleList(blocks)
        self.low_ch, self.out_ch = MV3_BLOCKS[LOW_BLOCK][2], cin
        # (x - 0.5) * 2 -> (x - mean) / std, per channel: x * scale + shift
        mean, std = torch.tensor(IMAGENET_MEAN), torch.tensor(IMAGENET_STD)
        self.register_buffer("in_scale", (0.5 / std).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("in_shift", ((0.5 - mean) / std).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return run_blocks(self.stem(x * self.in_scale.to(x.dtype) + self.in_shift.to(x.dtype)), self.blocks, LOW_BLOCK)


def convs_in_order(module: nn.Module) -> list[nn.Conv2d]:
    """The module's convolutions in forward order (registration order matches it here)."""
    return [m for m in module.modules() if isinstance(m, nn.Conv2d)]


def load_rvm_encoder(backbone: MobileNetV3Large, path: str | Path) -> None:
    """Copy the encoder of RVM's MobileNetV3 ONNX file into `backbone`: its convolutions in graph
    order, checked shape by shape (a different file raises instead of loading a wrong model)."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(path)).graph
    inits = {i.name: i for i in graph.initializer}
    convs = [n for n in graph.node if n.op_type == "Conv"]
    own = convs_in_order(backbone)
    if len(convs) < len(own):
        raise ValueError(f"{path}: {len(convs)} convolutions, expected at least {len(own)} (RVM MobileNetV3 ONNX)")
    pairs = []  # every shape checked before anything is copied: a wrong file leaves the backbone as it was
    for i, (node, conv) in enumerate(zip(convs, own)):
        if len(node.input) < 3 or node.input[1] not in inits or node.input[2] not in inits:
            raise ValueError(f"{path}: convolution {i} ({node.name}) has no constant weight and bias")
        w = torch.from_numpy(numpy_helper.to_array(inits[node.input[1]]).copy())
        b = torch.from_numpy(numpy_helper.to_array(inits[node.input[2]]).copy())
        if w.shape != conv.weight.shape or conv.bias is None or b.shape != conv.bias.shape:
            raise ValueError(f"{path}: convolution {i} ({node.name}) is {tuple(w.shape)}, expected "
                             f"{tuple(conv.weight.shape)}: not RVM's MobileNetV3 encoder")
        pairs.append((conv, w, b))
    with torch.no_grad():
        for conv, w, b in pairs:
            conv.weight.copy_(w)
            conv.bias.copy_(b)
