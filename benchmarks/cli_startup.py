"""How long the commands that do not train, and the input errors of those that do, take to answer, against the
1 s target (issue 33; ``--help`` against issue 25's 1.5 s).

Each command runs ``--runs`` times in a fresh interpreter (what a user waits for); the script prints, for each,
the median and fastest wall-clock time, the median CPU time of the interpreter (user + system: what the command
itself costs, which a busy machine does not inflate), the median's ratio to the target, and, as anchors, a
bare interpreter (``python -c pass``) and ``import torch`` (what any answer that needed torch would cost at
least), with the load average, since a busy machine slows every start. Commands run from a scratch folder with
``$DMLBENCH_RESULTS`` there and a plugin loss ``my_circle.py`` beside them (pytorch-metric-learning's circle
loss, imported where the loss is built), so nothing is written into the user's results; ``leaderboard`` and
``report`` read a copy of the committed ``results/``. The first look-up of backbone names under a timm version
fills the user's cache (:mod:`harness.plugins.backbone_names`); one untimed ``list`` does that first.

    python benchmarks/cli_startup.py [--runs 5] [--only NAME ...]

Measured on the shared 2-core CPU machine (an AMD EPYC), idle (load average 0.6 at the start, 1.0 at the
end), 2026-12-07 at 21ea38b, 3 runs, median wall: ``--help`` 0.16 s, ``--version`` 0.16 s, ``list`` 0.21 s,
``config --show`` 0.25 s, ``leaderboard`` on the committed results (every board already drawn from the same
records, options and code) 0.19 s, the ten typos 0.19-0.39 s (``sweep``'s value check the slowest),
``report --help`` 0.16 s: every one within the target. A board that must be redrawn costs its drawing:
``leaderboard`` after one board's ``.md`` was deleted 2.52 s (that experiment redrawn, the others kept);
anchors ``python -c pass`` 0.02 s, ``import torch`` 1.52 s. Before the input digests (``leaderboard``
redrew every board each time): 6.75 s at load 2.9. On 87555a9 at load 2.9 (1 run each): ``--version``
0.26 s, ``list`` 5.61 s, ``config --show`` 6.46 s, ``leaderboard`` 9.96 s, the typos 5.40-6.21 s (every one
imported torch, and timm). At load 13 (3 runs): the same commands took 1.8-4.7 s of wall time but
0.26-0.43 s of CPU.
"""
from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
#: the most a user should wait for an answer that trains nothing (issue 33), and for ``--help`` (issue 25)
TARGET_S = 1.0
HELP_TARGET_S = 1.5

#: a plugin loss as a user writes one (issue 33's trial: "a new loss is one 21-line file")
CIRCLE_PLUGIN = '''"""Circle loss (Sun et al., CVPR 2020) as a harness plugin."""
from harness.core.hparams import LogUniform, Param, Uniform
from harness.plugins.method import PMLLossMethod, register_method


@register_method("circle")
class Circle(PMLLossMethod):
    """Circle loss (Sun et al., CVPR 2020)."""

    family = "pair"
    sampler = "m_per_class"
    hparams = {"m": Param(0.4, Uniform(0.0, 1.0), "relaxation margin", valid="[0, 1]"),
               "gamma": Param(80.0, LogUniform(1.0, 512.0), "scale", valid="> 0")}

    def build_loss(self):
        from pytorch_metric_learning import losses

        return losses.CircleLoss(m=self.config["m"], gamma=self.config["gamma"])
'''

