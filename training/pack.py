"""Pack training data compactly (JPEG colour, PNG alpha, downscaled backgrounds) so a run on a
remote GPU machine can carry it: python -m vmatte.training.pack --out .assets/pack"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

import cv2
import numpy as np

from .data import IMAGE_EXTS, list_images, match_stems, read_rgba

log = logging.getLogger(__name__)


def _limit(img: np.ndarray, max_side: int) -> np.ndarray:
    s = max_side / max(img.shape[:2])
    return cv2.resize(img, None, fx=s, fy=s, interpolation=cv2.INTER_AREA) if s < 1 else img


def pack(fg: Path, bgs: list[Path], out: Path, real_images: Path | None, real_masks: Path | None, prefix: str, max_side: int = 1280, quality: int = 93) -> None:
    (out / "fg" / "fg").mkdir(parents=True, exist_ok=True)
    (out / "fg" / "alpha").mkdir(parents=True, exist_ok=True)
    for p in sorted(fg.glob("*.png")):
        f, a = read_rgba(p)  # uint8 [H,W,3] RGB, uint8 [H,W]
        if f.dtype != np.uint8 or a.dtype != np.uint8:
            raise TypeError(f"read_rgba gave {f.dtype}/{a.dtype}; expected uint8 layers")
        cv2.imwrite(str(out / "fg" / "fg" / f"{p.stem}.jpg"), cv2.cvtColor(f, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
        cv2.imwrite(str(out / "fg" / "alpha" / f"{p.stem}.png"), a)
    (out / "bg").mkdir(exist_ok=True)
    for b in bgs:
        for p in list_images(b, IMAGE_EXTS):
            img = cv2.imread(str(p), cv2.IMREAD_COLOR)
            if img is not None:
                cv2.imwrite(str(out / "bg" / f"{p.stem}.jpg"), _limit(img, max_side), [cv2.IMWRITE_JPEG_QUALITY, 90])
    if real_images and real_masks:
        (out / "real" / "images").mkdir(parents=True, exist_ok=True)
        (out / "real" / "masks").mkdir(parents=True, exist_ok=True)
        for ip, mp in match_stems(list_images(real_images), list_images(real_masks)):
            img, m = cv2.imread(str(ip), cv2.IMREAD_COLOR), cv2.imread(str(mp), cv2.IMREAD_GRAYSCALE)
            if img is None or m is None:
                log.warning("skipping unreadable pair %s / %s", ip, mp)
                continue
            cv2.imwrite(str(out / "real" / "images" / f"{ip.stem}.jpg"), _limit(img, 512), [cv2.IMWRITE_JPEG_QUALITY, 88])
            cv2.imwrite(str(out / "real" / "masks" / f"{mp.stem}.png"), _limit(m, 512))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m vmatte.training.pack", description=__doc__.splitlines()[0])
    p.add_argument("--fg", default=".assets/fg")
    p.add_argument("--bg", nargs="+", default=["../shared/data/backgrounds"])
    p.add_argument("--real-images", default="../shared/data/people/human_seg_290/Training_Images")
    p.add_argument("--real-masks", default="../shared/data/people/human_seg_290/Ground_Truth")
    p.add_argument("--prefix", default="hs290_")
    p.add_argument("--out", default=".assets/pack")
    a = p.parse_args(argv)
    pack(Path(a.fg), [Path(b) for b in a.bg], Path(a.out), Path(a.real_images), Path(a.real_masks), a.prefix)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
