"""Multi-scale conditional PatchGAN discriminator (pix2pixHD style) for the adversarial loss.

Three identical PatchGANs look at the input at scales 1, 1/2 and 1/4 (average-pool downsampling).
The input is the predicted (or true) foreground image*alpha concatenated with alpha: 4 channels.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


class PatchDiscriminator(nn.Module):
    """pix2pixHD NLayerDiscriminator: 4x4 convs, stride 2 x n_layers, instance norm, LeakyReLU 0.2.

    forward(x [B,C,H,W]) -> list of every block's output; the last is the patch score map [B,1,h,w].
    """

    def __init__(self, in_ch: int = 4, base: int = 64, n_layers: int = 3, max_ch: int = 512) -> None:
        super().__init__()
        k, pad = 4, int(math.ceil((4 - 1) / 2))
        blocks: list[nn.Module] = [nn.Sequential(nn.Conv2d(in_ch, base, k, 2, pad), nn.LeakyReLU(0.2, True))]
        ch = base
        for n in range(1, n_layers + 1):
            prev, ch = ch, min(ch * 2, max_ch)
            stride = 2 if n < n_layers else 1
            blocks.append(nn.Sequential(
                nn.Conv2d(prev, ch, k, stride, pad), nn.InstanceNorm2d(ch), nn.LeakyReLU(0.2, True)))
        blocks.append(nn.Sequential(nn.Conv2d(ch, 1, k, 1, pad)))
        self.blocks = nn.ModuleList(blocks)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        for block in self.blocks:
            x = block(x)
            feats.append(x)
        return feats


class MultiScaleDiscriminator(nn.Module):
    """`num_scales` PatchGANs on the input at scales 1, 1/2, 1/4, ...

    forward(image [B,3,H,W], alpha [B,1,H,W]) -> list over scales of lists of features; the last
    entry of each inner list is that scale's patch score map [B,1,h,w].
    """

    def __init__(self, in_ch: int = 4, base: int = 64, n_layers: int = 3, num_scales: int = 3) -> None:
        super().__init__()
        self.discs = nn.ModuleList(PatchDiscriminator(in_ch, base, n_layers) for _ in range(num_scales))

    @staticmethod
    def make_input(image: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
        """(image * alpha) concatenated with alpha: [B,4,H,W]."""
        if image.shape[1] != 3 or alpha.shape[1] != 1 or image.shape[-2:] != alpha.shape[-2:]:
            raise ValueError(
                f"discriminator got image {tuple(image.shape)} and alpha {tuple(alpha.shape)}; "
                "expected [B,3,H,W] and [B,1,H,W] of the same size"
            )
        return torch.cat([image * alpha, alpha], dim=1)

    def forward(self, image: torch.Tensor, alpha: torch.Tensor) -> list[list[torch.Tensor]]:
        x = self.make_input(image, alpha)  # [B,4,H,W]
        outs = []
        for i, disc in enumerate(self.discs):
            if i > 0:
                x = F.avg_pool2d(x, kernel_size=3, stride=2, padding=1, count_include_pad=False)
            outs.append(disc(x))
        return outs
