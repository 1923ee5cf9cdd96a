"""Fuzzing the two doors user input comes through: ``--metadata`` and the corpus files.

Whatever the values, types, bytes, encodings or folder shapes, nextlaw either accepts the input
(and then it is usable: a valid spec, documents that are text) or fails with its own error that
names the key, file or line: ``OptionError`` / ``CorpusError``, never a stray exception.
tests/corpus/test_read_documents.py fuzzes single files' bytes; here: folders, line numbers, path shapes.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st

from nextlaw_task.corpus import CorpusError, read_documents
from nextlaw_task.options import KNOWN_KEYS, OptionError, build_spec
from nextlaw_task.schema import HELDOUT_MEASURES, NORMALIZATIONS, TARGETS
from nextlaw_task.schema import MEASURE_NAMES as MEASURES

# --- metadata: random nextlaw_* values of random types -------------------------------------------

_any = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12) | st.binary(max_size=6)
    | st.complex_numbers(),
    lambda inner: st.lists(inner, max_size=3) | st.tuples(inner, inner)
    | st.dictionaries(st.text(max_size=4), inner, max_size=2),
    max_leaves=5,
)
_int_like = (
    st.integers(-(2**70), 2**70)
    | st.integers(-3, 40).map(str)
    | st.sampled_from(["", " 7 ", "1e3", "0x10", "1_000", "\u0663", "nan", "inf", "-0", "9" * 5000, "true"])
)
_layers = (
    st.sampled_from(["all", " ALL ", "every:2", "every:0", "every:-1", "every:x", "every:", "0,4,8", "-1,0", "1;2",
                     ",", "1,,2", "99999999999999999999", "-99"])
    | st.lists(st.integers(-60, 60), max_size=4).map(lambda xs: ",".join(map(str, xs)))
    | st.text(max_size=10)
)
_paths = st.text(max_size=12) | st.sampled_from(["", " \t", "~", "~/c.jsonl", "~nobody_nextlaw/c.jsonl", "a\x00b"])
_values = {
    "nextlaw_data": _paths | _any,
    "nextlaw_split": st.sampled_from(["train", " test ", "", "  "]) | _any,
    "nextlaw_text_field": st.sampled_from(["text", "body", ""]) | _any,
    "nextlaw_sample": _int_like | _any,
    "nextlaw_max_tokens": _int_like | _any,
    "nextlaw_layers": _layers | _any,
    "nextlaw_normalize": st.sampled_from([*NORMALIZATIONS, " None ", "STANDARDIZE", "whiten", ""]) | _any,
    "nextlaw_folds": _int_like | _any,
    "nextlaw_jackknife_groups": _int_like | _any,
    "nextlaw_law_first": _int_like | _any,
    "nextlaw_law_last": _int_like | _any,
    "nextlaw_seed": _int_like | _any,
    "nextlaw_precision": st.sampled_from(["float64", " FAST ", "fast", "float32", "half", ""]) | _any,
    "nextlaw_memory_budget": st.sampled_from(["8GiB", "500 mb", "1e9", "1e999", "0", "-1GB", "2 parsecs", ".5kib"])
    | _int_like
    | _any,
}
assert set(_values) == set(KNOWN_KEYS)
_metadata = st.builds(
    lambda known, unknown, other: {**unknown, **other, **known},
    st.fixed_dictionaries({}, optional=_values),
    st.dictionaries(st.text(max_size=6).map("nextlaw_".__add__), _any, max_size=2),
    st.dictionaries(st.sampled_from(["pretrained", "dtype", "version"]), _any, max_size=2),
)
_task_kwargs = st.fixed_dictionaries(
    {}, optional={"measure": st.sampled_from(MEASURES) | st.text(max_size=5),
                  "target": st.sampled_from(list(TARGETS)) | st.text(max_size=5), "folds": _int_like}
)


@pytest.mark.slow
@settings(max_examples=500, deadline=None)
@given(task_kwargs=_task_kwargs, metadata=_metadata, n_layers=st.integers(1, 48))
@example(task_kwargs={}, metadata={"nextlaw_seed": 2**64}, n_layers=3)  # beyond torch's seeds
@example(task_kwargs={}, metadata={"nextlaw_seed": -1}, n_layers=3)
@example(task_kwargs={}, metadata={"nextlaw_data": ""}, n_layers=3)  # would read the current folder
@example(task_kwargs={}, metadata={"nextlaw_data": None}, n_layers=3)
@example(task_kwargs={}, metadata={"nextlaw_data": "~nobody_nextlaw/c.jsonl"}, n_layers=3)
@example(task_kwargs={}, metadata={"nextlaw_data": "a\x00b"}, n_layers=3)
def test_fuzz_metadata_gives_a_usable_spec_or_an_option_error(task_kwargs, metadata, n_layers):
    try:
        spec = build_spec("t", task_kwargs, metadata)
        states = spec.states(n_layers)
    except OptionError as error:
        message = str(error)
        named = message.split("=")[0]
        slip = message.startswith("unknown nextlaw option '")
        assert message.startswith("task t: ") or named in metadata or named == "folds" or slip, message
        return
    assert spec.measure in MEASURES and spec.target in TARGETS and spec.normalize in NORMALIZATIONS
    assert spec.max_tokens >= 3 and (spec.folds == 0 or spec.folds >= 2)
    assert not spec.folds or spec.measure in HELDOUT_MEASURES
    assert spec.sample is None or spec.sample >= 1
    assert spec.split is None or spec.split.strip() == spec.split != ""
    assert isinstance(spec.text_field, str) and spec.text_field.strip() == spec.text_field != ""
    assert states and states == tuple(sorted(set(states))) and 0 <= states[0] <= states[-1] <= n_layers
    given_path = metadata.get("nextlaw_data")
    assert spec.data is None or (isinstance(given_path, (str, os.PathLike)) and str(given_path).strip())
    torch.Generator().manual_seed(spec.seed)  # the shuffled_id permutation accepts the seed
    hash(spec)


# --- corpus: folders of random files, a broken line at a known number, path shapes ---------------

_names = st.sampled_from(["a", "b", "part 1", "z.z", ".hidden", "\u00e9t\u00e9", "x.txt"]) | st.text(
    st.characters(exclude_categories=("Cs", "Cc"), exclude_characters="/\\"), min_size=1, max_size=8
).filter(lambda name: name not in (".", ".."))
_suffixes = st.sampled_from([".txt", ".TXT", ".Txt", ".md", ".txt.bak", "", ".jsonl"])
_contents = (
    st.binary(max_size=120)
    | st.builds(lambda t, enc: t.encode(enc, errors="replace"), st.text(max_size=120),
                st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "latin-1"]))
    | st.lists(st.text(max_size=20), max_size=5).map(lambda ps: "\n\n".join(ps).encode("utf-8"))
)
_entries = st.lists(
    st.tuples(_names, _suffixes, st.one_of(_contents, st.just(None))),  # None: a sub-folder
    max_size=4, unique_by=lambda e: (e[0] + e[1]).lower(),
)


def _decodes(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


@settings(max_examples=200, deadline=None)
@given(entries=_entries)
def test_fuzz_folders_give_clean_paragraphs_or_name_the_file(entries):
    """Documents are non-empty single-line paragraphs; otherwise the error names the cause."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        texts: dict[str, bytes] = {}
        for name, suffix, content in entries:
            path = root / f"{name}{suffix}"
            if content is None:
                path.mkdir()
            else:
                path.write_bytes(content)
                if path.suffix.lower() == ".txt":
                    texts[path.name] = content
        try:
            documents = read_documents(root)
        except CorpusError as error:
            message = str(error)
            if not texts:
                assert "folder has no .txt files" in message
            else:
                first_bad = next(name for name in sorted(texts) if not _decodes(texts[name]))
                assert f"{first_bad}: not valid UTF-8 at byte offset" in message
            return
    assert texts and all(_decodes(data) for data in texts.values())
    for document in documents:
        assert document and document == document.strip() and len(document.splitlines()) == 1


