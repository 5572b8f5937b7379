"""The `perception` command. Each sub-command lives in the module that owns it and registers
itself here through a `register(subparsers)` function; this file only dispatches and turns
expected failures into one-line errors (a traceback only with --debug)."""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from perception.errors import UserError, first_line

# module path -> the sub-commands it registers, in the order of the pipeline. Only the module
# of the command being run is imported: `perception validate` must not pay for importing torch.
COMMANDS: dict[str, tuple[str, ...]] = {
    "perception.sim.generate": ("generate",),
    "perception.dataset.validate": ("validate",),
    "perception.dataset.split": ("split",),
    "perception.dataset.adapters": ("import", "export-labels"),
    "perception.dataset.real_vs_sim": ("real-vs-sim",),
    "perception.calibrate": ("calibrate",),
    "perception.train": ("train",),
    "perception.evaluate": ("evaluate", "evaluate-real"),
    "perception.export": ("export", "parity", "quantize", "model-card"),
    "perception.demo": ("demo",),
    "perception.monitor": ("monitor-profile", "monitor"),
    "perception.bench": ("bench",),
    "perception.summary": ("summary",),
}
COMMAND_MODULES = tuple(COMMANDS)

__all__ = ["COMMANDS", "COMMAND_MODULES", "UserError", "build_parser", "main"]


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser with every sub-command, or only `command`'s module when it is known."""
    parser = argparse.ArgumentParser(prog="perception", description=__doc__.splitlines()[0])
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    modules = [m for m, cmds in COMMANDS.items() if command in cmds] or list(COMMANDS)
    for name in modules:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("DVC_NO_ANALYTICS", "1")
    argv = sys.argv[1:] if argv is None else argv
    command = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(command)
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

        known = (UserError, FormatError, OSError, ValueError)
        kind = "error" if isinstance(e, known) else f"error ({type(e).__name__})"
        print(f"perception: {kind}: {first_line(e)}", file=sys.stderr)
        return 2 if isinstance(e, known) else 1


if __name__ == "__main__":
    sys.exit(main())
