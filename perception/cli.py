"""The `perception` command. Each sub-command lives in the module that owns it and registers
itself here through a `register(subparsers)` function; this file only dispatches and turns
expected failures into one-line errors (a traceback only with --debug)."""

from __future__ import annotations

import argparse
import importlib
import os
import sys

# module path -> owner of one or more sub-commands, in the order of the pipeline
COMMAND_MODULES = (
    "perception.sim.generate",
    "perception.dataset.validate",
    "perception.dataset.split",
    "perception.dataset.adapters",
    "perception.train",
)


class UserError(Exception):
    """An expected failure caused by input: printed as one line, exit status 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="perception", description=__doc__.splitlines()[0])
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("DVC_NO_ANALYTICS", "1")
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("perception: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # one line for expected input errors; --debug shows everything
        if args.debug:
            raise
        from perception.dataset.schema import FormatError

        known = (UserError, FormatError, FileNotFoundError, NotADirectoryError, ValueError)
        kind = "error" if isinstance(e, known) else f"error ({type(e).__name__})"
        print(f"perception: {kind}: {e}", file=sys.stderr)
        return 2 if isinstance(e, known) else 1


if __name__ == "__main__":
    sys.exit(main())
