"""DeepLabV3+ segmenter: atrous backbone, ASPP, low-level-feature decoder -> coarse person mask."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .layers import ConvBNReLU, ResBlock, normalize_rgb


@dataclass(frozen=True)
class SegmenterConfig:
    widths: tuple[int, int, int, int] = (16, 24, 48, 96)  # strides 2, 4, 8, 16
    blocks: tuple[int, int, int, int] = (1, 1, 2, 2)
    aspp_ch: int = 64
    aspp_rates: tuple[int, ...] = (2, 4, 6)
    low_ch: int = 24
    dec_ch: int = 48


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling: 1x1, dilated 3x3 branches and an image-level branch."""

    def __init__(self, cin: int, cout: int, rates: tuple[int, ...]):
        super().__init__()
        self.branches = nn.ModuleList([ConvBNReLU(cin, cout, k=1)] + [ConvBNReLU(cin, cout, dilation=r) for r in rates])
        self.pool = nn.Sequential(nn.Conv2d(cin, cout, 1, bias=True), nn.ReLU(inplace=True))
        self.project = ConvBNReLU(cout * (len(rates) + 2), cout, k=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = [b(x) for b in self.branches]
        g = self.pool(x.mean(dim=(2, 3), keepdim=True))  # [B,C,1,1]
        feats.append(g.expand(-1, -1, x.shape[2], x.shape[3]))
        return self.project(torch.cat(feats, 1))


class Segmenter(nn.Module):
    """Coarse person segmentation. Input RGB [B,3,h,w] in [0,1] (h,w multiples of 16); output
    probability [B,1,h,w]. `logits()` gives the pre-sigmoid map for training."""

    def __init__(self, cfg: SegmenterConfig = SegmenterConfig()):
        super().__init__()
        self.cfg = cfg
        w, n = cfg.widths, cfg.blocks
        cin = 3
        stages = []
        for i in range(4):
            # The last stage keeps stride 16 and uses dilation (atrous backbone).
            layers: list[nn.Module] = [ConvBNReLU(cin, w[i], stride=2)]
            layers += [ResBlock(w[i], dilation=2 if i == 3 else 1) for _ in range(n[i])]
            stages.append(nn.Sequential(*layers))
            cin = w[i]
        self.stages = nn.ModuleList(stages)
        self.aspp = ASPP(w[3], cfg.aspp_ch, cfg.aspp_rates)
        self.low = ConvBNReLU(w[1], cfg.low_ch, k=1)
        self.decoder = nn.Sequential(ConvBNReLU(cfg.aspp_ch + cfg.low_ch, cfg.dec_ch), ConvBNReLU(cfg.dec_ch, cfg.dec_ch))
        self.head = nn.Conv2d(cfg.dec_ch, 1, 1)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[2], x.shape[3]
        f = normalize_rgb(x)
        feats = []
        for s in self.stages:
            f = s(f)
            feats.append(f)
        a = self.aspp(feats[3])  # [B,C,h/16,w/16]
        low = feats[1]  # [B,C,h/4,w/4]
        a = F.interpolate(a, size=low.shape[2:], mode="bilinear", align_corners=False)
        d = self.decoder(torch.cat([a, self.low(low)], 1))
        out = self.head(d)  # [B,1,h/4,w/4]
        return F.interpolate(out, size=(h, w), mode="bilinear", align_corners=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.logits(x))
