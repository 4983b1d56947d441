"""The `spikerl-bench` command line: `main` parses and dispatches; one module per group of subcommands."""
from bench.cli.main import main

__all__ = ["main"]
