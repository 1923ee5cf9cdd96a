"""The relative-depth chart: points and delta-method SEs from the JSON, bands only where SEs exist."""

from __future__ import annotations

import json
import math
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from nextlaw_results_factory import law_metrics, results_document, standard_errors, write_results

from nextlaw_task.reports.chart import BAND_SES, Series, nice_ticks, relative_points, svg_chart
from nextlaw_task.reports.page import model_labels, number_html
from nextlaw_task.reports.results import NextlawRow, load_rows

SVG = "{http://www.w3.org/2000/svg}"


def one_row(tmp_path: Path, drop_se: tuple[int, ...] = (), **law: float) -> NextlawRow:
    metrics = law_metrics(**law)
    errors = {k: v for k, v in standard_errors(metrics, 0.05).items()
              if not any(k == f"pr_layer_{s:02d}" for s in drop_se)}  # fmt: skip
    path = write_results(tmp_path, results_document("org/m", {"nextlaw_equilearning": metrics},
                                                    stderrs={"nextlaw_equilearning": errors}))
    (row,) = load_rows([path])
    return row


def test_points_are_log_ratios_with_delta_method_ses(tmp_path: Path) -> None:
    row = one_row(tmp_path, n_layers=8)
    entry = json.loads(row.source.read_text())["results"]["nextlaw_equilearning"]
    pr = {s: entry[f"pr_layer_{s:02d},none"] for s in range(9)}
    se = {s: entry[f"pr_layer_{s:02d}_stderr,none"] for s in range(9)}
    points = relative_points(row)
    assert [p.state for p in points] == list(range(1, 9))  # the embeddings (state 0) are left out
    for p in points:
        assert p.x == p.state / 8
        assert math.isclose(p.y, math.log10(pr[p.state] / pr[1]), rel_tol=1e-12, abs_tol=1e-15)
        relative = math.sqrt((se[p.state] / pr[p.state]) ** 2 + (se[1] / pr[1]) ** 2)
        assert math.isclose(p.se, 0.0 if p.state == 1 else relative / math.log(10), rel_tol=1e-12)


def test_bands_cover_only_runs_of_states_with_ses(tmp_path: Path) -> None:
    row = one_row(tmp_path, drop_se=(4,), n_layers=8)
    points = relative_points(row)
    assert [p.state for p in points if math.isnan(p.se)] == [4]
    svg = svg_chart([Series("m", "org/m", "org/m", "#123456", points)], "t", "y")
    root = ET.fromstring(svg)
    (series,) = [g for g in root.iter(f"{SVG}g") if g.get("class") == "series"]
    bands = [p for p in series.iter(f"{SVG}path") if p.get("class") == "band"]
    assert len(bands) == 2  # states 1..3 and 5..8
    assert [len(re.findall(r"[ML]", b.get("d"))) for b in bands] == [2 * 3, 2 * 4]
    circles = list(series.iter(f"{SVG}circle"))
    assert [int(c.get("data-state")) for c in circles] == list(range(1, 9))
    assert [float(c.get("data-y")) for c in circles] == [p.y for p in points]
    assert series.find(f"{SVG}title").text == "org/m"


def test_a_row_without_pr_1_or_without_se_1_draws_no_band(tmp_path: Path) -> None:
    assert relative_points(one_row(tmp_path / "a", states=[0, 2, 3])) == ()
    row = one_row(tmp_path / "b", drop_se=(1,), n_layers=4)
    assert all(math.isnan(p.se) for p in relative_points(row))
    assert 'class="band"' not in svg_chart([Series("m", "m", "m", "#000", relative_points(row))], "t", "y")


def test_the_axis_covers_the_band(tmp_path: Path) -> None:
    points = relative_points(one_row(tmp_path, n_layers=6, slope=-0.2))
    ticks = [float(t) for t in re.findall(r'text-anchor="end">([-0-9.e]+)<', svg_chart(
        [Series("m", "m", "m", "#000", points)], "t", "y"))]  # fmt: skip
    assert min(ticks) <= min(p.y - BAND_SES * p.se for p in points)
    assert max(ticks) >= max(p.y + BAND_SES * p.se for p in points)


@pytest.mark.parametrize(("low", "high"), [(-0.93, 0.0), (-3.2, 0.4), (0.0, 0.0), (-1e-5, 2e-5)])
def test_nice_ticks_cover_the_range_in_round_steps(low: float, high: float) -> None:
    ticks = nice_ticks(low, high)
    assert ticks[0] <= low and ticks[-1] >= high and 2 <= len(ticks) <= 12
    steps = {round(b - a, 12) for a, b in zip(ticks, ticks[1:])}
    assert len(steps) == 1
    mantissa = round((step := steps.pop()) / 10 ** math.floor(math.log10(step)), 6)
    assert mantissa in (1.0, 2.0, 5.0)


def test_numbers_are_rounded_to_their_se() -> None:
    assert number_html(-0.999877, 0.0102) == '-1.000<span class="se">± 0.010</span>'
    assert number_html(4321.0, 25.0) == '4321<span class="se">± 25</span>'
    assert number_html(0.123456789, math.nan) == "0.1235"
    assert number_html(math.nan, 0.1) == "nan"


def test_model_labels_are_short_and_unique() -> None:
    names = (("/a/run1/ckpt", None), ("/b/run2/ckpt", "v2"), ("EleutherAI/pythia-70m", None))
    rows = [NextlawRow(model=m, revision=rev, task="t", layers={}, law_slope=0, law_intercept=0, law_rho=0,
                       law_pearson_r=0, law_r2=0, pr_ratio_last_first=0, equilearning_deviation=0, n_tokens=0,
                       n_docs=0, hidden_size=0, source=Path("x"), date=0)
            for m, rev in names]  # fmt: skip
    assert model_labels(rows) == {"/a/run1/ckpt": "run1/ckpt", "/b/run2/ckpt@v2": "run2/ckpt@v2",
                                  "EleutherAI/pythia-70m": "EleutherAI/pythia-70m"}