HARNESS = ["-m", "harness"]
#: name -> (interpreter arguments, exit status it must give); typos exit 2 with one line
COMMANDS: dict[str, tuple[list[str], int]] = {
    "--help": ([*HARNESS, "--help"], 0),
    "run --help": ([*HARNESS, "run", "--help"], 0),
    "--version": ([*HARNESS, "--version"], 0),
    "list": ([*HARNESS, "list"], 0),
    "config --show": ([*HARNESS, "config", "--show"], 0),
    "leaderboard (committed results, unchanged)": ([*HARNESS, "leaderboard", "--results-dir", "results"], 0),
    "report --help": ([*HARNESS, "report", "--help"], 0),
    "typo: run --methods circel": ([*HARNESS, "run", "--methods", "circel"], 2),
    "typo: run --plugins my_circle --methods circel": ([*HARNESS, "run", "--plugins", "my_circle", "--methods",
                                                       "circel"], 2),
    "typo: run --plugins my_circle --hparam circle.m=2": ([*HARNESS, "run", "--plugins", "my_circle", "--methods",
                                                          "circle", "--hparam", "circle.m=2"], 2),
    "typo: run --hparam ms.zzz=2": ([*HARNESS, "run", "--methods", "ms", "--hparam", "ms.zzz=2"], 2),
    "typo: run --dataset omniglot29": ([*HARNESS, "run", "--methods", "ms", "--dataset", "omniglot29"], 2),
    "typo: run --backbone resnet5": ([*HARNESS, "run", "--methods", "ms", "--backbone", "resnet5"], 2),
    "typo: search --method circel": ([*HARNESS, "search", "--method", "circel"], 2),
    "typo: sweep --param alpha=1,-1": ([*HARNESS, "sweep", "--method", "ms", "--param", "alpha=1,-1"], 2),
    "typo: benchmark --methods ms,circel": ([*HARNESS, "benchmark", "--methods", "ms,circel"], 2),
    "leaderboard, one board's .md deleted (redraws it; anchor)": ([*HARNESS, "leaderboard", "--results-dir",
                                                                   "results"], 0),
    "python -c pass (anchor)": (["-c", "pass"], 0),
    "import torch (anchor)": (["-c", "import torch"], 0),
}


def before_each_run(name: str, folder: Path) -> None:
    """What a timed command needs first: the redraw anchor loses one board file (untimed)."""
    if "deleted" in name:
        (folder / "results" / "leaderboards" / "omniglot28.md").unlink()


def seconds(args: list[str], status: int, folder: Path) -> tuple[float, float]:
    """Wall-clock and CPU seconds of one fresh interpreter running ``args`` in ``folder``, which must exit
    with ``status``."""
    env = {**os.environ, "DMLBENCH_RESULTS": str(folder / "user-results"),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(folder), str(REPO), os.environ.get("PYTHONPATH")]))}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run([sys.executable, *args], cwd=folder, env=env, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != status:
        raise SystemExit(f"{' '.join(args)} exited {done.returncode}, not {status}: {done.stderr[-2000:]}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="runs of each command (default: 5)")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="time only the commands whose name contains one "
                                                                 "of these (default: all)")
    args = parser.parse_args()
    chosen = {k: v for k, v in COMMANDS.items() if not args.only or any(o in k for o in args.only)}
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        (folder / "my_circle.py").write_text(CIRCLE_PLUGIN)
        shutil.copytree(REPO / "results", folder / "results", ignore=shutil.ignore_patterns(".board-inputs.json"))
        seconds([*HARNESS, "list"], 0, folder)  # fills the timm names cache where it is empty (untimed)
        seconds(COMMANDS["leaderboard (committed results, unchanged)"][0], 0, folder)  # draws every board (untimed)
        print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs; {args.runs} runs each; "
              f"target {TARGET_S} s ({HELP_TARGET_S} s for --help)")
        for name, (command, status) in chosen.items():
            runs = []
            for _ in range(args.runs):
                before_each_run(name, folder)
                runs.append(seconds(command, status, folder))
            wall, cpu = statistics.median(w for w, _ in runs), statistics.median(c for _, c in runs)
            target = HELP_TARGET_S if "--help" in name else TARGET_S
            verdict = "" if "anchor" in name else (f"  {wall / target:.2f}x target: "
                                                   f"{'within' if wall <= target else 'OVER'} target")
            print(f"{name:50s} median {wall:.2f} s, fastest {min(w for w, _ in runs):.2f} s, "
                  f"CPU {cpu:.2f} s{verdict}")
    print(f"load average {os.getloadavg()[0]:.1f} at the end")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
