"""The ``eossl`` command line: ``eossl <command> [options]``; ``eossl <command> --help`` for each command.

The commands come from :data:`eossl.pipeline.commands.COMMANDS`. Only the module of the command being run is
imported (and only what it needs, when it runs), so ``eossl --help``, ``--version`` and ``eossl sensors``
answer without loading torch.
"""

from __future__ import annotations

import argparse
import logging
import sys

from eossl import __version__
from eossl.config import ConfigError
from eossl.pipeline.commands import COMMANDS


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
    for name, spec in COMMANDS.items():
        if command in (name, "*"):
            spec.add_parser(sub)
        else:
            sub.add_parser(name, help=spec.help)
    return parser


def _command_of(argv: list[str]) -> str | None:
    """The command named in ``argv`` (the first argument that is not an option), if any."""
    return next((a for a in argv if not a.startswith("-")), None)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
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
