"""The `stoker` command line; see stoker.cli.commands and docs/cli.md."""

from stoker.cli.commands import cli, main

__all__ = ["cli", "main"]
