"""Held-out split of subjects and backgrounds, and the dev evaluation set built from it.

Why: composites share subjects and backgrounds, so a fair dev set must hold out both. The split
is a fixed list (training/split.json in the repo) chosen once by a seeded hash of the names, so it
does not change when subjects are added. The dev set = every held-out subject composited over
`per_subject` held-out backgrounds (fixed seed), written as DIR/image/*.png + DIR/alpha/*.png, the
layout `vmatte eval DIR` and ImageAlphaDataset read.

CLI: python -m vmatte.training.devset --fg .assets/fg --bg /work/shared/data/backgrounds
     --out .assets/devset   (from a checkout without installing: python -m training.devset)
Real-photo check set (held-out people's own photos and masks, no teacher in the labels):
     python -m vmatte.training.devset --real-images .../human_seg_290/Training_Images
     --real-masks .../human_seg_290/Ground_Truth --out .assets/realset
"""
from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Iterable, Sequence

import cv2
import numpy as np

from .data import (IMAGE_EXTS, ForegroundDataset, composite, list_images, read_image, resize_long,
                   to_float)

log = logging.getLogger(__name__)

SPLIT_FILE = Path(__file__).with_name("split.json")


def _rank(name: str, seed: int) -> str:
    return hashlib.sha1(f"{seed}:{name}".encode()).hexdigest()


def pick_heldout(names: Iterable[str], count: int, seed: int = 0) -> list[str]:
    """`count` names chosen by a seeded hash (stable under adding/removing other names), sorted."""
    ranked = sorted(set(names), key=lambda n: _rank(n, seed))
    return sorted(ranked[:max(0, count)])


def make_split(subjects: Sequence[str], backgrounds: Sequence[str], subject_frac: float = 0.1,
               n_backgrounds: int = 6, seed: int = 0, eligible: Iterable[str] | None = None) -> dict:
    """Split dict: held-out subject names (~subject_frac of all, drawn from `eligible` if given)
    and held-out background file names."""
    if not subjects or not backgrounds:
        raise ValueError(f"need subjects and backgrounds, got {len(subjects)} and {len(backgrounds)}")
    pool = sorted(set(eligible) & set(subjects)) if eligible is not None else sorted(set(subjects))
    k = max(1, round(subject_frac * len(set(subjects))))
    return {"seed": seed, "subject_frac": subject_frac,
            "heldout_subjects": pick_heldout(pool, min(k, len(pool)), seed),
            "heldout_backgrounds": pick_heldout(backgrounds, min(n_backgrounds, len(backgrounds) - 1), seed)}


def control_split(split: dict, subjects: Sequence[str], backgrounds: Sequence[str], which: str,
                  seed: int = 1) -> dict:
    """A control split: the held-out subjects and/or backgrounds of `split` replaced by as many
    *training* ones (`which`: "subjects", "backgrounds" or "both"), so a control set built from it
    shows how a model does on what it was trained on (under- vs over-fitting)."""
    if which not in ("subjects", "backgrounds", "both"):
        raise ValueError(f"unknown control {which!r}; expected subjects, backgrounds or both")
    out = dict(split, control={"of": which, "seed": seed})
    if which in ("subjects", "both"):
        pool = training_subjects(subjects, split)
        out["heldout_subjects"] = pick_heldout(pool, min(len(split["heldout_subjects"]), len(pool)), seed)
    if which in ("backgrounds", "both"):
        pool = [p.name for p in training_backgrounds(backgrounds, split)]
        out["heldout_backgrounds"] = pick_heldout(pool, min(len(split["heldout_backgrounds"]), len(pool)), seed)
    return out


def load_split(path: str | Path | None = None) -> dict:
    """Read a split JSON (default: the repo's training/split.json)."""
    path = Path(path) if path else SPLIT_FILE
    if not path.is_file():
        raise FileNotFoundError(f"split file {path} not found; create it with `python -m vmatte.training.devset`")
    split = json.loads(path.read_text())
    for key in ("heldout_subjects", "heldout_backgrounds"):
        if key not in split:
            raise ValueError(f"split file {path} has no '{key}'; expected the output of make_split")
    return split


def write_split(split: dict, path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(split, indent=1) + "\n")


def _bg_key(p: str | Path) -> str:
    return Path(p).name


def training_subjects(names: Iterable[str], split: dict | None = None) -> list[str]:
    """Subject names that training may use: all but the held-out ones."""
    split = split if split is not None else load_split()
    held = set(split["heldout_subjects"])
    return [n for n in names if n not in held]


