"""CLI subcommands: each module exposes add_parser(subparsers) and run(args) -> int."""


def add_refine_patches_arg(p, extra: str = "") -> None:
    """--refine-patches, shared by the commands that build a Matter on the CPU."""
    p.add_argument("--refine-patches", type=int, default=None, metavar="N",
                   help="the refiner's budget of 64x64 border cells a frame (onnxruntime; default: the model's, 32 for rt): "
                        "fewer cost less CPU and refine less of the outline, 0 none" + extra)


def add_precision_arg(p) -> None:
    """--precision, shared by the commands that build a Matter."""
    p.add_argument("--precision", default="fp32", choices=["fp32", "int8"],
                   help="fp32, or int8: onnxruntime's quantised model files (CPU; opt-in, as it is hardly faster "
                        "on the CPUs measured) (default: fp32)")
