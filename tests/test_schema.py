"""Names defined once: metric names written and parsed by the same code, one rule for negative
state indices, one options table that the README shows."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from nextlaw_task.options import KNOWN_KEYS, OPTIONS, OptionError, build_spec, options_table, parse_layers
from nextlaw_task.schema import (
    HELDOUT_MEASURES,
    LAYER_QUANTITIES,
    MEASURES,
    layer_metric,
    parse_layer_metric,
    resolve_state,
)

README = Path(__file__).resolve().parent.parent / "README.md"


@pytest.mark.parametrize("n_layers", [1, 3, 12, 99, 100, 120, 999, 1000])
@pytest.mark.parametrize("quantity", LAYER_QUANTITIES)
def test_metric_names_round_trip(quantity: str, n_layers: int) -> None:
    names = [layer_metric(quantity, s, n_layers) for s in range(n_layers + 1)]
    assert [parse_layer_metric(name) for name in names] == [(quantity, s) for s in range(n_layers + 1)]
    assert len({len(name) for name in names}) == 1  # zero-padded: they sort in state order
    assert sorted(names) == names


def test_metric_name_width() -> None:
    assert layer_metric("pr", 3, 30) == "pr_layer_03"
    assert layer_metric("pr", 7, 120) == "pr_layer_007"
    assert layer_metric("pr_fold_std", 1, 4) == "pr_fold_std_layer_01"
    assert layer_metric("fuzziness", 2, 4) == "fuzziness_layer_02"


@pytest.mark.parametrize("name", ["pr_layer_", "pr_layer_x1", "law_slope", "layer_01", "pr_layers_01", "cosine_layer_01"])
def test_other_names_are_not_layer_metrics(name: str) -> None:
    assert parse_layer_metric(name) is None
    if name.startswith("cosine"):
        with pytest.raises(ValueError, match="unknown per-layer quantity 'cosine'"):
            layer_metric("cosine", 1, 3)


def test_only_the_fuzziness_is_not_a_prediction_residual() -> None:
    assert {m.name: m.quantity for m in MEASURES.values()} == {
        "id": "pr", "shuffled_id": "pr", "onehot": "pr", "separation_fuzziness": "fuzziness"
    }


def test_negative_state_indices_count_back_from_the_last_state_everywhere() -> None:
    assert [resolve_state(i, 10) for i in (-1, -2, -11, 0, 3)] == [10, 9, 0, 0, 3]
    assert parse_layers("-1,-2", 10) == (9, 10)
    spec = build_spec("t", {}, {"nextlaw_law_first": -3, "nextlaw_law_last": -2})
    assert spec.law_states(10) == (8, 9)
    assert build_spec("t", {}, {}).law_states(10) == (1, 10)


@pytest.mark.parametrize("measure", list(MEASURES))
def test_folds_are_accepted_exactly_for_the_held_out_measures(measure: str) -> None:
    if measure in HELDOUT_MEASURES:
        assert build_spec("t", {"measure": measure}, {"nextlaw_folds": 3}).folds == 3
    else:
        with pytest.raises(OptionError, match=f"not {measure}; leave nextlaw_folds out"):
            build_spec("t", {"measure": measure}, {"nextlaw_folds": 3})


def test_every_option_sets_its_field() -> None:
    values = {
        "nextlaw_data": "/tmp/corpus.jsonl", "nextlaw_split": "validation", "nextlaw_text_field": "body",
        "nextlaw_sample": "30", "nextlaw_max_tokens": "64", "nextlaw_layers": "every:2", "nextlaw_normalize": "none",
        "nextlaw_folds": "3", "nextlaw_law_first": "2", "nextlaw_law_last": "-2", "nextlaw_seed": "5",
        "nextlaw_jackknife_groups": "20", "nextlaw_precision": " FAST ", "nextlaw_memory_budget": "1KiB",
    }
    assert set(values) == set(KNOWN_KEYS)
    spec = build_spec("t", {}, values)
    assert [getattr(spec, o.field) for o in OPTIONS] == [
        "/tmp/corpus.jsonl", "validation", "body", 30, 64, "every:2", "none", 3, 2, -2, 5, 20, "fast", 1024
    ]
    source = spec.corpus_source()
    assert (source.location, source.split, source.text_field, source.sample, source.seed) == (
        "/tmp/corpus.jsonl", "validation", "body", 30, 5
    )


def test_the_readme_options_table_is_the_schemas() -> None:
    text = README.read_text(encoding="utf-8")
    start = text.index("| `--metadata` key |")
    end = text.index("\n\n", start)
    assert text[start : end + 1] == options_table()
    assert re.findall(r"^\| `(nextlaw_\w+)` \|", options_table(), re.M) == list(KNOWN_KEYS)
