"""ldm-lab command line: a thin shell over the same functions the notebooks call.

Examples:
    ldm-lab data check data/inpainting_dataset
    ldm-lab prepare demo
    ldm-lab weights status
"""

from __future__ import annotations

import argparse
import importlib
import sys

# Each module listed here exposes `register(subparsers)`, which adds its sub-commands and sets
# `func=callable(args) -> int` on them. Add one line per command group.
COMMAND_MODULES: list[str] = ["ldm_lab.weights", "ldm_lab.data.commands", "ldm_lab.checkpoints", "ldm_lab.doctor",
                             "ldm_lab.commands"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ldm-lab",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--debug", action="store_true", help="show Python tracebacks for errors")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("ldm-lab: interrupted", file=sys.stderr)
        return 130
    except (ValueError, FileNotFoundError, FileExistsError, NotADirectoryError, PermissionError) as err:
        # Bad input: one clear line, no traceback (design §9), unless --debug.
        if args.debug:
            raise
        print(f"ldm-lab: error: {err}", file=sys.stderr)
        return 2
    except ConnectionError as err:  # offline: the message says what to do instead; no traceback needed
        if args.debug:
            raise
        print(f"ldm-lab: error: {err}", file=sys.stderr)
        return 1
    except Exception as err:  # anything else: still one line; the traceback only with --debug
        if args.debug:
            raise
        print(f"ldm-lab: error: {type(err).__name__}: {err} (run with --debug for the traceback)", file=sys.stderr)
        return 1
