"""Training data: folder layouts, foreground layers and on-the-fly compositing.

Like Yaman et al. 2022, training samples are composites: a foreground layer (colour F, alpha)
over a background, so the composite's alpha is exact by construction:
    image = F * alpha + B * (1 - alpha).
Heavy lifting is OpenCV on uint8/float32 numpy arrays (fast on CPU); the datasets return dicts of
float32 torch tensors in CHW layout. Every random choice of a sample comes from a generator seeded
by (seed, epoch, index), so a sample is the same whatever DataLoader worker builds it.

Conventions: RGB float32 [H,W,3] in 0..1, alpha float32 [H,W] in 0..1 for the numpy helpers.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

log = logging.getLogger(__name__)

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
VIDEO_EXTS = (".mp4", ".mov", ".avi", ".mkv", ".webm")

# (image folder, alpha folder) names accepted by ImageAlphaDataset, first match wins.
IMAGE_ALPHA_LAYOUTS = (("image", "alpha"), ("images", "alphas"), ("im", "gt"), ("image", "matte"),
                       ("images", "mattes"), ("blurred_image", "mask"), ("original", "mask"))
# Foreground folders as public matting sets ship them: Adobe Image Matting (fg/alpha),
# Distinctions-646 (FG/GT), our fg/alpha pairs; PPM-100 / P3M ship the photo, not F (see estimate).
FG_DIRS = ("fg", "FG", "foreground", "fgr")
ALPHA_DIRS = ("alpha", "GT", "gt", "matte", "mask", "pha", "alphas")
PHOTO_DIRS = ("image", "images", "blurred_image", "original")


# --------------------------------------------------------------------------------------------
# pure compositing helpers


def composite(fg: np.ndarray, bg: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Exact float composite fg*alpha + bg*(1-alpha) -> float32 [H,W,3].

    fg, bg: float [H,W,3]; alpha: float [H,W] or [H,W,1]. (vmatte.ops.compose.composite is the
    uint8 display version; training needs the exact float one.)
    """
    if alpha.ndim == 2:
        alpha = alpha[..., None]
    if fg.shape != bg.shape or fg.shape[:2] != alpha.shape[:2]:
        raise ValueError(f"fg {fg.shape}, bg {bg.shape}, alpha {alpha.shape} must share H,W (and fg/bg C); "
                         "crop or resize them to one size first")
    a = alpha.astype(np.float32, copy=False)
    return (fg * a + bg * (np.float32(1.0) - a)).astype(np.float32, copy=False)


def to_float(img: np.ndarray) -> np.ndarray:
    """uint8/uint16 -> float32 in 0..1 (float input is returned as float32)."""
    if img.dtype == np.uint8:
        return img.astype(np.float32) * np.float32(1 / 255)
    if img.dtype == np.uint16:
        return img.astype(np.float32) * np.float32(1 / 65535)
    return img.astype(np.float32, copy=False)


def to_chw(x: np.ndarray) -> torch.Tensor:
    """[H,W] or [H,W,C] numpy -> contiguous float32 tensor [C,H,W]."""
    if x.ndim == 2:
        x = x[..., None]
    return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1), dtype=np.float32))


def read_image(path: str | Path) -> np.ndarray:
    """Image file -> RGB uint8 [H,W,3]."""
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise FileNotFoundError(f"could not read image {path}; expected an existing image file")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def read_alpha(path: str | Path) -> np.ndarray:
    """Alpha/mask file -> float32 [H,W] in 0..1 (alpha channel of RGBA, max over RGB otherwise)."""
    m = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if m is None:
        raise FileNotFoundError(f"could not read alpha {path}; expected an existing image file")
    if m.ndim == 3:
        m = m[..., 3] if m.shape[2] == 4 else m[..., :3].max(axis=2)
    return to_float(m)


