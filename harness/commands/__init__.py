"""Subcommands of ``python -m harness``; each module has ``add_parser(subparsers)``."""
from harness.commands import embed, leaderboard, list_registry, run, search, sweep

COMMANDS = [run, search, sweep, list_registry, embed, leaderboard]
