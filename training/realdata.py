"""Real photos of people with person masks, for segmenter training.

Two kinds of labels: human-drawn masks (hard, full weight) and teacher pseudo-labels
(training/teacher.py: soft alphas, kept soft and weighted down by the teacher's confidence, so a
wrong teacher pixel costs less than a human label). Crops come two ways: the whole photo at a
random scale (as before), or framed as a webcam frames a person (the top of the body, from head
and shoulders to half body, the frame's bottom cutting through the body), since most street and
fashion photos show the full figure and most video calls do not.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, Sequence

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from .data import (alpha_bbox, color_jitter, limit_long, list_images, match_stems, random_bg_crop, read_alpha,
                   read_image, to_chw, to_float)

LABEL_KINDS = ("human", "teacher")


def real_mask_samples(images: str | Path, masks: str | Path, prefix: str = "", exclude: Iterable[str] = (),
                      kind: str = "human", weight: float = 1.0) -> list[dict]:
    """[{"name", "image", "mask", "kind", "weight"}] for photos with a same-stem mask (e.g. human_seg_290
    Training_Images + Ground_Truth, or a teacher's label folder). Names are prefix+stem (the foreground
    builder's names), so held-out subjects of the dev split can be excluded by name."""
    if kind not in LABEL_KINDS:
        raise ValueError(f"label kind {kind!r}; expected one of {LABEL_KINDS}")
    if not weight > 0:
        raise ValueError(f"label weight {weight}: expected > 0")
    drop = set(exclude)
    out = []
    for ip, mp in match_stems(list_images(images), list_images(masks)):
        name = prefix + "".join(c if c.isalnum() or c in "-_" else "_" for c in ip.stem)
        if name not in drop:
            out.append({"name": name, "image": ip, "mask": mp, "kind": kind, "weight": float(weight)})
    return out


def webcam_window(mask: np.ndarray, rng: np.random.Generator, aspect: float = 1.0
                  ) -> tuple[int, int, int, int] | None:
    """(y0, x0, h, w) of a window inside the image framing the person's upper body as a webcam does,
    or None when the mask holds no person. mask: [H,W] in 0..1; aspect = w / h of the window.

    The visible body is 20-70 % of the person's height from the top of the head, the head sits
    5-25 % of the window below its top edge, the window is centred on the visible body's columns
    (with a little jitter) and shifted / shrunk to stay inside the photo (no padding)."""
    box = alpha_bbox(mask, 0.5)
    if box is None:
        return None
    H, W = mask.shape
    y0, _, y1, _ = box
    body = rng.uniform(0.2, 0.7) * (y1 - y0)
    head_room = rng.uniform(0.05, 0.25)
    h = min(H, body / (1 - head_room))  # the window's bottom cuts the body at `body` below the head
    w = h * aspect
    if w > W:
        w, h = W, W / aspect
    cols = np.flatnonzero((mask[y0:y0 + max(1, int(body))] > 0.5).any(axis=0))  # visible body's columns
    cx = 0.5 * (cols[0] + cols[-1] + 1) + rng.normal(0, 0.08) * w
    top = y0 - head_room * h
    ty = int(round(np.clip(top, 0, H - h)))
    tx = int(round(np.clip(cx - w / 2, 0, W - w)))
    return ty, tx, max(1, int(round(h))), max(1, int(round(w)))


def label_weight(mask: np.ndarray, kind: str, weight: float) -> np.ndarray:
    """Per-pixel loss weight [H,W]: `weight` for a human label; for a teacher's soft alpha,
    weight x (0.5 + 0.5 x confidence) with confidence |2a - 1| (0 where the teacher says 0.5)."""
    if kind == "human":
        return np.full(mask.shape, weight, np.float32)
    return (weight * (0.5 + 0.5 * np.abs(2 * mask - 1))).astype(np.float32)


class RealMaskDataset(Dataset):
    """Real person photos with their masks, for segmenter training.

    samples: real_mask_samples(...) output (several sources may be concatenated). Crops: with
    probability p_webcam a webcam framing (webcam_window), else a random scale (cover) / crop; then
    flip and colour jitter. Returns {"image": [3,H,W], "mask": [1,H,W], "weight": [1,H,W],
    "soft": [] bool} float32: human masks re-binarised after resizing (soft False), teacher alphas
    kept soft (soft True), weight from label_weight.
    """

    def __init__(self, samples: Sequence[dict], crop: int | tuple[int, int] = 512, length: int | None = None,
                 seed: int = 0, epoch: int = 0, max_side: int = 1024, p_webcam: float = 0.0):
        if not samples:
            raise ValueError("no real mask samples given; check the image/mask folders")
        if not 0 <= p_webcam <= 1:
            raise ValueError(f"p_webcam {p_webcam}: expected a probability in 0..1")
        self.samples = list(samples)
        self.crop = (crop, crop) if isinstance(crop, int) else tuple(crop)
        self.length = int(length) if length else len(self.samples)
        self.seed, self.epoch, self.max_side, self.p_webcam = int(seed), int(epoch), max_side, float(p_webcam)

    def __len__(self) -> int:
        return self.length

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def _framed(self, both: np.ndarray, rng: np.random.Generator) -> np.ndarray | None:
        ch, cw = self.crop
        win = webcam_window(both[..., 3], rng, aspect=cw / ch)
        if win is None:
            return None
        y, x, h, w = win
        part = both[y:y + h, x:x + w]
        return cv2.resize(part, (cw, ch), interpolation=cv2.INTER_AREA if h > ch else cv2.INTER_LINEAR)

    def sample(self, index: int) -> dict[str, np.ndarray]:
        rng = np.random.default_rng([self.seed, self.epoch, int(index), 7])
        s = self.samples[index % len(self.samples)] if self.length == len(self.samples) else \
            self.samples[int(rng.integers(len(self.samples)))]
        kind, weight = s.get("kind", "human"), s.get("weight", 1.0)
        img = limit_long(read_image(s["image"]), self.max_side)
        m = read_alpha(s["mask"])
        m = cv2.resize(m, (img.shape[1], img.shape[0]), interpolation=cv2.INTER_LINEAR)
        both = np.dstack([to_float(img), m])  # [H,W,4] crop image and mask together
        crop = self._framed(both, rng) if rng.random() < self.p_webcam else None
        if crop is None:
            crop = random_bg_crop(both, self.crop, rng, zoom=(1.0, 1.5))
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        image = color_jitter(np.ascontiguousarray(crop[..., :3]), rng)
        mask = np.clip(crop[..., 3], 0, 1).astype(np.float32)
        if kind == "human":
            mask = (mask > 0.5).astype(np.float32)
        return {"image": image, "mask": mask, "weight": label_weight(mask, kind, weight), "soft": kind != "human"}

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        s = self.sample(index)
        soft = s.pop("soft")
        return {**{k: to_chw(v) for k, v in s.items()}, "soft": torch.tensor(soft)}
