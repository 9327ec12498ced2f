"""Make docs/result.jpg, the README's picture: a frame of `vmatte sample` (NASA's public-domain
portrait of Eileen Collins) through the shipped model on the CPU: input, alpha, blurred
background, a new background (a synthetic gradient, so the figure needs no data files).

    python docs/make_result.py [--out docs/result.jpg]
"""
from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from vmatte import Matter
from vmatte.ops import compose
from vmatte.sample import load_photo, render_frame


def gradient(h: int, w: int) -> np.ndarray:
    """A teal-to-orange diagonal gradient, uint8 [H,W,3]."""
    t = (np.add.outer(np.arange(h) / h, np.arange(w) / w) / 2)[..., None]  # [H,W,1]
    return (np.array([20, 120, 140]) * (1 - t) + np.array([240, 160, 60]) * t).astype(np.uint8)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(Path(__file__).with_name("result.jpg")))
    ap.add_argument("--phase", type=float, default=0.25, help="camera phase of the frame, 0..1")
    a = ap.parse_args(argv)
    rgb = render_frame(load_photo(), a.phase, 640, 360)  # [H,W,3]
    m = Matter("rt", backend="onnxruntime")
    alpha = m.matte(rgb)  # [H,W]
    m.close()
    h, w = alpha.shape
    tiles = [rgb, np.dstack([compose.alpha_to_uint8(alpha)] * 3), compose.blur_background(rgb, alpha),
             compose.composite(compose.estimate_foreground(rgb, alpha), alpha, gradient(h, w))]
    grid = np.vstack([np.hstack(tiles[:2]), np.hstack(tiles[2:])])
    cv2.imwrite(a.out, cv2.cvtColor(grid, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 88])
    print(f"wrote {a.out} ({grid.shape[1]}x{grid.shape[0]}), mean alpha {alpha.mean():.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
