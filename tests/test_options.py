"""Task settings and nextlaw_* metadata: defaults, overrides, validation, unknown keys."""

from __future__ import annotations

import logging

import pytest

from nextlaw_task.options import (
    KNOWN_KEYS,
    MeasurementSpec,
    OptionError,
    build_spec,
    format_bytes,
    parse_bytes,
    parse_layers,
)


def test_defaults_are_the_authors_protocol():
    spec = build_spec("nextlaw_equilearning", {"measure": "id", "target": "next", "folds": 0}, {"pretrained": "x"})
    assert spec == MeasurementSpec(task="nextlaw_equilearning")
    assert (spec.normalize, spec.max_tokens, spec.law_first, spec.seed, spec.data) == ("initialized_ln", 512, 1, 666, None)
    assert spec.positions == (1, 0, 1)
    assert spec.states(4) == (0, 1, 2, 3, 4)


def test_metadata_overrides(tmp_path):
    spec = build_spec(
        "t",
        {"measure": "onehot", "folds": 0},
        {
            "nextlaw_data": str(tmp_path),
            "nextlaw_max_tokens": "64",
            "nextlaw_layers": "every:2",
            "nextlaw_normalize": "Standardize",
            "nextlaw_folds": 3,
            "nextlaw_law_first": 2,
            "nextlaw_law_last": 5,
            "nextlaw_seed": 7,
        },
    )
    assert (spec.data, spec.max_tokens, spec.normalize, spec.folds) == (str(tmp_path), 64, "standardize", 3)
    assert (spec.law_first, spec.law_last, spec.seed) == (2, 5, 7)
    assert spec.states(5) == (0, 2, 4, 5)


@pytest.mark.parametrize(
    ("text", "layers", "expected"),
    [("all", 3, (0, 1, 2, 3)), ("0,4,8", 8, (0, 4, 8)), ("every:4", 10, (0, 4, 8, 10)), ("-1, 0", 6, (0, 6))],
)
def test_parse_layers(text, layers, expected):
    assert parse_layers(text, layers) == expected


@pytest.mark.parametrize(
    ("kwargs", "meta", "message"),
    [
        ({"measure": "cosine"}, {}, "measure 'cosine' is not one of"),
        ({"target": "later"}, {}, "target 'later' is not one of"),
        ({"colour": 1}, {}, "unknown dataset_kwargs"),
        ({}, {"nextlaw_max_tokens": "many"}, "nextlaw_max_tokens='many': expected an integer"),
        ({}, {"nextlaw_max_tokens": 2}, "at least 3 tokens"),
        ({}, {"nextlaw_layers": "every:0"}, "must be >= 1"),
        ({}, {"nextlaw_layers": "1,x"}, "expected an integer"),
        ({}, {"nextlaw_normalize": "whiten"}, "choose one of initialized_ln, none, standardize"),
        ({}, {"nextlaw_folds": 1}, "use 0 (in-sample) or K >= 2"),
        ({"measure": "separation_fuzziness"}, {"nextlaw_folds": 5}, "held-out folds are defined for the id, shuffled_id, onehot measures only"),
    ],
)
def test_bad_options_say_what_is_wrong(kwargs, meta, message):
    with pytest.raises(OptionError) as info:
        build_spec("t", kwargs, meta)
    assert message in str(info.value)


def test_layer_outside_the_model_names_the_range():
    with pytest.raises(OptionError, match=r"state 9 is outside 0..4 \(this model has 4 layers"):
        parse_layers("0,9", 4)


def test_unknown_nextlaw_keys_warn_with_the_known_ones(caplog):
    with caplog.at_level(logging.WARNING):
        build_spec("t", {}, {"nextlaw_colour": "red", "pretrained": "gpt2", "dtype": "float32"})
    (record,) = [r for r in caplog.records if "unknown nextlaw metadata" in r.message]
    assert "nextlaw_colour" in record.message and all(k in record.message for k in KNOWN_KEYS)
    assert "pretrained" not in record.message.split("known keys")[0]


@pytest.mark.parametrize(("text", "expected"), [("8GiB", 8 * 2**30), ("500MB", 500 * 10**6), ("1e9", 10**9), (4096, 4096)])
def test_memory_budget_sizes(text, expected):
    assert build_spec("t", {}, {"nextlaw_memory_budget": text}).memory_budget == expected


@pytest.mark.parametrize("text", ["lots", "-1GB", "8 parsecs", True, 0])
def test_memory_budget_refuses_what_is_not_a_size(text):
    with pytest.raises(OptionError, match="expected a size such as 8GiB"):
        build_spec("t", {}, {"nextlaw_memory_budget": text})


@pytest.mark.parametrize(
    "size, text", [(0, "0 B"), (1023, "1023 B"), (20000, "19.5 KiB"), (3 * 2**30 // 2, "1.5 GiB"), (5 * 2**40, "5.0 TiB")]
)
def test_format_bytes_reads_back_with_parse_bytes(size, text):
    assert format_bytes(size) == text
    if size:
        assert abs(parse_bytes("k", text.replace(" ", "")) - size) <= 0.05 * size


@pytest.mark.parametrize(
    ("key", "meant"),
    [("nextlaw-data", "nextlaw_data"), ("Nextlaw_layers", "nextlaw_layers"), ("NEXTLAW_SEED", "nextlaw_seed"),
     ("nextlaw_layer", "nextlaw_layers"), ("nextlaw_max_token", "nextlaw_max_tokens"), ("nextlaw_normalise", "nextlaw_normalize")],
)
def test_a_key_that_nearly_matches_is_an_error_naming_the_key_meant(key, meant):
    with pytest.raises(OptionError, match=f"unknown nextlaw option '{key}' \\(did you mean '{meant}'\\?\\)"):
        build_spec("t", {}, {key: "1", "pretrained": "x"})


def test_keys_far_from_every_option_only_warn(caplog):
    with caplog.at_level(logging.WARNING, logger="nextlaw_task.options"):
        spec = build_spec("t", {}, {"nextlaw_colour": "red", "pretrained": "x", "dtype": "float32"})
    assert spec == MeasurementSpec(task="t") and "ignoring unknown nextlaw metadata nextlaw_colour" in caplog.text
