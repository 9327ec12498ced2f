"""Alpha generator (Yaman et al. 2022): content encoder on the image, segmentation encoder on
mask ⊕ image·mask, residual blocks on their concatenation, and a decoder fed by both encoders
through 1x1 convolutions."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .layers import ConvBNReLU, ResBlock, normalize_rgb


@dataclass(frozen=True)
class GeneratorConfig:
    widths: tuple[int, ...] = (16, 32, 64)  # encoder levels at strides 1, 2, 4 (first level stride 1)
    res_blocks: int = 2
    skip_ch: tuple[int, ...] = (8, 16, 32)  # 1x1-reduced skip width per level and encoder


class Encoder(nn.Module):
    """A stack of conv levels; returns the feature map of every level (for skips)."""

    def __init__(self, cin: int, widths: tuple[int, ...]):
        super().__init__()
        levels = []
        for i, w in enumerate(widths):
            levels.append(nn.Sequential(ConvBNReLU(cin, w, stride=1 if i == 0 else 2), ConvBNReLU(w, w)))
            cin = w
        self.levels = nn.ModuleList(levels)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        for lvl in self.levels:
            x = lvl(x)
            feats.append(x)
        return feats


class Generator(nn.Module):
    """Inputs: image [B,3,h,w] in [0,1], coarse mask [B,1,h,w] in [0,1] (h,w multiples of 2**(L-1)).
    Output: alpha [B,1,h,w] in [0,1]."""

    def __init__(self, cfg: GeneratorConfig = GeneratorConfig()):
        super().__init__()
        self.cfg = cfg
        w, s = cfg.widths, cfg.skip_ch
        self.content = Encoder(3, w)
        self.seg = Encoder(4, w)
        self.fuse = ConvBNReLU(2 * w[-1], w[-1], k=1)
        self.res = nn.Sequential(*[ResBlock(w[-1]) for _ in range(cfg.res_blocks)])
        # 1x1 skip reducers for every level below the deepest, one per encoder.
        self.skip_c = nn.ModuleList([ConvBNReLU(w[i], s[i], k=1) for i in range(len(w) - 1)])
        self.skip_s = nn.ModuleList([ConvBNReLU(w[i], s[i], k=1) for i in range(len(w) - 1)])
        ups = []
        cin = w[-1]
        for i in reversed(range(len(w) - 1)):
            ups.append(nn.Sequential(ConvBNReLU(cin + 2 * s[i], w[i]), ConvBNReLU(w[i], w[i])))
            cin = w[i]
        self.ups = nn.ModuleList(ups)
        self.head = nn.Conv2d(w[0], 1, 3, padding=1)

    def forward(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = normalize_rgb(image)
        fc = self.content(x)
        fs = self.seg(torch.cat([mask, x * mask], 1))
        f = self.res(self.fuse(torch.cat([fc[-1], fs[-1]], 1)))
        for j, i in enumerate(reversed(range(len(fc) - 1))):
            f = F.interpolate(f, size=fc[i].shape[2:], mode="bilinear", align_corners=False)
            f = self.ups[j](torch.cat([f, self.skip_c[i](fc[i]), self.skip_s[i](fs[i])], 1))
        return torch.sigmoid(self.head(f))
