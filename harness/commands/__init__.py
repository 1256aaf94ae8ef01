"""Subcommands of ``python -m harness``; each module has ``add_parser(subparsers)``."""
from harness.commands import benchmark, config, embed, evaluate, leaderboard, list_registry, report, reproduce, run, search, sweep

COMMANDS = [run, search, sweep, benchmark, list_registry, embed, evaluate, leaderboard, reproduce, report, config]
