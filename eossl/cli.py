"""The ``eossl`` command line: ``eossl <command> [options]``; ``eossl <command> --help`` for each command.

The commands are the modules listed in :data:`eossl.commands.COMMANDS`, each light to import: the parser of the
command being run is built in full, and what a command needs is imported when it runs, so ``eossl --help``,
``eossl <command> --help``, ``--version`` and ``eossl sensors`` answer without loading torch.
"""

from __future__ import annotations

import argparse
import logging
import re
import sys

from eossl import __version__
from eossl.commands import COMMANDS, modules
from eossl.config import ConfigError

__all__ = ["COMMANDS", "build_parser", "main"]     # COMMANDS: eossl.commands's list, the one the CLI reads


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser with every command listed; ``command`` (or every command, with ``"*"``) gets its full parser."""
    parser = argparse.ArgumentParser(
        prog="eossl", description="Self-supervised pretraining on multispectral satellite imagery.",
        epilog="Start with `eossl run` (the demo pipeline on the built-in data: pretrain, evaluate, finetune, "
               "class map, report).")
    parser.add_argument("--version", action="version", version=f"eossl {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, mod in modules().items():
        if command in (name, "*"):
            p = sub.add_parser(name, help=mod.HELP, description=getattr(mod, "DESCRIPTION", None))
            mod.add_arguments(p)
            p.set_defaults(func=mod.cli, command=name)
        else:
            sub.add_parser(name, help=mod.HELP)
    return parser


def _command_of(argv: list[str]) -> str | None:
    """The command named in ``argv`` (the first argument that is not an option), if any."""
    return next((a for a in argv if not a.startswith("-")), None)


def _join_negative_lists(argv: list[str]) -> list[str]:
    """``--bbox -11.5,24.5,-11.4,24.6`` -> ``--bbox=-11.5,24.5,-11.4,24.6``: argparse reads a value that starts with
    a minus sign and is not a plain number as another option, so a comma list west of Greenwich or south of the
    equator would fail."""
    out, i = [], 0
    while i < len(argv):
        a = argv[i]
        if (a.startswith("--") and "=" not in a and i + 1 < len(argv)
                and re.fullmatch(r"-\d[\d.eE+-]*(,\s*-?[\d.eE+-]+)+", argv[i + 1])):
            out.append(f"{a}={argv[i + 1]}")
            i += 2
            continue
        out.append(a)
        i += 1
    return out


def main(argv: list[str] | None = None) -> int:
    argv = _join_negative_lists(sys.argv[1:] if argv is None else list(argv))
    parser = build_parser(_command_of(argv))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("rasterio").setLevel(logging.WARNING)
    from eossl.runtime import configure_allocator

    configure_allocator()
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError, KeyError, ConfigError) as err:
        if args.verbose:
            raise
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"eossl {args.command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
