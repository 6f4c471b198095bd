"""``python -m shiftflow.zoo``: build the model zoo's ONNX files.

User errors (unknown names, bad sizes) print one ``error: ...`` line and exit 2.
"""

import argparse
import sys

from ..errors import ShiftflowError
from .build import ALL_NETWORKS, FORMS, VARIANTS, build_zoo, default_cache_dir


def parse_hw(text: str) -> tuple[int, int]:
    """``"64"`` or ``"64x48"`` → (height, width)."""
    parts = text.lower().split("x")
    if len(parts) not in (1, 2) or not all(p.isdigit() for p in parts):
        raise argparse.ArgumentTypeError(f"expected H or HxW, got '{text}'")
    h, w = (int(parts[0]), int(parts[-1]))
    return h, w


def make_parser(prog: str = "python -m shiftflow.zoo") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description="Build the shiftflow model zoo "
                                "(Brevitas, po2 fixed-point) as QCDQ and QONNX files.")
    p.add_argument("--out", metavar="DIR",
                   help=f"output directory (default: the zoo cache, now {default_cache_dir()})")
    p.add_argument("--only", nargs="+", metavar="NAME",
                   help=f"networks to build (default: all of {', '.join(ALL_NETWORKS)})")
    p.add_argument("--variants", nargs="+", metavar="V",
                   help=f"variants (default: all of {', '.join(VARIANTS)})")
    p.add_argument("--forms", nargs="+", metavar="F",
                   help=f"export forms (default: all of {', '.join(FORMS)})")
    p.add_argument("--input-hw", type=parse_hw, metavar="HxW",
                   help="input size for every network (default: each network's own)")
    return p


def main(argv: list[str] | None = None, prog: str = "python -m shiftflow.zoo") -> int:
    """Run the command line; returns the exit status (0, or 2 for a user error)."""
    args = make_parser(prog).parse_args(argv)
    try:
        build_zoo(args.out, args.only, args.variants, args.forms, args.input_hw)
    except ShiftflowError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
