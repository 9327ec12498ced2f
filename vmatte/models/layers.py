"""Small building blocks shared by the model components."""
from __future__ import annotations

import torch
from torch import nn


class ConvBNReLU(nn.Sequential):
    """3x3 (or kxk) conv, batch norm, ReLU: the workhorse of every component."""

    def __init__(self, cin: int, cout: int, k: int = 3, stride: int = 1, dilation: int = 1, act: bool = True):
        pad = dilation * (k - 1) // 2
        layers: list[nn.Module] = [
            nn.Conv2d(cin, cout, k, stride=stride, padding=pad, dilation=dilation, bias=False),
            nn.BatchNorm2d(cout),
        ]
        if act:
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


def run_blocks(f: torch.Tensor, blocks: nn.ModuleList, tap: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A backbone's blocks over stem features f -> (output of blocks[tap], the last output): the
    low-level and high-level features DeepLabV3+ takes from one pass."""
    low = f
    for i, block in enumerate(blocks):
        f = block(f)
        if i == tap:
            low = f
    return low, f


class ResBlock(nn.Module):
    """Two 3x3 convs with an identity shortcut (the paper's residual blocks)."""

    def __init__(self, ch: int, dilation: int = 1):
        super().__init__()
        self.body = nn.Sequential(ConvBNReLU(ch, ch, dilation=dilation), ConvBNReLU(ch, ch, act=False))
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(x + self.body(x))


def normalize_rgb(x: torch.Tensor) -> torch.Tensor:
    """RGB in [0,1] -> roughly zero-mean unit-range input, done in-graph so every backend agrees."""
    return (x - 0.5) * 2.0
