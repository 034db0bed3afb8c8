"""The ``eossl`` command line: ``eossl <command> [options]``; ``eossl <command> --help`` for each command."""

from __future__ import annotations

import argparse
import logging
import sys

from eossl import __version__
from eossl.commands import cache as cache_cmd
from eossl.commands import catalog as catalog_cmd
from eossl.commands import demo as demo_cmd
from eossl.commands import evaluate as evaluate_cmd
from eossl.commands import export as export_cmd
from eossl.commands import finetune as finetune_cmd
from eossl.commands import predict as predict_cmd
from eossl.commands import pretrain as pretrain_cmd
from eossl.commands import report as report_cmd
from eossl.commands import run as run_cmd
from eossl.commands import views as views_cmd
from eossl.config import ConfigError
from eossl.runtime import configure_allocator

COMMANDS = (catalog_cmd, cache_cmd, views_cmd, pretrain_cmd, export_cmd, finetune_cmd, evaluate_cmd, predict_cmd,
            report_cmd, run_cmd, demo_cmd)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="eossl", description="Self-supervised pretraining on multispectral satellite imagery.",
        epilog="Start with `eossl demo` (indexes and caches the built-in Sentinel-2 scene).")
    parser.add_argument("--version", action="version", version=f"eossl {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for module in COMMANDS:
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("rasterio").setLevel(logging.WARNING)
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
