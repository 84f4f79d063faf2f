"""Entry point of the ``wfb`` command: one sub-command per job, each in its own module.

A sub-command module exposes ``register(subparsers)``, which adds its parser and sets ``func`` to a callable taking the
parsed arguments and returning an exit code.
"""

from __future__ import annotations

import argparse
import sys

from .. import __version__
from ..errors import WfbError
from . import demo, evaluate, make_dataset, make_pool, reconstruct, train, train_model

COMMANDS = [reconstruct, make_dataset, make_pool, train, train_model, evaluate, demo]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wfb",
        description="World from Blur: camera motion, a sharp frame, metric depth and 3D points from one blurred photo.",
    )
    parser.add_argument("--version", action="version", version=f"world-from-blur {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for module in COMMANDS:
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # `wfb train` takes key=value overrides anywhere on the line, also after its options.
    if getattr(args, "overrides", None) is not None and all("=" in e and not e.startswith("-") for e in extra):
        args.overrides += extra
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        return int(args.func(args) or 0)
    except WfbError as err:
        print(f"wfb: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("wfb: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
