"""CLI subcommands: each module exposes add_parser(subparsers) and run(args) -> int."""


def add_refine_patches_arg(p, extra: str = "") -> None:
    """--refine-patches, shared by the commands that build a Matter on the CPU."""
    p.add_argument("--refine-patches", type=int, default=None, metavar="N",
                   help="the refiner's budget of 64x64 border cells a frame (onnxruntime; default: the model's, 32 for rt): "
                        "fewer cost less CPU and refine less of the outline, 0 none" + extra)


def check_refine_patches(args) -> None:
    """A --refine-patches the model cannot take fails before any work (batch workers build their
    own models, so their errors would come once a file)."""
    from ..api import MAX_REFINE_PATCHES
    from ..backends import backend_for_precision, resolve_backend
    from ..errors import VmatteError

    k = getattr(args, "refine_patches", None)
    if k is None:
        return
    if not 0 <= k <= MAX_REFINE_PATCHES:
        raise VmatteError(f"--refine-patches {k} is out of range; use 0 to {MAX_REFINE_PATCHES} cells a frame (the model's default: 32 for rt)")
    name = resolve_backend(backend_for_precision(args.backend, getattr(args, "precision", "fp32")))  # int8: onnxruntime
    if name != "onnxruntime":
        raise VmatteError(f"--refine-patches needs the onnxruntime backend (--backend onnxruntime); {name} "
                          "runs the refiner as one graph, its budget fixed")


def add_precision_arg(p) -> None:
    """--precision, shared by the commands that build a Matter."""
    p.add_argument("--precision", default="fp32", choices=["fp32", "int8"],
                   help="fp32, or int8: onnxruntime's quantised model files (CPU; opt-in, as it is hardly faster "
                        "on the CPUs measured, and slower than fp32's paired graphs on AVX-512) (default: fp32)")
