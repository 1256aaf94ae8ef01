"""``python -m harness config --show``: every key a YAML ``--config`` file may hold, with its type and default."""
from __future__ import annotations

import argparse

SECTIONS = ("run", "benchmark")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("config", help="show the keys of a YAML --config file, with their types and defaults",
                       description="run, search and sweep read an ExperimentConfig from --config FILE (flags given "
                                   "on the command line override its keys); benchmark reads its manifest. An "
                                   "unknown key in such a file is refused, listing the valid ones.")
    p.add_argument("--show", nargs="?", const="all", choices=("all", *SECTIONS), required=True,
                   help="print the keys of run/search/sweep's file (run), of benchmark's manifest (benchmark) "
                        "or both, all when no section is named (required)")
    p.set_defaults(func=show)


def key_table(rows: list[tuple[str, str, str]]) -> str:
    """Aligned ``key  type  default`` lines under a header."""
    rows = [("key", "type", "default"), *rows]
    widths = [max(len(row[i]) for row in rows) for i in range(2)]
    return "\n".join(f"  {key:<{widths[0]}}  {kind:<{widths[1]}}  {default}" for key, kind, default in rows)


def show(args: argparse.Namespace) -> int:
    from harness.commands.options import config_file_defaults
    from harness.core.settings_file import describe_fields
    from harness.experiment import ExperimentConfig
    from harness.scheduling.benchmark import BenchmarkManifest

    if args.show in ("all", "run"):
        print("run, search, sweep --config FILE (an ExperimentConfig; flags override its keys):")
        print(key_table(describe_fields(ExperimentConfig, ExperimentConfig.yaml_keys(), config_file_defaults())))
    if args.show == "all":
        print()
    if args.show in ("all", "benchmark"):
        print("benchmark --config FILE (its manifest, as <results>/benchmarks/<name>/manifest.yaml holds it):")
        print(key_table(describe_fields(BenchmarkManifest, BenchmarkManifest.yaml_keys())))
    return 0
