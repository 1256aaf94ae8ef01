"""The committed LaTeX leaderboards compile with pdfLaTeX and fit the text width of a one-column and a
two-column article (1-inch margins): the log must hold no overfull box, and the table's box, as typeset,
must be no wider than the line. Their one-column tables (``<board>.column.tex``) fit a column of either at
8 pt, never scaled, with at most two lines of notes. Skipped where no pdflatex is installed (``.ci/run``
installs one)."""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

LEADERBOARDS = Path(__file__).resolve().parents[1] / "results" / "leaderboards"
BOARDS = sorted(p for p in LEADERBOARDS.glob("*.tex") if not p.name.endswith(".column.tex"))
COLUMN_TABLES = sorted(LEADERBOARDS.glob("*.column.tex"))
NO_PDFLATEX = pytest.mark.skipif(shutil.which("pdflatex") is None, reason="no pdflatex (apt-get install "
                                                                          "texlive-latex-base texlive-latex-recommended)")

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


def compile_paper(document: str, folder: Path) -> str:
    """pdfLaTeX's log of ``document`` compiled in ``folder`` (asserting it compiled)."""
    (folder / "paper.tex").write_text(document)
    run = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "paper.tex"], cwd=folder,
                         capture_output=True, text=True, timeout=120)
    log = (folder / "paper.log").read_text(errors="replace")
    assert run.returncode == 0, log[-2000:]
    return log


def points(text: str) -> float:
    return float(text.removesuffix("pt"))


@NO_PDFLATEX
@pytest.mark.parametrize("layout", ["onecolumn", "twocolumn"])
@pytest.mark.parametrize("board", BOARDS, ids=lambda p: p.stem)
def test_latex_leaderboard_fits_the_text_width(board: Path, layout: str, tmp_path: Path) -> None:
    log = compile_paper(DOCUMENT % {"layout": layout, "board": board.as_posix()}, tmp_path)
    assert "Overfull \\hbox" not in log, re.findall(r"Overfull \\hbox .*", log)
    natural, typeset, line = map(points, re.search(r"WIDTHS natural=([\d.]+pt);typeset=([\d.]+pt);line=([\d.]+pt);",
                                                        log.replace("\n", "")).groups())
    assert typeset <= line + 0.1, (natural, typeset, line)  # 0.1 pt: TeX's own \hfuzz (scaling rounds)
    assert natural > 0
    print(f"{board.stem} {layout}: natural {natural:.0f} pt, typeset {typeset:.0f} pt, line {line:.0f} pt")


#: logs the font size the one-column table's tabular is set in and the column's width, and after the table
#: the number of lines of its last paragraph, the notes (\prevgraf once a paragraph is built)
COLUMN_DOCUMENT = r"""\documentclass[%(layout)s]{article}
\usepackage[margin=1in]{geometry}
\usepackage{booktabs,tabularx}
\makeatletter
\AddToHook{env/tabularx/begin}{\typeout{FONT size=\f@size;column=\the\columnwidth;}}
\AddToHook{para/after}{\xdef\lastparagraphlines{\the\prevgraf}}
\AddToHook{env/table/after}{\typeout{NOTES lines=\lastparagraphlines;}}
\makeatother
\begin{document}
\input{%(board)s}
\end{document}
"""


@NO_PDFLATEX
@pytest.mark.parametrize("layout", ["onecolumn", "twocolumn"])
@pytest.mark.parametrize("board", COLUMN_TABLES, ids=lambda p: p.stem)
def test_one_column_table_fits_a_column_at_8_points(board: Path, layout: str, tmp_path: Path) -> None:
    text = board.read_text()
    assert r"\begin{table}[t]" in text and "table*" not in text  # one column, not both
    assert not re.search(r"\\(resizebox|scalebox|scriptsize|tiny)\b", text)  # never shrunk below its 8 pt
    log = compile_paper(COLUMN_DOCUMENT % {"layout": layout, "board": board.as_posix()}, tmp_path).replace("\n", "")
    assert "Overfull \\hbox" not in log and "X Columns too narrow" not in log, re.findall(r"Overfull \\hbox .{60}", log)
    size, column = re.search(r"FONT size=([\d.]+);column=([\d.]+)pt;", log).groups()
    assert float(size) >= 8, size
    assert 200 < float(column) < 250 if layout == "twocolumn" else float(column) > 400
    assert 1 <= int(re.search(r"NOTES lines=(\d+);", log).group(1)) <= 2


def test_one_column_table_ranks_rows_says_recipes_in_words_and_drops_zero_spread() -> None:
    """The committed omniglot28 board: proxyanchor first by R@1; no recipe hash; the deterministic pixels row
    (identical over its seeds) without ± 0.00; R@1 and MAP@R only."""
    text = (LEADERBOARDS / "omniglot28.column.tex").read_text()
    rows = [line for line in text.splitlines() if line.endswith(r"\\") and "&" in line]
    assert rows[0] == r"Method & R@1 & MAP@R \\"
    methods = [row.split(" & ")[0] for row in rows[1:]]
    assert methods == ["proxyanchor", "ms", "amsoftmax", "triplet", "pixels (no training)"]  # by R@1, best first
    assert rows[-1].startswith(r"pixels (no training) & 35.53$^\dagger$$^\ddagger$ & 6.50") and r"\pm" not in rows[-1]
    assert r"83.49$\,\pm\,$0.79" in rows[1]
    assert "8632e8cd" not in text and "recipe cpu: batch 64, adamw, 12 epochs" in text


def test_the_one_column_metrics_are_a_stored_option_and_an_unknown_one_is_refused(tmp_path: Path, capsys) -> None:
    from harness.cli import main

    shutil.copytree(LEADERBOARDS.parent / "runs" / "omniglot28", tmp_path / "runs" / "omniglot28")
    common = ["leaderboard", "--results-dir", str(tmp_path), "--format", "tex"]
    assert main([*common, "--column-metrics", "nmi,recall@1"]) == 0
    column = (tmp_path / "leaderboards" / "omniglot28.column.tex").read_text()
    assert r"Method & NMI & R@1 \\" in column and "ranked by NMI" in column
    methods = [line.split(" & ")[0] for line in column.splitlines() if line.endswith(r"\\") and "&" in line][1:]
    assert methods[0] == "proxyanchor" and methods[-1] == "pixels (no training)"  # NMI 85.61 first, 49.21 last
    assert main(["leaderboard", "--results-dir", str(tmp_path)]) == 0  # the choice is stored with the experiment
    assert (tmp_path / "leaderboards" / "omniglot28.column.tex").read_text() == column
    capsys.readouterr()
    assert main([*common, "--column-metrics", "recall@3"]) == 2
    assert capsys.readouterr().err.strip() == ("error: leaderboard omniglot28 has no recall@3 for its one-column "
                                               "table; valid: recall@1, recall@2, recall@4, recall@8, map@r, "
                                               "r_precision, nmi")
