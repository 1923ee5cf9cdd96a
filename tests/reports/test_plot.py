"""Law and sweep figures: valid PNG/SVG files of the expected size, and the right lines on them."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import matplotlib.image
import pytest
from nextlaw_results_factory import law_metrics, measurement, results_document, write_results
from PIL import Image

from nextlaw_task.reports.plot import PlotFormatError, figure_bytes, law_figure, save_figure, sweep_figure
from nextlaw_task.reports.results import NextlawRow, load_rows

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def rows(tmp_path: Path) -> list[NextlawRow]:
    doc = results_document(
        "org/m", {"nextlaw_equilearning": law_metrics(), "nextlaw_onehot": law_metrics(slope=-0.03, intercept=-0.4)}
    )
    return load_rows([write_results(tmp_path, doc)])


def test_png_has_expected_pixel_size(tmp_path: Path, rows: list[NextlawRow]) -> None:
    out = save_figure(law_figure(rows), tmp_path / "law.png")
    assert out.read_bytes()[:8] == PNG_MAGIC
    with Image.open(out) as image:
        image.verify()
    with Image.open(out) as image:
        assert image.size == (800, 500)
    assert matplotlib.image.imread(out).shape[:2] == (500, 800)


def test_svg_is_xml_with_expected_size(tmp_path: Path, rows: list[NextlawRow]) -> None:
    out = save_figure(law_figure(rows), tmp_path / "sub" / "law.SVG")
    root = ET.parse(out).getroot()
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    assert (root.get("width"), root.get("height")) == ("576pt", "360pt")  # 8 x 5 inches at 72 pt


@pytest.mark.parametrize("name", ["law.pdf", "law", "law.jpg"])
def test_other_suffixes_are_refused_before_writing(tmp_path: Path, rows: list[NextlawRow], name: str) -> None:
    with pytest.raises(PlotFormatError, match="png or .svg"):
        save_figure(law_figure(rows), tmp_path / name)
    assert not (tmp_path / name).exists()
    with pytest.raises(PlotFormatError):
        figure_bytes(law_figure(rows), "pdf")


def test_each_task_has_its_data_and_fitted_law(rows: list[NextlawRow]) -> None:
    (ax,) = law_figure(rows).axes
    assert ax.get_yscale() == "log"
    lines = {line.get_label(): line for line in ax.get_lines()}
    for row in rows:
        data = lines[row.task]
        assert list(data.get_xdata()) == list(range(7))
        assert list(data.get_ydata()) == [row.layers[s] for s in range(7)]
        fit_label = f"{row.task} fit: ρ={row.law_rho:.4g}, r={row.law_pearson_r:.4g}"
        fit = lines[fit_label]
        assert list(fit.get_xdata()) == list(range(1, 7))
        expected = [10 ** (row.law_intercept + row.law_slope * s) for s in range(1, 7)]
        assert all(math.isclose(a, b) for a, b in zip(fit.get_ydata(), expected))
        assert fit.get_color() == data.get_color() and fit.get_linestyle() == "--"
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert any("ρ=" in t and "r=-0.99" in t for t in legend)


def test_nan_law_draws_no_fit_and_unloggable_prs_are_dropped(tmp_path: Path) -> None:
    metrics = law_metrics() | {"law_slope": math.nan, "pr_layer_02": 0.0, "pr_layer_03": math.nan}
    (row,) = load_rows([write_results(tmp_path, results_document("m", {"nextlaw_equilearning": metrics}))])
    (ax,) = law_figure([row]).axes
    (line,) = ax.get_lines()
    assert list(line.get_xdata()) == [0, 1, 4, 5, 6]
    assert row.fit_states == (1, 4, 5, 6)


def test_several_models_are_labelled_by_model(tmp_path: Path) -> None:
    for model in ("a", "b"):
        write_results(tmp_path, results_document(model, {"nextlaw_equilearning": law_metrics()}))
    (ax,) = law_figure(load_rows([tmp_path])).axes
    labels = {line.get_label() for line in ax.get_lines()}
    assert {"a · nextlaw_equilearning", "b · nextlaw_equilearning"} <= labels


def test_sweep_figure_png_size_and_series(tmp_path: Path) -> None:
    points = []
    for step, slope in ((0, -0.001), (100, -0.05), (200, -0.1)):
        doc = results_document(f"ckpt-{step}", {"nextlaw_equilearning": law_metrics(slope=slope)})
        (row,) = load_rows([write_results(tmp_path / str(step), doc)])
        points.append((step, row))
    fig = sweep_figure(points[::-1])
    out = save_figure(fig, tmp_path / "sweep.png")
    with Image.open(out) as image:
        assert image.size == (1000, 750)
    curves, fit_quality, rho, deviation = fig.axes
    assert [line.get_label() for line in curves.get_lines()] == ["step 0", "step 100", "step 200"]
    assert [line.get_label() for line in fit_quality.get_lines()] == ["law_pearson_r", "law_r2"]
    (rho_line,) = rho.get_lines()
    assert list(rho_line.get_xdata()) == [0, 100, 200]
    assert list(rho_line.get_ydata()) == [row.law_rho for _, row in points]
    assert deviation.get_lines()[0].get_ydata()[2] == points[2][1].equilearning_deviation
    assert deviation.get_yscale() == "log" and rho.get_yscale() == "linear"


@pytest.mark.subprocess
def test_importing_plot_does_not_import_matplotlib() -> None:
    code = "import sys, nextlaw_task.reports.plot, nextlaw_task.reports.cli; print('matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_each_quantity_has_its_own_panel_and_log_axis(tmp_path: Path) -> None:
    tasks = {
        "nextlaw_equilearning": law_metrics(),
        "nextlaw_separation_fuzziness": law_metrics(pr0=900.0, intercept=2.5, quantity="fuzziness"),
    }
    path = write_results(tmp_path, results_document("org/m", tasks))
    rows = load_rows([path])
    fig = law_figure(rows)
    pr_axis, fuzziness_axis = fig.axes
    assert pr_axis.get_yscale() == fuzziness_axis.get_yscale() == "log"
    assert pr_axis.get_ylabel().startswith("prediction residual")
    assert fuzziness_axis.get_ylabel() == "separation fuzziness"
    entries = json.loads(path.read_text())["results"]
    panels = ((pr_axis, "nextlaw_equilearning", "pr"), (fuzziness_axis, "nextlaw_separation_fuzziness", "fuzziness"))
    for ax, task, quantity in panels:
        data = {line.get_label(): line for line in ax.get_lines()}[task]
        assert [line.get_label() for line in ax.get_lines() if "fit" not in line.get_label()] == [task]
        assert list(data.get_ydata()) == [entries[task][f"{quantity}_layer_{s:02d},none"] for s in range(7)]
    with Image.open(save_figure(fig, tmp_path / "two.png")) as image:
        assert image.size == (1200, 500)


def test_runs_of_one_task_on_two_corpora_are_named_apart(tmp_path: Path) -> None:
    for i, corpus in enumerate(("/d/austen.jsonl", "/d/web.jsonl")):
        doc = results_document("m", {"nextlaw_equilearning": law_metrics(slope=-0.05 * (i + 1))},
                               measurement=measurement(corpus, None))
        write_results(tmp_path / str(i), doc)
    (ax,) = law_figure(load_rows([tmp_path])).axes
    labels = [line.get_label() for line in ax.get_lines() if "fit" not in line.get_label()]
    assert labels == ["nextlaw_equilearning [austen.jsonl]", "nextlaw_equilearning [web.jsonl]"]