def training_backgrounds(paths: Iterable[str | Path], split: dict | None = None) -> list[Path]:
    """Background files that training may use: all but the held-out ones (matched by file name)."""
    split = split if split is not None else load_split()
    held = set(split["heldout_backgrounds"])
    return [Path(p) for p in paths if _bg_key(p) not in held]


def training_lists(fg_dir: str | Path, bg_dir: str | Path, split: dict | None = None
                   ) -> tuple[list[str], list[Path]]:
    """(training subject names in fg_dir, training background files in bg_dir)."""
    names = ForegroundDataset(fg_dir).names()
    return training_subjects(names, split), training_backgrounds(list_images(bg_dir), split)


def build_devset(fg_dir: str | Path, bg_dir: str | Path, out: str | Path, split: dict,
                 per_subject: int = 2, long_side: int = 640, seed: int = 0) -> list[dict]:
    """Composite each held-out subject over `per_subject` held-out backgrounds -> out/image/*.png,
    out/alpha/*.png (8-bit), out/devset.json; returns the list of entries.

    The composite is made at the layer's size with the background scaled to cover it, then the
    pair is resized so the long side is `long_side`. The alpha PNG is the exact alpha used.
    """
    from vmatte.ops.compose import cover_resize

    fgs = ForegroundDataset(fg_dir, names=split["heldout_subjects"])
    missing = set(split["heldout_subjects"]) - set(fgs.names())
    if missing:
        log.warning("%d held-out subjects not in %s: %s", len(missing), fg_dir, sorted(missing)[:5])
    bg_paths = [p for p in list_images(bg_dir) if _bg_key(p) in set(split["heldout_backgrounds"])]
    if len(bg_paths) < per_subject:
        raise ValueError(f"found {len(bg_paths)} held-out backgrounds in {bg_dir}, need >= {per_subject}; "
                         "check --bg against the split file")
    bgs = {p.name: read_image(p) for p in bg_paths}
    out = Path(out)
    (out / "image").mkdir(parents=True, exist_ok=True)
    (out / "alpha").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    entries = []
    for i, name in enumerate(fgs.names()):
        fg, alpha = fgs.load(i)  # [H,W,3], [H,W]
        h, w = alpha.shape
        for bname in rng.choice(sorted(bgs), size=per_subject, replace=False):
            bg = to_float(cover_resize(bgs[bname], h, w))  # [H,W,3]
            image = composite(fg, bg, alpha)
            img_o, a_o = resize_long(image, long_side), resize_long(alpha, long_side)
            stem = f"{name}__{Path(bname).stem}"
            u8 = (np.clip(img_o, 0, 1) * 255 + 0.5).astype(np.uint8)
            cv2.imwrite(str(out / "image" / f"{stem}.png"), cv2.cvtColor(u8, cv2.COLOR_RGB2BGR))
            cv2.imwrite(str(out / "alpha" / f"{stem}.png"), (np.clip(a_o, 0, 1) * 255 + 0.5).astype(np.uint8))
            entries.append({"name": stem, "subject": name, "background": str(bname),
                            "size": list(a_o.shape)})
    meta = {"fg_dir": str(fg_dir), "bg_dir": str(bg_dir), "per_subject": per_subject, "long_side": long_side,
            "seed": seed, "split": split, "count": len(entries), "entries": entries}
    tmp = out / "devset.json.tmp"
    tmp.write_text(json.dumps(meta, indent=1))
    os.replace(tmp, out / "devset.json")
    return entries


def build_real_set(images: str | Path, masks: str | Path, out: str | Path, split: dict, prefix: str = "hs290_",
                   long_side: int = 640) -> list[str]:
    """The held-out subjects' original photos with their human-drawn person masks -> out/image,
    out/alpha: a check on real photos and backgrounds whose labels no teacher made (the masks are
    binary and coarse at hair, so absolute errors are high for every method; compare methods).
    Returns the names written."""
    from .data import match_stems, read_alpha

    held = set(split["heldout_subjects"])
    out = Path(out)
    (out / "image").mkdir(parents=True, exist_ok=True)
    (out / "alpha").mkdir(parents=True, exist_ok=True)
    names = []
    for ip, mp in match_stems(list_images(images), list_images(masks)):
        name = prefix + ip.stem
        if name not in held:
            continue
        img = read_image(ip)
        m = cv2.resize(read_alpha(mp), (img.shape[1], img.shape[0]), interpolation=cv2.INTER_NEAREST)
        u8 = (np.clip(resize_long(to_float(img), long_side), 0, 1) * 255 + 0.5).astype(np.uint8)
        a = (resize_long((m > 0.5).astype(np.float32), long_side) > 0.5).astype(np.uint8) * 255
        cv2.imwrite(str(out / "image" / f"{name}.png"), cv2.cvtColor(u8, cv2.COLOR_RGB2BGR))
        cv2.imwrite(str(out / "alpha" / f"{name}.png"), a)
        names.append(name)
    if not names:
        raise ValueError(f"no held-out subject ({prefix}*) among the photos in {images}; check --real-images/--real-prefix")
    return names


