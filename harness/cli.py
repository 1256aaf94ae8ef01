"""The command line: ``python -m harness {run,list,embed,...}``.

Each subcommand lives in :mod:`harness.commands` as a module with ``add_parser(subparsers)``
(which sets ``func``); this file only assembles them and turns expected errors into one clear line.
"""
from __future__ import annotations

import argparse
import sys

import harness
from harness.commands import COMMANDS
from harness.core.environment import git_commit
from harness.core.registry import UnknownNameError, import_plugins
from harness.core.warning_lines import print_warnings_on_one_line

PLUGINS_HELP = ("comma-separated modules to import first (third-party methods, datasets, backbones, executors, "
                "optimizers or metrics that register themselves); before or after the subcommand (default: none)")


def add_plugins_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--plugins", default="", help=PLUGINS_HELP)


def requested_plugins(argv: list[str]) -> list[str]:
    """The ``--plugins`` modules of ``argv``, read before the full parser is built, so that the choices
    it offers (``--executor``) include what the plugins register."""
    parser = argparse.ArgumentParser(add_help=False)
    add_plugins_option(parser)
    known, _ = parser.parse_known_args(argv)
    return [m for m in known.plugins.split(",") if m]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m harness", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"dmlbench (harness) {harness.__version__}")
    add_plugins_option(parser)
    sub = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.add_parser(sub)
    for subparser in sub.choices.values():  # the same option after the subcommand; it wins when given there
        subparser.add_argument("--plugins", default=argparse.SUPPRESS, help=PLUGINS_HELP)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    print_warnings_on_one_line()
    try:
        import_plugins(requested_plugins(argv))
        args = build_parser().parse_args(argv)
        git_commit()  # the harness commit (and whether the checkout is dirty) is decided once, as the command starts
        return int(args.func(args) or 0)
    # OSError: a missing, unreadable or unwritable file (read-only folder, full disk), named in its message;
    # ImportError: a --plugins module or an optional extra that is not installed
    except (UnknownNameError, ValueError, OSError, ImportError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: run the same command again with --resume to finish what did not finish "
              "(finished trials are kept; interrupted ones continue from their last epoch)", file=sys.stderr)
        return 130
