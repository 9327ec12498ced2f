"""Losses of the paper, as pure torch functions, plus `generator_loss` combining them.

Terms (each a scalar tensor, each usable alone):
- alpha loss: L1 over pixels whose true alpha is exactly 0 or 1;
- alpha-coefficient loss: L1 over pixels with 0 < true alpha < 1;
- border loss: L1 inside the band dilate(mask) - erode(mask) (max-pool morphology);
  these three are applied to alpha and to the foreground (image*alpha vs image*true alpha);
- perceptual loss: L1 between VGG19 features (relu1_1..relu5_1, each divided by its typical
  magnitude `vgg.LAYER_SCALES`, averaged over layers) of alpha (repeated to 3 channels) and
  of the foreground image*alpha;
- adversarial loss: LSGAN (least squares, as pix2pixHD uses) over the multi-scale discriminator;
- feature matching (optional): pix2pixHD's L1 between discriminator features of real and fake.

Masked L1s are normalised by the number of masked elements (pixels x channels), 0 if none.
Weights: lambda=10 (perceptual), beta=25 (alpha), gamma=50 (alpha-coefficient), theta=25 (border).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Sequence

import torch
import torch.nn.functional as F

__all__ = [
    "LossConfig", "masked_l1", "dilate", "erode", "border_band", "alpha_loss", "coef_loss",
    "border_loss", "perceptual_loss", "gan_loss_d", "gan_loss_g", "feature_matching_loss",
    "generator_loss", "discriminator_loss",
]


@dataclass
class LossConfig:
    """Weights and on/off switches of the generator loss terms (the paper's ablations, Tables 3-5)."""

    alpha: bool = True
    coef: bool = True
    border: bool = True
    perceptual: bool = True
    adversarial: bool = True
    feature_matching: bool = False
    on_foreground: bool = True  # also apply alpha/coef/border (and perceptual) to image*alpha
    w_perceptual: float = 10.0  # lambda
    w_alpha: float = 25.0  # beta
    w_coef: float = 50.0  # gamma
    w_border: float = 25.0  # theta
    w_adversarial: float = 1.0
    w_feature_matching: float = 10.0
    border_kernel: int = 11

    def replace(self, **kw) -> "LossConfig":
        names = {f.name for f in fields(self)}
        bad = [k for k in kw if k not in names]
        if bad:
            raise ValueError(f"unknown LossConfig fields {bad}; valid: {sorted(names)}")
        return LossConfig(**{**self.__dict__, **kw})


def _check(pred: torch.Tensor, target: torch.Tensor) -> None:
    if pred.shape != target.shape:
        raise ValueError(f"loss got pred {tuple(pred.shape)} and target {tuple(target.shape)}; expected equal shapes")


def masked_l1(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean |pred - target| over masked elements. pred/target [B,C,H,W], mask [B,1,H,W] in {0,1}."""
    _check(pred, target)
    mask = mask.to(pred.dtype).expand_as(pred)
    count = mask.sum()
    return ((pred - target).abs() * mask).sum() / count.clamp_min(1.0)


def dilate(mask: torch.Tensor, kernel: int) -> torch.Tensor:
    """Binary dilation with a kernel x kernel square (max-pool). [B,1,H,W] -> [B,1,H,W]."""
    if kernel < 1 or kernel % 2 == 0:
        raise ValueError(f"morphology kernel {kernel}; expected an odd size >= 1")
    return F.max_pool2d(mask, kernel, stride=1, padding=kernel // 2)


def erode(mask: torch.Tensor, kernel: int) -> torch.Tensor:
    """Binary erosion with a kernel x kernel square (max-pool of the complement; outside ignored)."""
    return 1.0 - dilate(1.0 - mask, kernel)


def border_band(mask: torch.Tensor, kernel: int) -> torch.Tensor:
    """dilate(mask) - erode(mask): 1 in a band about `kernel` wide around the mask's edge."""
    return dilate(mask, kernel) - erode(mask, kernel)


def _fg(image: torch.Tensor | None, alpha: torch.Tensor) -> torch.Tensor:
    if image is None:
        raise ValueError("foreground terms need the image [B,3,H,W]; pass image= or set on_foreground=False")
    return image * alpha  # [B,3,H,W]


def alpha_loss(pred: torch.Tensor, true: torch.Tensor, image: torch.Tensor | None = None) -> torch.Tensor:
    """L1 over pixels where the true alpha is exactly 0 or 1; with `image`, on image*alpha instead."""
    mask = ((true == 0) | (true == 1)).to(pred.dtype)  # [B,1,H,W]
    if image is None:
        return masked_l1(pred, true, mask)
    return masked_l1(_fg(image, pred), _fg(image, true), mask)


def coef_loss(pred: torch.Tensor, true: torch.Tensor, image: torch.Tensor | None = None) -> torch.Tensor:
    """Alpha-coefficient loss: L1 over pixels with 0 < true alpha < 1; with `image`, on image*alpha."""
    mask = ((true > 0) & (true < 1)).to(pred.dtype)
    if image is None:
        return masked_l1(pred, true, mask)
    return masked_l1(_fg(image, pred), _fg(image, true), mask)


def border_loss(pred: torch.Tensor, true: torch.Tensor, image: torch.Tensor | None = None,
                mask: torch.Tensor | None = None, kernel: int = 11) -> torch.Tensor:
    """L1 inside dilate(m) - erode(m), m = `mask` or (true alpha > 0); with `image`, on image*alpha."""
    m = (true > 0).to(pred.dtype) if mask is None else (mask > 0.5).to(pred.dtype)
    band = border_band(m, kernel)
    if image is None:
        return masked_l1(pred, true, band)
    return masked_l1(_fg(image, pred), _fg(image, true), band)


def perceptual_loss(vgg, pred: torch.Tensor, true: torch.Tensor,
                    scales: dict[str, float] | None = None) -> torch.Tensor:
    """Mean over VGG layers of L1(features(pred), features(true)) / layer scale.

    pred/true: [B,1,H,W] (repeated to 3 channels) or [B,3,H,W] RGB in 0..1. `vgg` maps
    [B,3,H,W] -> {layer: features}; scales default to `vgg.LAYER_SCALES` (1 for unknown layers).
    """
    _check(pred, true)
    if pred.shape[1] == 1:
        pred, true = pred.expand(-1, 3, -1, -1), true.expand(-1, 3, -1, -1)
    if scales is None:
        from .vgg import LAYER_SCALES as scales  # noqa: N811
    fp = vgg(pred)
    with torch.no_grad():
        ft = vgg(true)
    terms = [(fp[k] - ft[k]).abs().mean() / scales.get(k, 1.0) for k in fp]
    return torch.stack(terms).mean()


def _scores(outs: Sequence) -> list[torch.Tensor]:
    """Last tensor of each scale (accepts a list of lists of features or a list of score maps)."""
    return [o[-1] if isinstance(o, (list, tuple)) else o for o in outs]


def gan_loss_d(real_outs: Sequence, fake_outs: Sequence) -> torch.Tensor:
    """LSGAN discriminator loss: mean over scales of 0.5 * (E(D(real)-1)^2 + E D(fake)^2)."""
    terms = [0.5 * (((r - 1) ** 2).mean() + (f ** 2).mean()) for r, f in zip(_scores(real_outs), _scores(fake_outs))]
    return torch.stack(terms).mean()


def gan_loss_g(fake_outs: Sequence) -> torch.Tensor:
    """LSGAN generator loss: mean over scales of E(D(fake)-1)^2."""
    return torch.stack([((f - 1) ** 2).mean() for f in _scores(fake_outs)]).mean()


def feature_matching_loss(real_outs: Sequence[Sequence[torch.Tensor]],
                          fake_outs: Sequence[Sequence[torch.Tensor]]) -> torch.Tensor:
    """pix2pixHD feature matching: mean over scales and intermediate layers of L1(fake, real.detach())."""
    terms = []
    for r_scale, f_scale in zip(real_outs, fake_outs):
        for r, f in zip(r_scale[:-1], f_scale[:-1]):
            terms.append((f - r.detach()).abs().mean())
    if not terms:
        raise ValueError("feature matching needs per-scale feature lists (the discriminator's full output)")
    return torch.stack(terms).mean()


def generator_loss(pred: torch.Tensor, true: torch.Tensor, image: torch.Tensor | None = None,
                   cfg: LossConfig | None = None, *, mask: torch.Tensor | None = None, vgg=None,
                   disc_fake: Sequence | None = None, disc_real: Sequence | None = None) -> dict[str, torch.Tensor]:
    """All enabled generator terms, unweighted, plus 'total' = sum of weight * term.

    pred/true alpha [B,1,H,W] in 0..1; image [B,3,H,W] 0..1 (needed when cfg.on_foreground or
    perceptual); mask [B,1,H,W] optional border mask; vgg a VGG19Features (needed for perceptual);
    disc_fake / disc_real the discriminator outputs on the prediction / truth (adversarial, fm).
    Names: alpha, alpha_fg, coef, coef_fg, border, border_fg, perceptual, perceptual_fg, adv, fm.
    """
    cfg = cfg or LossConfig()
    _check(pred, true)
    if pred.ndim != 4 or pred.shape[1] != 1:
        raise ValueError(f"generator_loss got alpha {tuple(pred.shape)}; expected [B,1,H,W]")
    fg = cfg.on_foreground
    out: dict[str, torch.Tensor] = {}
    weighted: list[torch.Tensor] = []

    def add(name: str, value: torch.Tensor, weight: float) -> None:
        out[name] = value
        weighted.append(weight * value)

    if cfg.alpha:
        add("alpha", alpha_loss(pred, true), cfg.w_alpha)
        if fg:
            add("alpha_fg", alpha_loss(pred, true, image=_need(image, "alpha_fg")), cfg.w_alpha)
    if cfg.coef:
        add("coef", coef_loss(pred, true), cfg.w_coef)
        if fg:
            add("coef_fg", coef_loss(pred, true, image=_need(image, "coef_fg")), cfg.w_coef)
    if cfg.border:
        add("border", border_loss(pred, true, mask=mask, kernel=cfg.border_kernel), cfg.w_border)
        if fg:
            add("border_fg", border_loss(pred, true, image=_need(image, "border_fg"), mask=mask,
                                         kernel=cfg.border_kernel), cfg.w_border)
    if cfg.perceptual:
        if vgg is None:
            raise ValueError("perceptual loss is on but vgg=None; pass a VGG19Features or set LossConfig(perceptual=False)")
        add("perceptual", perceptual_loss(vgg, pred, true), cfg.w_perceptual)
        if fg:
            img = _need(image, "perceptual_fg")
            add("perceptual_fg", perceptual_loss(vgg, img * pred, img * true), cfg.w_perceptual)
    if cfg.adversarial:
        if disc_fake is None:
            raise ValueError("adversarial loss is on but disc_fake=None; pass D(image, pred) or set adversarial=False")
        add("adv", gan_loss_g(disc_fake), cfg.w_adversarial)
    if cfg.feature_matching:
        if disc_fake is None or disc_real is None:
            raise ValueError("feature matching is on but disc_fake/disc_real missing; pass both or set feature_matching=False")
        add("fm", feature_matching_loss(disc_real, disc_fake), cfg.w_feature_matching)
    out["total"] = torch.stack(weighted).sum() if weighted else pred.sum() * 0.0
    return out


def discriminator_loss(disc_real: Sequence, disc_fake: Sequence) -> dict[str, torch.Tensor]:
    """{'d': LSGAN loss, 'total': same}; pass disc_fake computed on a detached prediction."""
    d = gan_loss_d(disc_real, disc_fake)
    return {"d": d, "total": d}


def _need(image: torch.Tensor | None, name: str) -> torch.Tensor:
    if image is None:
        raise ValueError(f"term {name!r} needs image [B,3,H,W]; pass image= or set LossConfig(on_foreground=False)")
    return image
