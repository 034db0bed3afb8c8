"""The `eossl` subcommands: each parses its arguments, calls library functions and reports where outputs are."""