def read_rgba(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """RGBA PNG -> (F uint8 [H,W,3], alpha uint8 [H,W]); raises ValueError without an alpha channel."""
    m = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if m is None:
        raise FileNotFoundError(f"could not read {path}; expected an RGBA PNG")
    if m.ndim != 3 or m.shape[2] != 4:
        raise ValueError(f"{path} has shape {m.shape}; expected an RGBA image with 4 channels")
    if m.dtype == np.uint16:
        m = (m >> 8).astype(np.uint8)
    return cv2.cvtColor(m[..., :3], cv2.COLOR_BGR2RGB), np.ascontiguousarray(m[..., 3])


def resize_long(img: np.ndarray, long_side: int) -> np.ndarray:
    """Resize so the long side is `long_side` (AREA down, LINEAR up)."""
    h, w = img.shape[:2]
    s = long_side / max(h, w)
    if s == 1:
        return img
    interp = cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR
    return cv2.resize(img, (max(1, round(w * s)), max(1, round(h * s))), interpolation=interp)


def limit_long(img: np.ndarray, max_side: int | None) -> np.ndarray:
    """Downscale only, so the long side is at most max_side."""
    if max_side is None or max(img.shape[:2]) <= max_side:
        return img
    return resize_long(img, max_side)


def list_images(folder: str | Path, exts: Sequence[str] = IMAGE_EXTS) -> list[Path]:
    """Sorted image files directly in `folder`."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"folder {folder} not found; pass an existing directory")
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in exts
                  and not p.name.endswith(".tmp.png"))


def match_stems(images: Iterable[Path], alphas: Iterable[Path]) -> list[tuple[Path, Path]]:
    """Pairs of files with the same stem (sorted by stem)."""
    by_stem = {p.stem: p for p in alphas}
    return [(p, by_stem[p.stem]) for p in sorted(images, key=lambda p: p.stem) if p.stem in by_stem]


def crop_pad(img: np.ndarray, y0: int, x0: int, h: int, w: int, border: str = "constant") -> np.ndarray:
    """Window [y0:y0+h, x0:x0+w] of img, padded where it leaves the image
    ('constant' = zeros, 'replicate' = edge pixels)."""
    H, W = img.shape[:2]
    ya, xa, yb, xb = max(0, y0), max(0, x0), min(H, y0 + h), min(W, x0 + w)
    if ya >= yb or xa >= xb:  # window entirely outside: all border
        base = np.zeros((h, w) + img.shape[2:], img.dtype)
        if border == "replicate":
            base[...] = img[min(max(y0, 0), H - 1), min(max(x0, 0), W - 1)]
        return base
    out = img[ya:yb, xa:xb]
    pads = (ya - y0, y0 + h - yb, xa - x0, x0 + w - xb)
    if any(pads):
        mode = cv2.BORDER_REPLICATE if border == "replicate" else cv2.BORDER_CONSTANT
        out = cv2.copyMakeBorder(out, *pads, mode, value=0)
    return np.ascontiguousarray(out)


def alpha_bbox(alpha: np.ndarray, thr: float = 0.05) -> tuple[int, int, int, int] | None:
    """(y0, x0, y1, x1) exclusive bounding box of alpha > thr, or None when empty."""
    ys = np.flatnonzero((alpha > thr).any(axis=1))
    if ys.size == 0:
        return None
    xs = np.flatnonzero((alpha > thr).any(axis=0))
    return int(ys[0]), int(xs[0]), int(ys[-1]) + 1, int(xs[-1]) + 1


# --------------------------------------------------------------------------------------------
# augmentation (pure given an rng)


def color_jitter(img: np.ndarray, rng: np.random.Generator, brightness: float = 0.2, contrast: float = 0.2,
                 saturation: float = 0.3, hue_deg: float = 8.0, gamma: float = 0.2) -> np.ndarray:
    """Random brightness/contrast/saturation/hue (one 3x4 colour matrix) and gamma on float32
    RGB [H,W,3] in 0..1 -> float32 [H,W,3] in 0..1."""
    b = 1.0 + rng.uniform(-brightness, brightness)
    c = 1.0 + rng.uniform(-contrast, contrast)
    s = 1.0 + rng.uniform(-saturation, saturation)
    th = np.deg2rad(rng.uniform(-hue_deg, hue_deg))
    lum = np.array([0.299, 0.587, 0.114], np.float64)
    # hue rotation about the grey axis (Rodrigues), saturation towards luminance, contrast about the mean
    k = np.ones(3) / np.sqrt(3)
    kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    rot = np.eye(3) + np.sin(th) * kx + (1 - np.cos(th)) * kx @ kx
    sat = s * np.eye(3) + (1 - s) * np.outer(np.ones(3), lum)
    m = b * c * (sat @ rot)  # [3,3]
    mean = float(img.reshape(-1, 3).mean(axis=0) @ lum) if img.size else 0.5
    off = b * (1 - c) * mean
    mat = np.hstack([m, np.full((3, 1), off)]).astype(np.float32)  # [3,4]
    out = cv2.transform(img.astype(np.float32, copy=False), mat)
    np.clip(out, 0.0, 1.0, out=out)
    g = float(np.exp(rng.uniform(-gamma, gamma)))
    if abs(g - 1) > 1e-3:
        cv2.pow(out, g, out)
    return out


def recolor_regions(img: np.ndarray, rng: np.random.Generator, regions: int = 2) -> np.ndarray:
    """Recolour a few smooth random regions of float32 RGB [H,W,3] (0..1), each with its own colour
    jitter and a hue turn of up to 30-180 degrees: new clothes, hair and skin tones for the same few hundred people,
    whose looks the segmenter otherwise learns by heart (docs/quality.md)."""
    h, w = img.shape[:2]
    out = img
    for _ in range(regions):
        cells = int(rng.integers(2, 6))
        small = rng.uniform(0, 1, (cells, cells)).astype(np.float32)
        field = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
        m = np.clip((field - rng.uniform(0.45, 0.7)) * 8, 0, 1)[..., None]  # soft-edged region [H,W,1]
        other = color_jitter(out, rng, brightness=0.3, contrast=0.3, saturation=0.6, hue_deg=float(rng.uniform(30, 180)))
        out = out * (1 - m) + other * m
    return out.astype(np.float32)


def synthetic_background(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """A random synthetic background float32 [h,w,3] in 0..1: linear/radial gradient, smooth
    multi-scale noise, stripes/checker texture or a flat colour with grain."""
    kind = rng.integers(5)
    c0, c1 = rng.uniform(0, 1, 3).astype(np.float32), rng.uniform(0, 1, 3).astype(np.float32)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    if kind == 0:  # linear gradient at a random angle
        th = rng.uniform(0, 2 * np.pi)
        t = (np.cos(th) * xx / w + np.sin(th) * yy / h)
        t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
        out = c0 + (c1 - c0) * t[..., None]
    elif kind == 1:  # radial gradient
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        t = np.sqrt((yy - cy) ** 2 + (xx - cx) ** 2) / np.hypot(h, w)
        out = c0 + (c1 - c0) * np.clip(t * rng.uniform(1, 2.5), 0, 1)[..., None]
    elif kind == 2:  # smooth multi-octave colour noise
        out = np.zeros((h, w, 3), np.float32)
        amp, total = 1.0, 0.0
        for cells in (2, 4, 8, 16, 32):
            small = rng.uniform(0, 1, (cells, max(1, cells * w // max(h, 1)), 3)).astype(np.float32)
            out += amp * cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
            total += amp
            amp *= rng.uniform(0.4, 0.7)
        out /= total
    elif kind == 3:  # stripes or checker texture
        period = rng.uniform(8, max(9, min(h, w) / 3))
        th = rng.uniform(0, np.pi)
        u = (np.cos(th) * xx + np.sin(th) * yy) / period
        t = (np.sin(2 * np.pi * u) > 0).astype(np.float32)
        if rng.random() < 0.5:
            v = (-np.sin(th) * xx + np.cos(th) * yy) / period
            t = np.abs(t - (np.sin(2 * np.pi * v) > 0).astype(np.float32))
        t = cv2.GaussianBlur(t, (0, 0), rng.uniform(0.5, 2.0))
        out = c0 + (c1 - c0) * t[..., None]
    else:  # flat colour with grain
        out = np.broadcast_to(c0, (h, w, 3)) + rng.normal(0, rng.uniform(0.0, 0.05), (h, w, 3))
    return np.clip(out, 0, 1).astype(np.float32)


def morph_mask(mask: np.ndarray, rng: np.random.Generator, max_frac: float = 0.03) -> np.ndarray:
    """Randomly dilate or erode a binary mask [H,W] by up to max_frac of its long side."""
    r = int(rng.integers(1, max(2, round(max_frac * max(mask.shape)) + 1)))
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
    op = cv2.dilate if rng.random() < 0.5 else cv2.erode
    return op(mask, k)


def touched_edges(alpha: np.ndarray, thr: float = 0.5, min_frac: float = 0.01) -> tuple[bool, bool, bool, bool]:
    """(top, bottom, left, right): whether the subject is cut by that image edge (alpha > thr on
    more than min_frac of the edge's pixels)."""
    def cut(line: np.ndarray) -> bool:
        return bool((line > thr).mean() > min_frac)

    return cut(alpha[0]), cut(alpha[-1]), cut(alpha[:, 0]), cut(alpha[:, -1])


def scale_crop_params(bbox: tuple[int, int, int, int] | None, hw: tuple[int, int], crop: tuple[int, int],
                      rng: np.random.Generator, scale_range: tuple[float, float],
                      edges: tuple[bool, bool, bool, bool] = (False, False, False, False),
                      max_upscale: float | None = None) -> tuple[float, int, int]:
    """Scale s and crop origin (y0, x0) in the scaled image so the crop keeps the subject.

    s = (scale that fits the subject's box into the crop) * U(scale_range). When the scaled box
    fits, it lies fully inside the crop; otherwise the crop lies inside the box (a partial person).
    `edges` (top, bottom, left, right) marks image edges that cut the subject: the crop never goes
    past those, so a person cut by the photo's frame stays cut by the crop's frame (this may scale
    past max_upscale when both opposite edges cut the subject).
    """
    H, W = hw
    ch, cw = crop
    y0b, x0b, y1b, x1b = bbox if bbox is not None else (0, 0, H, W)
    fit = min(ch / max(1, y1b - y0b), cw / max(1, x1b - x0b))
    lo, hi = scale_range
    s = fit * float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
    if max_upscale is not None:
        s = min(s, max_upscale)  # small layers stay sharp: no blurry giant subjects
    top, bottom, left, right = edges
    if top and bottom:
        s = max(s, ch / H)
    if left and right:
        s = max(s, cw / W)

    def origin(a0: float, a1: float, c: int, size: float, cut_lo: bool, cut_hi: bool) -> int:
        a0, a1, size = a0 * s, a1 * s, max(1, round(size * s))  # same rounding as _scale
        lo_, hi_ = (a1 - c, a0) if a1 - a0 <= c else (a0, a1 - c)
        o = rng.uniform(lo_, hi_ + 1e-6)
        if cut_hi:
            o = min(o, size - c)
        if cut_lo:
            o = max(o, 0.0)
        return int(np.floor(o))

    y0 = origin(y0b, y1b, ch, H, top, bottom)
    x0 = origin(x0b, x1b, cw, W, left, right)
    return s, y0, x0


def _scale(img: np.ndarray, s: float) -> np.ndarray:
    h, w = img.shape[:2]
    size = (max(1, round(w * s)), max(1, round(h * s)))
    if size == (w, h):
        return img
    return cv2.resize(img, size, interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)


def random_bg_crop(bg: np.ndarray, crop: tuple[int, int], rng: np.random.Generator,
                   zoom: tuple[float, float] = (1.0, 1.6)) -> np.ndarray:
    """Random crop of a background [H,W,3] covering `crop` (scaled to cover, then zoomed by U(zoom))."""
    ch, cw = crop
    h, w = bg.shape[:2]
    s = max(ch / h, cw / w) * rng.uniform(*zoom)
    big = _scale(bg, s)
    bh, bw = big.shape[:2]
    y0 = int(rng.integers(0, max(1, bh - ch + 1)))
    x0 = int(rng.integers(0, max(1, bw - cw + 1)))
    return crop_pad(big, y0, x0, ch, cw, border="replicate")


# --------------------------------------------------------------------------------------------
# datasets


def _find_pair_dirs(root: Path, layouts: Sequence[tuple[str, str]]) -> tuple[Path, Path] | None:
    for a, b in layouts:
        if (root / a).is_dir() and (root / b).is_dir():
            return root / a, root / b
    return None


class ImageAlphaDataset(Dataset):
    """Real images with their alpha: root/image/* + root/alpha/* (matching stems); also accepts
    images/+alphas/, im/+gt/, image/+matte/ (PPM-100), blurred_image/+mask/ (P3M).

    Returns {"image": [3,H,W], "alpha": [1,H,W]} float32 0..1 (sizes vary unless long_side is set).
    """

    def __init__(self, root: str | Path, long_side: int | None = None):
        root = Path(root)
        dirs = _find_pair_dirs(root, IMAGE_ALPHA_LAYOUTS)
        if dirs is None:
            raise FileNotFoundError(
                f"{root} has none of the layouts {[f'{a}/+{b}/' for a, b in IMAGE_ALPHA_LAYOUTS]}; "
                "put images in root/image and alphas with the same stems in root/alpha")
        self.pairs = match_stems(list_images(dirs[0]), list_images(dirs[1]))
        if not self.pairs:
            raise FileNotFoundError(f"no image/alpha files with matching stems in {dirs[0]} and {dirs[1]}")
        self.long_side = long_side

    def __len__(self) -> int:
        return len(self.pairs)

    def names(self) -> list[str]:
        return [p.stem for p, _ in self.pairs]

    def load(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """(image float32 [H,W,3], alpha float32 [H,W]), resized to the image's size if needed."""
        ip, ap = self.pairs[i]
        img, alpha = to_float(read_image(ip)), read_alpha(ap)
        if alpha.shape != img.shape[:2]:
            alpha = cv2.resize(alpha, (img.shape[1], img.shape[0]), interpolation=cv2.INTER_LINEAR)
        if self.long_side:
            img, alpha = resize_long(img, self.long_side), resize_long(alpha, self.long_side)
        return img, alpha

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        img, alpha = self.load(i)
        return {"image": to_chw(img), "alpha": to_chw(alpha)}


@dataclass
class _FgItem:
    name: str
    rgba: Path | None = None  # our RGBA layer
    fg: Path | None = None  # separate colour file
    alpha: Path | None = None
    estimate: bool = False  # fg is the photo (PPM-100 / P3M): estimate F from it


class ForegroundDataset(Dataset):
    """Foreground layers (F, alpha).

    Layouts (detected in this order):
    - root/<fg|FG|foreground|fgr>/ + root/<alpha|GT|gt|matte|mask|pha>/ with matching stems
      (Adobe Image Matting, Distinctions-646, our fg/alpha pairs);
    - root/<image|images|blurred_image|original>/ + an alpha folder (PPM-100, P3M): the photo is
      taken as the colour and F is estimated from it (blur-fusion, vmatte.ops.compose);
    - RGBA PNGs directly in root (training/foreground.py output; manifest.json is optional).
    `names` keeps only those subjects, `exclude` drops subjects (e.g. held-out ones);
    `cache` keeps decoded uint8 layers in memory; `max_side` downscales large layers on load.
    __getitem__ returns {"fg": [3,H,W], "alpha": [1,H,W]} float32.
    """

    def __init__(self, root: str | Path, names: Iterable[str] | None = None, exclude: Iterable[str] = (),
                 cache: bool = False, max_side: int | None = None):
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"foreground folder {self.root} not found; build it with "
                                    "`python -m vmatte.training.foreground` or pass an existing folder")
        items = self._scan(self.root)
        keep = set(names) if names is not None else None
        drop = set(exclude)
        self.items = [it for it in items if (keep is None or it.name in keep) and it.name not in drop]
        if not self.items:
            raise FileNotFoundError(f"no foreground layers in {self.root} (after names/exclude filters); "
                                    "expected fg/+alpha/ folders or RGBA PNGs")
        self.cache = cache
        self.max_side = max_side
        self._mem: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    @staticmethod
    def _scan(root: Path) -> list[_FgItem]:
        alpha_dirs = [root / d for d in ALPHA_DIRS if (root / d).is_dir()]
        for fgn in FG_DIRS:
            if (root / fgn).is_dir() and alpha_dirs:
                pairs = match_stems(list_images(root / fgn), list_images(alpha_dirs[0]))
                return [_FgItem(f.stem, fg=f, alpha=a) for f, a in pairs]
        for pn in PHOTO_DIRS:
            if (root / pn).is_dir() and alpha_dirs:
                pairs = match_stems(list_images(root / pn), list_images(alpha_dirs[0]))
                return [_FgItem(f.stem, fg=f, alpha=a, estimate=True) for f, a in pairs]
        files = [p for p in list_images(root, (".png",))]
        man = root / "manifest.json"
        if man.is_file():  # keep manifest order/names, drop entries whose file is missing
            subjects = json.loads(man.read_text()).get("subjects", {})
            listed = {root / r["file"] for r in subjects.values()}
            files = [p for p in files if p in listed] or files
        return [_FgItem(p.stem, rgba=p) for p in files]

    def __len__(self) -> int:
        return len(self.items)

    def names(self) -> list[str]:
        return [it.name for it in self.items]

    def load_uint8(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """(F uint8 [H,W,3], alpha uint8 [H,W]) of subject i."""
        if i in self._mem:
            return self._mem[i]
        it = self.items[i]
        if it.rgba is not None:
            fg, a = read_rgba(it.rgba)
        else:
            fg = read_image(it.fg)
            a = cv2.imread(str(it.alpha), cv2.IMREAD_GRAYSCALE)
            if a is None:
                raise FileNotFoundError(f"could not read alpha {it.alpha}")
            if a.shape != fg.shape[:2]:
                a = cv2.resize(a, (fg.shape[1], fg.shape[0]), interpolation=cv2.INTER_LINEAR)
            if it.estimate:
                from vmatte.ops.compose import estimate_foreground

                fg = estimate_foreground(fg, to_float(a))
        if self.max_side:
            fg, a = limit_long(fg, self.max_side), limit_long(a, self.max_side)
        if self.cache:
            self._mem[i] = (fg, a)
        return fg, a

    def load(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """(F float32 [H,W,3], alpha float32 [H,W]) in 0..1."""
        fg, a = self.load_uint8(i)
        return to_float(fg), to_float(a)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        fg, a = self.load(i)
        return {"fg": to_chw(fg), "alpha": to_chw(a)}


def video_frames(path: str | Path, count: int = 8, max_side: int | None = 1024) -> list[np.ndarray]:
    """`count` evenly spaced frames of a video as RGB uint8 [H,W,3] (for extra backgrounds)."""
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise FileNotFoundError(f"could not open video {path}; expected a readable video file")
    n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) or 1
    frames = []
    for k in np.linspace(0, max(0, n - 1), count).astype(int):
        cap.set(cv2.CAP_PROP_POS_FRAMES, int(k))
        ok, f = cap.read()
        if ok:
            frames.append(limit_long(cv2.cvtColor(f, cv2.COLOR_BGR2RGB), max_side))
    cap.release()
    return frames


def person_free_crops(image: np.ndarray, mask: np.ndarray, rng: np.random.Generator, count: int = 2,
                      min_frac: float = 0.2, max_frac: float = 0.6, margin: float = 0.03, tries: int = 100) -> list[np.ndarray]:
    """Up to `count` crops of a person photo with no person in them: real rooms, streets and
    nature as backgrounds, far more varied than the background photos alone. A window is kept when
    it misses the mask grown by `margin` of the photo's size (coarse masks leave hair out); its
    sides are min_frac..max_frac of the photo's."""
    H, W = mask.shape
    r = max(1, int(margin * max(H, W)))
    grown = cv2.dilate((mask > 0.1).astype(np.uint8), cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1)))
    integral = cv2.integral(grown)  # [H+1,W+1]
    crops: list[np.ndarray] = []
    for _ in range(tries):
        h = int(H * rng.uniform(min_frac, max_frac))
        w = int(W * rng.uniform(min_frac, max_frac))
        y0, x0 = int(rng.integers(0, H - h + 1)), int(rng.integers(0, W - w + 1))
        inside = integral[y0 + h, x0 + w] - integral[y0, x0 + w] - integral[y0 + h, x0] + integral[y0, x0]
        if inside == 0:
            crops.append(np.ascontiguousarray(image[y0:y0 + h, x0:x0 + w]))
            if len(crops) == count:
                break
    return crops


class BackgroundPool:
    """Background photos, from folders, files, a text list of files (the Adobe Image Matting way of
    naming COCO/VOC backgrounds) or video files (evenly spaced frames), plus optional person-free
    crops of person photos (`person_free`: real_mask_samples entries). Loaded lazily per process
    and kept in memory as uint8, downscaled to max_side.
    """

    def __init__(self, sources: str | Path | Sequence[str | Path], names: Iterable[str] | None = None,
                 exclude: Iterable[str] = (), max_side: int | None = 1024, video_frames_per_file: int = 8,
                 person_free: Sequence[dict] = (), person_free_per_photo: int = 2):
        if isinstance(sources, (str, Path)):
            sources = [sources]
        paths: list[Path] = []
        for s in sources:
            s = Path(s)
            if s.is_dir():
                paths += list_images(s, IMAGE_EXTS + VIDEO_EXTS)
            elif s.suffix.lower() == ".txt" and s.is_file():
                paths += [s.parent / line.strip() for line in s.read_text().splitlines() if line.strip()]
            elif s.is_file():
                paths.append(s)
            else:
                raise FileNotFoundError(f"background source {s} not found; pass folders, image/video files or a .txt list")
        keep = set(names) if names is not None else None
        drop = set(exclude)
        self.paths = [p for p in paths if (keep is None or p.name in keep or p.stem in keep)
                      and p.name not in drop and p.stem not in drop]
        if not self.paths:
            raise FileNotFoundError(f"no backgrounds in {list(map(str, sources))} after names/exclude filters")
        self.max_side, self.per_video = max_side, video_frames_per_file
        self.person_free, self.per_photo = list(person_free), int(person_free_per_photo)
        self._frames: list[np.ndarray] | None = None

    def _load(self) -> list[np.ndarray]:
        if self._frames is None:
            frames = []
            for p in self.paths:
                try:
                    if p.suffix.lower() in VIDEO_EXTS:
                        frames += video_frames(p, self.per_video, self.max_side)
                    else:
                        frames.append(limit_long(read_image(p), self.max_side))
                except (FileNotFoundError, ValueError) as e:
                    log.warning("skipping background %s: %s", p, e)
            n0 = len(frames)
            for k, smp in enumerate(self.person_free):
                try:
                    img = limit_long(read_image(smp["image"]), self.max_side)
                    m = cv2.resize(read_alpha(smp["mask"]), (img.shape[1], img.shape[0]), interpolation=cv2.INTER_NEAREST)
                except (FileNotFoundError, ValueError) as e:
                    log.warning("skipping person photo %s: %s", smp.get("image"), e)
                    continue
                frames += person_free_crops(img, m, np.random.default_rng([k, 11]), self.per_photo)
            if self.person_free:
                log.info("%d person-free background crops from %d photos", len(frames) - n0, len(self.person_free))
            if not frames:
                raise FileNotFoundError(f"none of the {len(self.paths)} background files could be read")
            self._frames = frames
        return self._frames

    def __len__(self) -> int:
        return len(self._load())

    def get(self, i: int) -> np.ndarray:
        """Background i as RGB uint8 [H,W,3]."""
        return self._load()[i]


def blob_mask(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """A random object silhouette float32 [h,w] in 0..1: an ellipse or a thresholded smooth-noise
    blob, with edges from sharp to slightly soft."""
    if rng.random() < 0.5:
        m = np.zeros((h, w), np.uint8)
        axes = (int(rng.uniform(0.2, 0.5) * w), int(rng.uniform(0.2, 0.5) * h))
        cv2.ellipse(m, (w // 2, h // 2), axes, float(rng.uniform(0, 180)), 0, 360, 1, -1)
        m = m.astype(np.float32)
    else:
        small = rng.uniform(0, 1, (4, 4)).astype(np.float32)
        small[1:3, 1:3] += 0.6  # keep the blob away from the box edges
        m = (cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC) > 0.8).astype(np.float32)
    return cv2.GaussianBlur(m, (0, 0), rng.uniform(0.3, 1.5))


def shade_object(patch: np.ndarray, m: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Make a flat texture cut-out [h,w,3] look like a lit solid object inside its silhouette m
    [h,w] (0..1): light falling off across it from a random side and a bright or dark rim along its
    outline (a cup's lip, a lamp's edge). Flat cut-outs look like background; the salient objects
    the segmenter takes for people (docs/quality.md) are shaded and outlined."""
    h, w = m.shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    th = rng.uniform(0, 2 * np.pi)
    t = (np.cos(th) * (xx / max(w - 1, 1) - 0.5) + np.sin(th) * (yy / max(h - 1, 1) - 0.5)) * 2  # -1..1
    light = 1.0 + rng.uniform(0.2, 0.5) * t  # [h,w]
    out = patch * light[..., None]
    r = max(1, int(round(rng.uniform(0.015, 0.05) * min(h, w))))
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
    hard = (m > 0.5).astype(np.uint8)
    rim = cv2.GaussianBlur((hard - cv2.erode(hard, k)).astype(np.float32), (0, 0), max(0.5, r / 3))  # [h,w]
    tone = 1.0 if rng.random() < 0.7 else 0.0  # mostly highlights (glazed, metal, plastic)
    strength = rng.uniform(0.4, 0.9)
    out = out + (tone - out) * (strength * np.clip(rim, 0, 1))[..., None]
    return np.clip(out, 0, 1).astype(np.float32)


def paste_distractors(bg: np.ndarray, sources: Sequence[np.ndarray], rng: np.random.Generator, count: int,
                      p_shaded: float = 0.0) -> np.ndarray:
    """Paste `count` non-person objects (blob-shaped cut-outs of `sources`, float32 HWC in 0..1)
    into the background `bg` [H,W,3]; each is shaded as a solid object (shade_object) with
    probability p_shaded. Why: salient objects with crisp edges (a cup filling the frame) must not
    read as "the subject"; composites otherwise have exactly one pasted layer."""
    out = bg.copy()
    H, W = bg.shape[:2]
    for _ in range(count):
        src = sources[int(rng.integers(len(sources)))]
        h, w = int(rng.uniform(0.15, 0.6) * H), int(rng.uniform(0.15, 0.6) * W)
        if h < 4 or w < 4 or src.shape[0] < h or src.shape[1] < w:
            continue
        sy, sx = int(rng.integers(src.shape[0] - h + 1)), int(rng.integers(src.shape[1] - w + 1))
        y, x = int(rng.integers(H - h + 1)), int(rng.integers(W - w + 1))
        m = blob_mask(h, w, rng)[..., None]
        patch = src[sy:sy + h, sx:sx + w]
        if p_shaded > 0 and rng.random() < p_shaded:
            patch = shade_object(patch, m[..., 0], rng)
        out[y:y + h, x:x + w] = patch * m + out[y:y + h, x:x + w] * (1 - m)
    return np.clip(out, 0, 1, out=out)


@dataclass
class AugmentConfig:
    """Probabilities and ranges of the compositing augmentation."""

    scale_range: tuple[float, float] = (0.45, 1.6)  # x the scale that fits the subject in the crop
    max_upscale: float | None = 1.5  # never enlarge a layer more than this (None = no limit)
    p_flip: float = 0.5
    p_fg_jitter: float = 0.8
    p_fg_recolor: float = 0.0  # recolour random regions of the subject (recolor_regions)
    p_bg_jitter: float = 0.8
    p_bg_blur: float = 0.25
    bg_blur_sigma: tuple[float, float] = (1.0, 6.0)
    p_synthetic_bg: float = 0.15
    p_noise: float = 0.5
    noise_std: tuple[float, float] = (0.002, 0.02)
    p_mask_morph: float = 0.5  # random dilate/erode of the coarse person mask
    mask_morph_frac: float = 0.03
    p_distractor: float = 0.5  # paste non-person objects into the background (they stay background)
    max_distractors: int = 3
    p_shaded_distractor: float = 0.0  # share of those objects lit and outlined like solid things

    def __post_init__(self) -> None:
        bad = [k for k, v in vars(self).items() if k.startswith("p_") and not 0 <= v <= 1]
        if bad or self.max_distractors < 1:
            raise ValueError(f"[augment]: probabilities must be in 0..1 (got {', '.join(bad) or 'none wrong'}) "
                             f"and max_distractors >= 1 (got {self.max_distractors}); p_distractor = 0 turns objects off")


class CompositeDataset(Dataset):
    """On-the-fly composites: one subject over a random background with augmentation.

    foregrounds: ForegroundDataset (or any object with __len__ and load(i) -> (F, alpha) floats);
    backgrounds: BackgroundPool, a folder / list of folders or files.
    crop: int or (h, w) output size; length: samples per epoch; seed: base seed; set_epoch(e)
    changes the samples between epochs (with persistent DataLoader workers call it before the
    workers start, or pass epoch in the constructor).
    Returns float32 tensors: image [3,H,W] (= fg*alpha + bg*(1-alpha) plus optional small noise),
    alpha [1,H,W], fg [3,H,W], bg [3,H,W], mask [1,H,W] (alpha > 0.5, randomly dilated/eroded).
    """

    def __init__(self, foregrounds, backgrounds, crop: int | tuple[int, int] = 512, length: int = 10000,
                 seed: int = 0, epoch: int = 0, augment: AugmentConfig | None = None):
        self.fgs = foregrounds
        self.bgs = backgrounds if isinstance(backgrounds, BackgroundPool) else BackgroundPool(backgrounds)
        self.crop = (crop, crop) if isinstance(crop, int) else tuple(crop)
        if len(self.crop) != 2 or min(self.crop) < 8:
            raise ValueError(f"crop must be an int or (h, w) >= 8, got {crop}")
        if len(self.fgs) == 0:
            raise ValueError("no foreground layers given; pass a non-empty ForegroundDataset")
        self.length, self.seed, self.epoch = int(length), int(seed), int(epoch)
        self.aug = augment or AugmentConfig()

    def __len__(self) -> int:
        return self.length

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def rng(self, index: int) -> np.random.Generator:
        """The sample's own generator: depends only on (seed, epoch, index)."""
        return np.random.default_rng([self.seed, self.epoch, int(index)])

    def sample(self, index: int) -> dict[str, np.ndarray]:
        """One composite as numpy arrays (HWC): image, alpha, fg, bg, mask."""
        if not 0 <= index < self.length:
            raise IndexError(f"index {index} out of range for length {self.length}")
        rng = self.rng(index)
        a = self.aug
        ch, cw = self.crop
        fg, alpha = self.fgs.load(int(rng.integers(len(self.fgs))))  # [H,W,3], [H,W]
        # subject geometry: scale, crop keeping the subject, flip
        s, y0, x0 = scale_crop_params(alpha_bbox(alpha), alpha.shape, self.crop, rng, a.scale_range,
                                      touched_edges(alpha), a.max_upscale)
        fg = crop_pad(_scale(fg, s), y0, x0, ch, cw, border="replicate")
        alpha = np.clip(crop_pad(_scale(alpha, s), y0, x0, ch, cw, border="constant"), 0, 1)
        if rng.random() < a.p_flip:
            fg, alpha = np.ascontiguousarray(fg[:, ::-1]), np.ascontiguousarray(alpha[:, ::-1])
        if rng.random() < a.p_fg_jitter:
            fg = color_jitter(fg, rng)
        if a.p_fg_recolor > 0 and rng.random() < a.p_fg_recolor:
            fg = recolor_regions(fg, rng)
        # background: photo (crop/flip/jitter/blur) or synthetic
        if rng.random() < a.p_synthetic_bg:
            bg = synthetic_background(ch, cw, rng)
        else:
            bg = to_float(random_bg_crop(self.bgs.get(int(rng.integers(len(self.bgs)))), self.crop, rng))
            if rng.random() < a.p_flip:
                bg = np.ascontiguousarray(bg[:, ::-1])
            if rng.random() < a.p_bg_jitter:
                bg = color_jitter(bg, rng)
        if rng.random() < a.p_distractor:
            sources = [to_float(random_bg_crop(self.bgs.get(int(rng.integers(len(self.bgs)))), self.crop, rng)), synthetic_background(ch, cw, rng)]
            bg = paste_distractors(bg, sources, rng, int(rng.integers(1, a.max_distractors + 1)), a.p_shaded_distractor)
        if rng.random() < a.p_bg_blur:
            bg = cv2.GaussianBlur(bg, (0, 0), rng.uniform(*a.bg_blur_sigma))
        image = composite(fg, bg, alpha)
        if rng.random() < a.p_noise:
            image = np.clip(image + rng.normal(0, rng.uniform(*a.noise_std), image.shape).astype(np.float32), 0, 1)
        mask = (alpha > 0.5).astype(np.uint8)
        if rng.random() < a.p_mask_morph:
            mask = morph_mask(mask, rng, a.mask_morph_frac)
        return {"image": image, "alpha": alpha.astype(np.float32), "fg": fg.astype(np.float32),
                "bg": bg.astype(np.float32), "mask": mask.astype(np.float32)}

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {k: to_chw(v) for k, v in self.sample(index).items()}


# Start DataLoader workers from a clean server process: a plain fork copies OpenCV's (and
# onnxruntime's) thread pools in a broken state, and the first OpenCV call in the worker can hang.
LOADER_CONTEXT = "forkserver"


def worker_init_fn(worker_id: int) -> None:
    """DataLoader worker init: one OpenCV thread per worker (samples are seeded per index anyway).
    Use with multiprocessing_context=LOADER_CONTEXT."""
    cv2.setNumThreads(1)
