"""Subcommands of ``python -m harness``; each module has ``add_parser(subparsers)``."""
from harness.commands import embed, leaderboard, list_registry, run

COMMANDS = [run, list_registry, embed, leaderboard]
