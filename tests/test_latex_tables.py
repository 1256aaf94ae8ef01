"""The committed LaTeX leaderboards compile with pdfLaTeX and fit the text width of a one-column and a
two-column article (1-inch margins): the log must hold no overfull box, and the table's box, as typeset,
must be no wider than the line. Skipped where no pdflatex is installed (``.ci/run`` installs one)."""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

BOARDS = sorted((Path(__file__).resolve().parents[1] / "results" / "leaderboards").glob("*.tex"))

#: wraps graphicx's \resizebox to log the tabular's natural width, the width it was typeset at, and the line's
DOCUMENT = r"""\documentclass[%(layout)s]{article}
\usepackage[margin=1in]{geometry}
\usepackage{booktabs,graphicx}
\newlength\naturalwidth
\let\originalresizebox\resizebox
\renewcommand{\resizebox}[3]{\settowidth\naturalwidth{#3}\sbox0{\originalresizebox{#1}{#2}{#3}}%%
  \typeout{WIDTHS natural=\the\naturalwidth;typeset=\the\wd0;line=\the\linewidth;}\usebox0}
\begin{document}
\input{%(board)s}
\end{document}
"""


def points(text: str) -> float:
    return float(text.removesuffix("pt"))


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="no pdflatex (apt-get install texlive-latex-base "
                                                              "texlive-latex-recommended)")
@pytest.mark.parametrize("layout", ["onecolumn", "twocolumn"])
@pytest.mark.parametrize("board", BOARDS, ids=lambda p: p.stem)
def test_latex_leaderboard_fits_the_text_width(board: Path, layout: str, tmp_path: Path) -> None:
    (tmp_path / "paper.tex").write_text(DOCUMENT % {"layout": layout, "board": board.as_posix()})
    run = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "paper.tex"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=120)
    log = (tmp_path / "paper.log").read_text(errors="replace")
    assert run.returncode == 0, log[-2000:]
    assert "Overfull \\hbox" not in log, re.findall(r"Overfull \\hbox .*", log)
    natural, typeset, line = map(points, re.search(r"WIDTHS natural=([\d.]+pt);typeset=([\d.]+pt);line=([\d.]+pt);",
                                                        log.replace("\n", "")).groups())
    assert typeset <= line + 0.1, (natural, typeset, line)  # 0.1 pt: TeX's own \hfuzz (scaling rounds)
    assert natural > 0
    print(f"{board.stem} {layout}: natural {natural:.0f} pt, typeset {typeset:.0f} pt, line {line:.0f} pt")
