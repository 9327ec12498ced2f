"""`vmatte process`: replace, blur or remove the background of a video, image or image folder."""
from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading

from ..errors import VmatteError
from . import _batch, add_precision_arg, add_refine_patches_arg, check_refine_patches

HELP = "replace, blur or remove the background of a video file, image or folder of images"


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("process", help=HELP, description=HELP.capitalize() + ".",
                              formatter_class=argparse.RawDescriptionHelpFormatter,
                              epilog="examples:\n"
                                     "  vmatte process talk.mp4 -o talk_blur.mp4\n"
                                     "  vmatte process talk.mp4 -o talk_green.mp4 --background green\n"
                                     "  vmatte process talk.mp4 -o talk_alpha.mov --background transparent\n"
                                     "  vmatte process photos/ -o cutouts/ --output-kind rgba\n"
                                     "  vmatte process clips/ 'more/*.mov' -o blurred/ --report report.json\n"
                                     "  vmatte process --manifest jobs.txt --resume --ray auto\n"
                                     "a batch exits 1 when any file failed (the others are finished)")
    p.add_argument("input", nargs="*", help="video file, image, or folder of images; several, a glob or a folder "
                                            "of videos make a batch")
    p.add_argument("-o", "--output",
                   help="output path: .mp4/.mkv (H.264), .mov (ProRes, alpha), .webm (VP9, alpha), "
                        ".png/.jpg, or a folder (PNG sequence); for a batch, the folder the outputs go into")
    p.add_argument("-b", "--background", default="blur",
                   help="blur, blur:SIGMA, a colour (green, #00ff00, 0,255,0), an image or video file, "
                        "or transparent (default: blur)")
    p.add_argument("--output-kind", "--output-type", dest="output_kind", default="composite",
                   choices=["composite", "alpha", "foreground", "rgba"],
                   help="what to write: composite (over --background), alpha (grey matte), foreground (the person "
                        "over black), rgba (the person with alpha: .mov, .webm, .png or a folder) (default: composite)")
    p.add_argument("--backend", default="auto",
                   choices=["auto", "onnxruntime", "torch", "tensorrt", "torch-cuda"], help="inference backend")
    p.add_argument("--model", default="rt", help="model name (default: rt, the one that ships weights)")
    add_precision_arg(p)
    p.add_argument("--size", type=int, default=None,
                   help="the model's low-resolution long side in pixels, 64 to 8192 (default: the model's, 224 for rt)")
    add_refine_patches_arg(p, " (e.g. 0 for a fast preview)")
    p.add_argument("--temporal", default="on", choices=["on", "off"],
                   help="steady the matte of a video over the frames around each one, so still edges do not "
                        "shimmer; off mattes every frame on its own (default: on)")
    p.add_argument("--overwrite", action="store_true", help="replace the output if it exists")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar or summary")
    _batch.add_arguments(p)
    p.set_defaults(func=run)
    return p


def run(args) -> int:
    from ..process import process

    check_refine_patches(args)
    if _batch.wanted(args):
        return _batch.run(args)
    if not args.input or not args.output:
        raise VmatteError("give an input and -o/--output, e.g. vmatte process talk.mp4 -o talk_blur.mp4")
    args.input = args.input[0]

    if not args.quiet:
        logging.basicConfig(level=logging.INFO, format="vmatte: %(message)s")

    def make_matter():
        try:
            from ..api import Matter
        except ImportError as e:
            raise VmatteError(f"cannot load the matting model ({e}); reinstall vmatte") from None
        return Matter(model=args.model, backend=args.backend, size=args.size, precision=args.precision,
                      refine_patches=args.refine_patches)

    bar = None
    progress = None
    if not args.quiet:
        from tqdm import tqdm

        def progress(done: int, total):
            nonlocal bar
            if bar is None:
                bar = tqdm(total=total, unit="frame", dynamic_ncols=True, file=sys.stderr, desc="process")
            bar.update(done - bar.n)

    def _terminate(signum, frame):  # `kill PID`: clean up like Ctrl-C instead of leaving a partial file
        raise KeyboardInterrupt

    main = threading.current_thread() is threading.main_thread()
    old_term = signal.signal(signal.SIGTERM, _terminate) if main else None
    try:
        res = process(args.input, args.output, matter=make_matter, background=args.background,
                      output_kind=args.output_kind, overwrite=args.overwrite, progress=progress,
                      temporal=args.temporal == "on")
    except KeyboardInterrupt:
        if bar is not None:
            bar.close()
        print("vmatte: interrupted; nothing was written", file=sys.stderr)
        return 130
    finally:
        if bar is not None:
            bar.close()
        if main:
            signal.signal(signal.SIGTERM, old_term)
    if not args.quiet:
        print(f"vmatte: wrote {res.output}: {res.frames} frame{'' if res.frames == 1 else 's'} in {res.seconds:.1f} s "
              f"({res.fps:.1f} fps)",
              file=sys.stderr)
    return 0
