"""The corpus builder: sentence splitting, heading removal, and byte-for-byte determinism."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "tools" / "build_corpus.py"
COMMITTED = REPO / "tasks" / "data" / "austen_sentences.jsonl"
NOVELS = {
    "emma.txt", "mansfieldpark.txt", "northangerabbey.txt",
    "persuasion.txt", "prideprejudice.txt", "sensesensibility.txt",
}


def _load_builder() -> ModuleType:
    """Import tools/build_corpus.py, which is a script and not part of the package."""
    spec = importlib.util.spec_from_file_location("build_corpus", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


build = _load_builder()


AUSTEN = REPO / "tasks" / "data" / "austen"


@pytest.mark.parametrize(
    ("paragraph", "expected"),
    [
        (
            "Mr. and Mrs. Weston came. Dr. Perry walked to St. Mark's Place with them.",
            ["Mr. and Mrs. Weston came.", "Dr. Perry walked to St. Mark's Place with them."],
        ),
        (
            "The letter was signed F. C. Weston Churchill. She read it twice.",
            ["The letter was signed F. C. Weston Churchill.", "She read it twice."],
        ),
        (
            "He was made lieutenant of H.M.S. Thrush. William was delighted.",
            ["He was made lieutenant of H.M.S. Thrush.", "William was delighted."],
        ),
        ('"So do I. It is not my way."', ['"So do I.', 'It is not my way."']),
        (
            '"Is he married?" cried she. "I hope not!" She smiled at him.',
            ['"Is he married?" cried she.', '"I hope not!"', "She smiled at him."],
        ),
        (
            "He said, \"It is quite done.\" Then he left. 'Pray, Miss Smith, stay.'",
            ['He said, "It is quite done."', "Then he left.", "'Pray, Miss Smith, stay.'"],
        ),
        (
            "I am quite well.--This letter has cured me.\"--But Emma said nothing!--Nothing at all.",
            ["I am quite well.", 'This letter has cured me."', "But Emma said nothing!", "Nothing at all."],
        ),
        ("He is so very.... And I am sure of it.", ["He is so very....", "And I am sure of it."]),
        ("Its situation is not...that it is not near.", ["Its situation is not...that it is not near."]),
        ("A quick, low pulse, &c. and she was sorry.", ["A quick, low pulse, &c. and she was sorry."]),
        ("Oh! so do I. Lords of the earth! their ease.", ["Oh! so do I.", "Lords of the earth! their ease."]),
        ('"No. I compare it with what it ought to be."', ['"No.', 'I compare it with what it ought to be."']),
        (
            "He lodged at No. 97, Pall Mall. (It was cheap.) We went.",
            ["He lodged at No. 97, Pall Mall.", "(It was cheap.)", "We went."],
        ),
    ],
)
def test_split_sentences(paragraph: str, expected: list[str]) -> None:
    assert build.split_sentences(paragraph) == expected


def test_normalise_removes_emphasis_footnote_marks_and_extra_space() -> None:
    assert build.normalise("Between _them_  it was,* _The Rev. Mr. Elton_.") == (
        "Between them it was, The Rev. Mr. Elton."
    )


def test_word_count_joins_apostrophes_and_hyphens_but_not_dashes() -> None:
    assert build.word_count("Don't, brother-in-law--pray!") == 3


NOVEL = """PRIDE AND PREJUDICE

By Jane Austen

(1813)



VOLUME I

CHAPTER I

It is a truth universally acknowledged,
that a single man must be in want of a wife.

"Take care, Margaret.  It may be the hair of some great uncle of
HIS."

          CHARADE.

WINDSOR-JULY.
MY DEAR MADAM,

                          * * * * *

[At this point in the first and second editions, Volume 1 ends.]

Chapter 2

Mr. Bennet was among _the_ earliest of those who waited on Mr. Bingley. Too short here.

THE END

A note by an editor that must not be read.
"""


def test_headings_title_and_back_matter_are_dropped() -> None:
    assert build.novel_paragraphs(NOVEL) == [
        "It is a truth universally acknowledged, that a single man must be in want of a wife.",
        '"Take care, Margaret. It may be the hair of some great uncle of HIS."',
        "Mr. Bennet was among the earliest of those who waited on Mr. Bingley. Too short here.",
    ]


def test_novel_sentences_keep_four_words_and_number_the_kept() -> None:
    sentences = build.novel_sentences(NOVEL, "pp.txt")
    assert [(s.text, s.source, s.index) for s in sentences] == [
        ("It is a truth universally acknowledged, that a single man must be in want of a wife.", "pp.txt", 0),
        ('It may be the hair of some great uncle of HIS."', "pp.txt", 1),
        ("Mr. Bennet was among the earliest of those who waited on Mr. Bingley.", "pp.txt", 2),
    ]


def test_more_sentences_than_available_is_refused(tmp_path: Path) -> None:
    source = tmp_path / "novels"
    source.mkdir()
    (source / "tiny.txt").write_text(NOVEL, encoding="utf-8")
    with pytest.raises(SystemExit, match="--n 4 exceeds the 3 sentences available"):
        build.main(["--source", str(source), "--n", "4", "--out", str(tmp_path / "out.jsonl")])


@pytest.mark.subprocess
def test_build_is_deterministic_and_matches_committed_file(tmp_path: Path) -> None:
    assert {p.name for p in AUSTEN.glob("*.txt")} == NOVELS
    first, second = tmp_path / "first.jsonl", tmp_path / "second.jsonl"
    args = ["--source", str(AUSTEN), "--n", "3000", "--seed", "666"]
    assert build.main([*args, "--out", str(first)]) == 0
    # A second run in a fresh interpreter (new hash seed) through the command line.
    command = [sys.executable, str(SCRIPT), *args, "--out", str(second)]
    subprocess.run(command, check=True, capture_output=True)
    assert first.read_bytes() == second.read_bytes() == COMMITTED.read_bytes()


def test_committed_file_records() -> None:
    lines = COMMITTED.read_text(encoding="utf-8").splitlines()
    records = [json.loads(line) for line in lines]
    assert len(records) == 3000
    assert all(set(r) == {"text", "source", "index"} and r["source"] in NOVELS for r in records)
    assert len({(r["source"], r["index"]) for r in records}) == 3000
    assert all(build.word_count(r["text"]) >= build.MIN_WORDS for r in records)
    assert not any("_" in r["text"] or "  " in r["text"] for r in records)
