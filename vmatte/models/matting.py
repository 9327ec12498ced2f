"""The whole matting model (segmenter -> generator -> refiner) and its registered variants."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from ..registry import register_model
from .generator import Generator, GeneratorConfig
from .refiner import Refiner, RefinerConfig
from .segmenter import Segmenter, SegmenterConfig

COMPONENTS = ("segmenter", "generator", "refiner")


@dataclass(frozen=True)
class ModelConfig:
    name: str
    gen_long_side: int  # default long side of the generator's (low) resolution
    segmenter: SegmenterConfig = field(default_factory=SegmenterConfig)
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    refiner: RefinerConfig = field(default_factory=RefinerConfig)

    def to_dict(self) -> dict:
        return asdict(self)


class MattingModel(nn.Module):
    """forward(image [B,3,H,W] full res, H,W multiples of 64; image_lr [B,3,h,w] low res)
    -> alpha [B,1,H,W]. Also returns intermediate maps through `forward_all` for training."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.segmenter = Segmenter(cfg.segmenter)
        self.generator = Generator(cfg.generator)
        self.refiner = Refiner(cfg.refiner)

    def forward_all(self, image: torch.Tensor, image_lr: torch.Tensor) -> dict[str, torch.Tensor]:
        mask = self.segmenter(image_lr)  # [B,1,h,w]
        coarse = self.generator(image_lr, mask)  # [B,1,h,w]
        alpha = self.refiner(image, coarse)  # [B,1,H,W]
        return {"mask": mask, "coarse": coarse, "alpha": alpha}

    def forward(self, image: torch.Tensor, image_lr: torch.Tensor) -> torch.Tensor:
        return self.forward_all(image, image_lr)["alpha"]


def _rt_family(name: str, backbone: str, overrides: dict) -> MattingModel:
    """The real-time variants: one generator and refiner, segmenters differing in backbone."""
    return MattingModel(
        ModelConfig(
            name=name,
            gen_long_side=224,
            segmenter=SegmenterConfig(backbone=backbone, aspp_ch=48, aspp_rates=(2, 4, 6), low_ch=24, dec_ch=32, input_scale=0.75),
            generator=GeneratorConfig(widths=(8, 16, 32), res_blocks=2, skip_ch=(4, 8, 16)),
            refiner=RefinerConfig(patches=32, context=4, widths=(8, 16)),
            **overrides,
        )
    )


@register_model
def rt(**overrides) -> MattingModel:
    """Real-time default: DeepLabV3+ on an EfficientNet-Lite0 backbone (ImageNet-initialised),
    light generator encoders, 2 residual blocks, generator at 224 px long side (256 until the
    sixth release, which scores better at 224 on every held-out set but one: docs/quality.md), 32
    refined 64x64 border patches at full resolution."""
    return _rt_family("rt", "lite0", overrides)


@register_model
def rt_plus(**overrides) -> MattingModel:
    """`rt` with more segmenter capacity (the part its dev error comes from, docs/quality.md): all
    16 EfficientNet-Lite0 blocks, the stride-32 stage run atrous so ASPP still sees stride 16 (320
    channels instead of 112); generator and refiner as `rt`, so they carry over from its weights."""
    return _rt_family("rt_plus", "lite0_full", overrides)


@register_model
def rt_mv3(**overrides) -> MattingModel:
    """`rt` with a MobileNetV3-Large segmenter backbone (stride 16, 160 channels into ASPP) that
    starts from Robust Video Matting's person-trained encoder rather than ImageNet alone: the
    segmenter's error is generalising to new people (docs/quality.md), which RVM's encoder learnt
    from far more people than the 283 here. Generator and refiner as `rt`. No shipped weights: on
    2 CPU cores it trained no better than `rt` (docs/quality.md)."""
    return _rt_family("rt_mv3", "mv3", overrides)


@register_model
def paper(**overrides) -> MattingModel:
    """Faithful to Yaman et al. 2022: DeepLabV3+ segmenter, wide encoders, 9 residual blocks,
    generator at 1280x768 (the paper's input size), refiner kept for inputs above that."""
    return MattingModel(
        ModelConfig(
            name="paper",
            gen_long_side=1280,
            segmenter=SegmenterConfig(widths=(32, 64, 128, 256), blocks=(1, 2, 3, 3), aspp_ch=128, aspp_rates=(6, 12, 18), low_ch=48, dec_ch=128),
            generator=GeneratorConfig(widths=(64, 128, 256), res_blocks=9, skip_ch=(32, 64, 128)),
            refiner=RefinerConfig(patches=128, context=8, widths=(32, 64), deep=True),
            **overrides,
        )
    )
