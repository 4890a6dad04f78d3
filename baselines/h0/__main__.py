"""``python -m baselines.h0 --dataset PATH [--split test] -o predictions.zarr``"""
from __future__ import annotations

import argparse
import os
import sys


def main(argv=None) -> int:
    from materials_ham import MaterialsHamError

    from . import write

    ap = argparse.ArgumentParser(prog="python -m baselines.h0", description="Write H0-baseline predictions of a split.")
    ap.add_argument("--dataset", required=True, help="packed dataset folder")
    ap.add_argument("--split", default="test")
    ap.add_argument("-o", "--out", required=True, help="predictions store to write (.zarr)")
    ap.add_argument("--overwrite", action="store_true")
    args = ap.parse_args(argv)
    if os.path.exists(args.out) and not args.overwrite:
        print(f"error: {args.out}: already exists (pass --overwrite to replace it)", file=sys.stderr)
        return 1
    try:
        path = write(args.dataset, args.out, args.split, overwrite=args.overwrite, progress=sys.stderr.isatty())
    except MaterialsHamError as err:
        print(f"error: {err}", file=sys.stderr)
        return getattr(err, "exit_code", 1)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
