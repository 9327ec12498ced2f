"""CLI subcommands: each module exposes add_parser(subparsers) and run(args) -> int."""


def add_precision_arg(p) -> None:
    """--precision, shared by the commands that build a Matter."""
    p.add_argument("--precision", default="fp32", choices=["fp32", "int8"],
                   help="fp32, or int8: onnxruntime's quantised model files (CPU; opt-in, as it is hardly faster "
                        "on the CPUs measured) (default: fp32)")