def _subject_sizes(fg_dir: Path) -> dict[str, int]:
    """Long side of each subject from the builder's manifest (empty when there is none)."""
    man = fg_dir / "manifest.json"
    if not man.is_file():
        return {}
    subjects = json.loads(man.read_text()).get("subjects", {})
    return {n: max(r["size"]) for n, r in subjects.items() if "size" in r}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m vmatte.training.devset", description=__doc__.split("\n")[0])
    ap.add_argument("--fg", help="foreground layers (training/foreground.py output)")
    ap.add_argument("--bg", help="background photos folder")
    ap.add_argument("--real-images", help="instead: write the held-out subjects' real photos (this folder) ...")
    ap.add_argument("--real-masks", help="... with their person masks (this folder) as a real-photo check set")
    ap.add_argument("--real-prefix", default="hs290_", help="name prefix of those subjects in the split")
    ap.add_argument("--out", required=True, help="dev set folder (image/ + alpha/)")
    ap.add_argument("--split", default=str(SPLIT_FILE), help="split JSON; created if missing")
    ap.add_argument("--new-split", action="store_true", help="recreate the split even if the file exists")
    ap.add_argument("--subject-frac", type=float, default=0.1)
    ap.add_argument("--n-backgrounds", type=int, default=6)
    ap.add_argument("--min-side", type=int, default=400,
                    help="held-out subjects are drawn from layers with a long side of at least this")
    ap.add_argument("--per-subject", type=int, default=2)
    ap.add_argument("--long-side", type=int, default=640)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--control", choices=("subjects", "backgrounds", "both"),
                    help="build a control set instead: training subjects and/or backgrounds in place of the held-out ones")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.real_images or args.real_masks:
        if not (args.real_images and args.real_masks):
            ap.error("--real-images and --real-masks go together")
        names = build_real_set(args.real_images, args.real_masks, args.out, load_split(args.split), args.real_prefix,
                               args.long_side)
        log.info("wrote %d held-out real photos with masks to %s", len(names), args.out)
        return 0
    if not (args.fg and args.bg):
        ap.error("--fg and --bg are needed to build the composite dev set")
    fg_dir, split_path = Path(args.fg), Path(args.split)
    if split_path.is_file() and not args.new_split:
        split = load_split(split_path)
        log.info("using the existing split %s", split_path)
    else:
        names = ForegroundDataset(fg_dir).names()
        sizes = _subject_sizes(fg_dir)
        eligible = [n for n in names if sizes.get(n, args.min_side) >= args.min_side]
        bgs = [p.name for p in list_images(args.bg, IMAGE_EXTS)]
        split = make_split(names, bgs, args.subject_frac, args.n_backgrounds, args.seed, eligible)
        split["source"] = {"fg": str(fg_dir), "bg": str(args.bg), "min_side": args.min_side,
                           "subjects_total": len(names), "backgrounds_total": len(bgs)}
        write_split(split, split_path)
        log.info("wrote split %s: %d held-out subjects, %d held-out backgrounds", split_path,
                 len(split["heldout_subjects"]), len(split["heldout_backgrounds"]))
    if args.control:
        sizes = _subject_sizes(fg_dir)
        eligible = [n for n in ForegroundDataset(fg_dir).names() if sizes.get(n, args.min_side) >= args.min_side]
        split = control_split(split, eligible, list_images(args.bg, IMAGE_EXTS), args.control, args.seed + 1)
        log.info("control set of training %s", args.control)
    write_split(split, Path(args.out) / "split.json")
    entries = build_devset(fg_dir, args.bg, args.out, split, args.per_subject, args.long_side, args.seed)
    log.info("wrote %d dev images to %s", len(entries), args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
