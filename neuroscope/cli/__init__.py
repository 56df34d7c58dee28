"""The `neuroscope` command line (click): `cli` is the group, `main` the console-script entry point."""
from ._commands import cli, main

__all__ = ["cli", "main"]