_broken_lines = st.sampled_from(
    ["{oops", "[1, 2]", '"text"', "3", "null", '{"body": "x"}', '{"text": 7}', '{"text": ["a"]}',
     '{"text": "\\udc80"}', "[" * 100_000, "\ufeff{}"]
)


@settings(max_examples=200, deadline=None)
@given(
    texts=st.lists(st.text(max_size=15), min_size=1, max_size=6),
    blanks=st.lists(st.integers(0, 7), max_size=3),
    broken=st.one_of(st.none(), st.tuples(st.integers(0, 6), _broken_lines)),
    newline=st.sampled_from(["\n", "\r\n"]),
)
def test_fuzz_jsonl_keeps_documents_or_names_the_broken_line(texts, blanks, broken, newline):
    lines = [json.dumps({"text": t, "n": i}) for i, t in enumerate(texts)]
    for where in blanks:
        lines.insert(min(where, len(lines)), "   ")
    bad_number = None
    if broken is not None:
        where, line = broken
        where = min(where, len(lines))
        lines.insert(where, line)
        bad_number = where + 1
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "docs.jsonl"
        path.write_text(newline.join(lines), encoding="utf-8")
        try:
            documents = read_documents(path)
        except CorpusError as error:
            assert bad_number is not None and f"{path}, line {bad_number}: " in str(error), str(error)
            return
    assert bad_number is None
    assert documents == texts


@settings(max_examples=60, deadline=None)
@given(shape=st.sampled_from(["dir named .jsonl", "broken link", "through a file", "unsupported"]),
       name=_names)
def test_fuzz_path_shapes_name_the_path(shape, name):
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        path = root / f"{name}.jsonl"
        if shape == "dir named .jsonl":
            path.mkdir()
        elif shape == "broken link":
            path.symlink_to(root / "nowhere")
        elif shape == "through a file":
            (root / "file.txt").write_text("x\n", encoding="utf-8")
            path = root / "file.txt" / f"{name}.jsonl"
        else:
            path = root / f"{name}.csv"
            path.write_text("text\n", encoding="utf-8")
        try:
            read_documents(path)
        except CorpusError as error:
            assert str(path) in str(error)
            return
    raise AssertionError(f"{shape}: {path} was read as a corpus")
