"""The `eossl` subcommands: each parses its arguments, calls library functions and reports where outputs are."""

from __future__ import annotations


def config_flags(p, config: str, overrides: str = "dotted override; repeatable", runs: str | None = None,
                 dry_run: str = "print the resolved config and exit") -> None:
    """The flags of every configured command: --config (help ``config``), --set KEY=VALUE (repeatable), --dry-run,
    and --runs (the parent folder of new run directories) when ``runs`` names what goes there."""
    p.add_argument("--config", help=config)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help=overrides)
    if runs:
        p.add_argument("--runs", default="runs", help=f"parent folder of {runs} (default: %(default)s)")
    p.add_argument("--dry-run", action="store_true", help=dry_run)


def print_config(cfg) -> int:
    """--dry-run: print the resolved config (a config dataclass or plain data) as YAML; the exit code 0."""
    import yaml

    from eossl.config import to_dict

    print(yaml.safe_dump(to_dict(cfg), sort_keys=False))
    return 0
