"""table.tex: the packages it needs are named on top, its columns add up, and (where pdflatex is
installed, as in CI) it compiles in a stock article without overflowing the text width."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from report_fixtures import make_results

from dcbench.report import write_report

# 8 tasks -> 8 columns (one architecture) or 16 (two): the widths that overflowed the page.
WIDE_TASKS = {"MNIST": (1, 10, 50, 100), "CIFAR10": (1, 10, 50, 100)}


@pytest.fixture(scope="module")
def tables(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """table.tex for a narrow, an 8-column, a 16-column and a not-tested-mark grid."""
    made = {}
    for name, options in {
        "narrow": {"tasks": {"MNIST": (1, 10)}},
        "wide": {"tasks": WIDE_TASKS},
        "very_wide": {"tasks": WIDE_TASKS, "archs": ("ConvNet", "ResNet18")},
        "one_seed": {"tasks": {"MNIST": (1, 10)}, "seeds": (0,)},
    }.items():
        root = make_results(tmp_path_factory.mktemp(name), **options)
        made[name] = write_report(root, formats=("tex",)).parent / "table.tex"
    return made


def preamble_packages(latex: str) -> list[str]:
    """The packages named in the leading comment lines."""
    header = "\n".join(line for line in latex.splitlines() if line.startswith("%"))
    return re.findall(r"\\usepackage\{([^}]+)\}", header)


def test_preamble_comment_names_the_packages(tables: dict[str, Path]):
    for path in tables.values():
        latex = path.read_text()
        assert latex.startswith("% ")
        assert preamble_packages(latex) == ["booktabs", "graphicx"]
        assert r"\resizebox{\ifdim\width>\linewidth\linewidth\else\width\fi}{!}" in latex


def _cells_in(row: str) -> int:
    """Columns a tabular row spans, \\multicolumn{n} counting n."""
    spans = [int(n) for n in re.findall(r"\\multicolumn\{(\d+)\}", row)]
    return row.count("&") + 1 + sum(spans) - len(spans)


@pytest.mark.parametrize("name, columns", [("narrow", 2), ("wide", 8), ("very_wide", 16)])
def test_column_format_matches_every_row(tables: dict[str, Path], name: str, columns: int):
    latex = tables[name].read_text()
    column_format = re.search(r"\\begin\{tabular\}\{([^}]*)\}", latex).group(1)
    assert column_format == "l" + "c" * columns
    body = latex.split(r"\toprule")[1].split(r"\bottomrule")[0]
    rows = [row for row in body.split("\\\\") if row.strip() and r"\midrule" != row.strip()]
    assert rows
    for row in rows:
        assert _cells_in(row.replace(r"\midrule", "")) == len(column_format), row


def _compile(table: Path, tmp_path: Path) -> str:
    """pdflatex a stock article that loads exactly the packages the table names; its log."""
    packages = "".join(rf"\usepackage{{{name}}}" for name in preamble_packages(table.read_text()))
    shutil.copy(table, tmp_path / "table.tex")
    (tmp_path / "paper.tex").write_text(
        rf"\documentclass{{article}}{packages}\begin{{document}}\input{{table}}\end{{document}}"
    )
    done = subprocess.run(
        ["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "paper.tex"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    log = (tmp_path / "paper.log").read_text(errors="replace")
    assert done.returncode == 0, log[-2000:]
    return log


@pytest.mark.skipif(
    shutil.which("pdflatex") is None, reason="pdflatex not installed (.ci/run installs texlive-latex-recommended)"
)
@pytest.mark.parametrize("name", ["narrow", "wide", "very_wide", "one_seed"])
def test_table_compiles_in_a_stock_article_within_the_text_width(tables: dict[str, Path], name: str, tmp_path: Path):
    log = _compile(tables[name], tmp_path)
    assert "Overfull \\hbox" not in log
    assert (tmp_path / "paper.pdf").read_bytes().startswith(b"%PDF")


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex not installed")
def test_without_the_resizebox_the_wide_table_would_overflow(tables: dict[str, Path], tmp_path: Path):
    """The check above can fail: the same 16-column table, unshrunk, overflows the page."""
    latex = tables["very_wide"].read_text()
    unshrunk = re.sub(r"\\resizebox\{.*?\}\{!\}\{%\n", "", latex).replace("\\end{tabular}%\n}", "\\end{tabular}")
    assert r"\resizebox{" not in unshrunk
    (tmp_path / "source").mkdir()
    (tmp_path / "source" / "table.tex").write_text(unshrunk)
    assert "Overfull \\hbox" in _compile(tmp_path / "source" / "table.tex", tmp_path)
