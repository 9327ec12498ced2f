"""DeepLabV3+ segmenter: atrous backbone, ASPP, low-level-feature decoder -> coarse person mask."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .efficientnet_lite import LITE0_BLOCKS, EfficientNetLite0
from .layers import ConvBNReLU, ResBlock, normalize_rgb
from .mobilenetv3 import MobileNetV3Large

BACKBONES = ("plain", "lite0", "lite0_full", "mv3")


@dataclass(frozen=True)
class SegmenterConfig:
    # "plain" (ResNet-style, widths/blocks below), "lite0" (EfficientNet-Lite0 up to stride 16,
    # ImageNet-initialisable), "lite0_full" (all 16 Lite0 blocks, the last stage atrous) or "mv3"
    # (MobileNetV3-Large at stride 16, initialisable from Robust Video Matting's encoder)
    backbone: str = "plain"
    widths: tuple[int, int, int, int] = (16, 24, 48, 96)  # strides 2, 4, 8, 16
    blocks: tuple[int, int, int, int] = (1, 1, 2, 2)
    aspp_ch: int = 64
    aspp_rates: tuple[int, ...] = (2, 4, 6)
    low_ch: int = 24
    dec_ch: int = 48
    # The segmenter sees the low-resolution frame rescaled by this (bilinear, in-graph): a coarse
    # mask needs fewer pixels than the generator, and rt's segmenter was trained at 120-192 px.
    input_scale: float = 1.0


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


class PlainBackbone(nn.Module):
    """Four strided stages of residual blocks; the last keeps stride 16 with dilated blocks (atrous).
    forward(x) -> (stride-4 features, stride-16 features)."""

    def __init__(self, widths: tuple[int, int, int, int], blocks: tuple[int, int, int, int]):
        super().__init__()
        cin, stages = 3, []
        for i in range(4):
            layers: list[nn.Module] = [ConvBNReLU(cin, widths[i], stride=2)]
            layers += [ResBlock(widths[i], dilation=2 if i == 3 else 1) for _ in range(blocks[i])]
            stages.append(nn.Sequential(*layers))
            cin = widths[i]
        self.stages = nn.ModuleList(stages)
        self.low_ch, self.out_ch = widths[1], widths[3]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feats = []
        for s in self.stages:
            x = s(x)
            feats.append(x)
        return feats[1], feats[3]


class Segmenter(nn.Module):
    """Coarse person segmentation. Input RGB [B,3,h,w] in [0,1] (h,w multiples of 16); output
    probability [B,1,h,w]. `logits()` gives the pre-sigmoid map for training."""

    def __init__(self, cfg: SegmenterConfig = SegmenterConfig()):
        super().__init__()
        self.cfg = cfg
        if cfg.backbone == "plain":
            self.backbone: nn.Module = PlainBackbone(cfg.widths, cfg.blocks)
        elif cfg.backbone == "lite0":
            self.backbone = EfficientNetLite0()
        elif cfg.backbone == "lite0_full":
            self.backbone = EfficientNetLite0(len(LITE0_BLOCKS))
        elif cfg.backbone == "mv3":
            self.backbone = MobileNetV3Large()
        else:
            raise ValueError(f"unknown segmenter backbone {cfg.backbone!r}; valid: {', '.join(BACKBONES)}")
        self.aspp = ASPP(self.backbone.out_ch, cfg.aspp_ch, cfg.aspp_rates)
        self.low = ConvBNReLU(self.backbone.low_ch, cfg.low_ch, k=1)
        self.decoder = nn.Sequential(ConvBNReLU(cfg.aspp_ch + cfg.low_ch, cfg.dec_ch), ConvBNReLU(cfg.dec_ch, cfg.dec_ch))
        self.head = nn.Conv2d(cfg.dec_ch, 1, 1)
        # A buffer, not a tensor made per call: CUDA-graph capture forbids host-to-device copies.
        k = torch.tensor([1.0, 2.0, 1.0])
        self.register_buffer("blur_k", (k[:, None] * k[None, :] / 16).expand(3, 1, 3, 3).clone(), persistent=False)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[2], x.shape[3]
        if self.cfg.input_scale != 1.0:
            # Binomial 3x3 blur first: bilinear alone aliases (antialiased Resize needs opset 18).
            k = self.blur_k.to(x.dtype)  # [3,1,3,3]
            x = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), k, groups=3)
            x = F.interpolate(x, scale_factor=self.cfg.input_scale, mode="bilinear", align_corners=False)
        low, high = self.backbone(normalize_rgb(x))  # [B,C,h/4,w/4], [B,C,h/16,w/16]
        a = self.aspp(high)
        a = F.interpolate(a, size=low.shape[2:], mode="bilinear", align_corners=False)
        d = self.decoder(torch.cat([a, self.low(low)], 1))
        out = self.head(d)  # [B,1,h/4,w/4]
        return F.interpolate(out, size=(h, w), mode="bilinear", align_corners=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.logits(x))
