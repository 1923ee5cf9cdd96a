"""Build the embedded default corpus: sentences drawn at random from six Jane Austen novels.

The paper (He & Su 2024) measured the law on 3000 BookCorpus sentences chosen by shuffling with
seed 666; this script builds the same kind of corpus from public-domain novels so the project can
ship one. Usage (the command that made the committed file)::

    python tools/build_corpus.py --source tasks/data/austen --n 3000 --seed 666 \\
        --out tasks/data/austen_sentences.jsonl

Steps, per novel (``*.txt`` in the source folder, sorted by file name):

1. Split into paragraphs at blank lines; a paragraph's hard-wrapped lines are stripped.
2. Keep only the novel proper: skip the front matter before the first chapter or volume heading
   (title, author, date, Northanger Abbey's advertisement) and stop at the end marker
   ("THE END", "FINIS", or the editor's "A NOTE ON THE TEXT" after Northanger Abbey).
3. Drop heading paragraphs (every line a "CHAPTER ..."/"VOLUME ..." heading or free of
   lower-case letters: chapter titles, all-caps letter salutations and signatures, rows of
   asterisks) and the edition's bracketed notes ("[At this point ... Volume 1 ends.]").
4. Join the lines with spaces, remove Gutenberg's ``_emphasis_`` underscores and ``*`` footnote
   marks, and collapse whitespace.
5. Split into sentences (see ``split_sentences``) and keep those with at least four words.

All sentences of all novels, in file order, are then shuffled with ``random.Random(seed)`` and
the first ``n`` are written as JSON lines ``{"text", "source", "index"}``, where ``index`` is the
sentence's position among the kept sentences of its novel. The output depends only on the source
texts and the arguments, so every run writes the same bytes.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

MIN_WORDS = 4

# Titles and abbreviations whose period does not end a sentence.
ABBREVIATIONS = frozenset(
    {"Mr", "Mrs", "Messrs", "Dr", "St", "Rev", "Hon", "Lieut", "Capt", "Col", "Esq", "Wm", "Vol"}
)

CHAPTER_HEADING = re.compile(r"(?:CHAPTER|Chapter|VOLUME|Volume)\s+[0-9IVXLC]+\.?")
END_MARKERS = frozenset({"THE END", "FINIS", "A NOTE ON THE TEXT"})

# A sentence ends at ., !, ? or an ellipsis, plus any closing quotes or brackets, when the next
# sentence follows after whitespace or an Austen dash ("--") and opens (maybe after an opening
# quote or bracket) with a capital letter. A lower-case continuation never splits, so
# '"Is it?" cried she', 'Oh! so do I' and 'etc. and Emma' stay whole.
BOUNDARY = re.compile(
    r"""(?P<end>[.!?]+)
        (?P<close>["')\]]*)
        (?:\s+|\s*--\s*)
        (?=["'(\[]*[A-Z])""",
    re.VERBOSE,
)
LAST_WORD = re.compile(r"[A-Za-z][A-Za-z.]*$")
WORD = re.compile(r"[^\W_]+(?:['-][^\W_]+)*")
EMPHASIS = re.compile(r"_([^_]+)_")


@dataclass(frozen=True)
class Sentence:
    """One kept sentence, with the novel it came from and its position in that novel."""

    text: str
    source: str
    index: int


def split_paragraphs(text: str) -> list[list[str]]:
    """Blank-line-separated paragraphs of ``text``, each a list of its stripped lines."""
    paragraphs: list[list[str]] = []
    current: list[str] = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped:
            current.append(stripped)
        elif current:
            paragraphs.append(current)
            current = []
    if current:
        paragraphs.append(current)
    return paragraphs


def is_heading_line(line: str) -> bool:
    """A chapter/volume heading, or a line with no lower-case letter (titles, rules of stars)."""
    return bool(CHAPTER_HEADING.fullmatch(line)) or not any(c.islower() for c in line)


def novel_paragraphs(text: str) -> list[str]:
    """The prose paragraphs of one novel, each joined into one normalised line.

    Reading starts at the first chapter or volume heading and stops at an end marker; heading
    paragraphs and bracketed editorial notes in between are dropped.
    """
    kept: list[str] = []
    started = False
    for lines in split_paragraphs(text):
        joined = " ".join(lines)
        if joined.upper() in END_MARKERS:
            break
        if len(lines) == 1 and CHAPTER_HEADING.fullmatch(joined):
            started = True
            continue
        if not started or all(is_heading_line(line) for line in lines):
            continue
        if joined.startswith("[") and joined.endswith("]"):
            continue
        kept.append(normalise(joined))
    return kept


def normalise(paragraph: str) -> str:
    """Remove ``_emphasis_`` underscores and ``*`` footnote marks; collapse runs of whitespace."""
    paragraph = EMPHASIS.sub(r"\1", paragraph).replace("*", "")
    return " ".join(paragraph.split())


def ends_with_abbreviation(before: str) -> bool:
    """Whether the text before a single period ends in a title, an initial or an initialism.

    "Mr." and "St." never end a sentence here; "F. C. Weston" and "H.M.S. Thrush" are names.
    The pronoun "I" is not treated as an initial, so "as well as I. We have" splits.
    """
    match = LAST_WORD.search(before)
    if match is None:
        return False
    word = match.group()
    initial = len(word) == 1 and word.isupper() and word != "I"
    return initial or "." in word or word in ABBREVIATIONS


def split_sentences(paragraph: str) -> list[str]:
    """Split one normalised paragraph into sentences (rules at ``BOUNDARY`` and above).

    An ellipsis followed by a capital ends a sentence ("so very.... And I am sure"); followed by
    lower case it does not. A dash left at the start of a sentence is removed.
    """
    sentences: list[str] = []
    start = 0
    for match in BOUNDARY.finditer(paragraph):
        bare_period = match["end"] == "." and not match["close"]
        if bare_period and ends_with_abbreviation(paragraph[: match.start()]):
            continue
        sentences.append(paragraph[start : match.end("close")])
        start = match.end()
    sentences.append(paragraph[start:])
    return [cleaned for cleaned in (s.strip().lstrip("-").lstrip() for s in sentences) if cleaned]


def word_count(sentence: str) -> int:
    """Words in ``sentence``: runs of letters/digits, joined by apostrophes or single hyphens."""
    return len(WORD.findall(sentence))


def novel_sentences(text: str, source: str) -> list[Sentence]:
    """The kept sentences (at least ``MIN_WORDS`` words) of one novel, in reading order."""
    kept = [
        sentence
        for paragraph in novel_paragraphs(text)
        for sentence in split_sentences(paragraph)
        if word_count(sentence) >= MIN_WORDS
    ]
    return [Sentence(sentence, source, index) for index, sentence in enumerate(kept)]


def read_novels(source: Path) -> dict[str, list[Sentence]]:
    """Sentences of every ``*.txt`` novel in ``source``, keyed by file name in sorted order."""
    paths = sorted(source.glob("*.txt"), key=lambda p: p.name)
    if not paths:
        raise SystemExit(f"no .txt novels in {source}; pass --source the folder holding them")
    return {p.name: novel_sentences(p.read_text(encoding="utf-8"), p.name) for p in paths}


def choose(novels: dict[str, list[Sentence]], n: int, seed: int) -> list[Sentence]:
    """Shuffle all sentences (novels in file order) with ``random.Random(seed)``; take n first."""
    pool = [sentence for sentences in novels.values() for sentence in sentences]
    if n > len(pool):
        raise SystemExit(f"--n {n} exceeds the {len(pool)} sentences available")
    random.Random(seed).shuffle(pool)
    return pool[:n]


def write_jsonl(sentences: Sequence[Sentence], out: Path) -> None:
    """Write one ``{"text", "source", "index"}`` object per line, UTF-8, ``\\n`` line ends."""
    out.parent.mkdir(parents=True, exist_ok=True)
    records = ({"text": s.text, "source": s.source, "index": s.index} for s in sentences)
    lines = [json.dumps(record, ensure_ascii=False) + "\n" for record in records]
    out.write_bytes("".join(lines).encode("utf-8"))


def main(argv: Sequence[str] | None = None) -> int:
    """Build the corpus file and print the counts."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, required=True, help="folder of the novels (*.txt)")
    parser.add_argument("--n", type=int, default=3000, help="sentences to draw (default 3000)")
    parser.add_argument("--seed", type=int, default=666, help="shuffle seed (default 666)")
    parser.add_argument("--out", type=Path, required=True, help="output .jsonl path")
    args = parser.parse_args(argv)
    if args.n < 1:
        parser.error("--n must be at least 1")

    novels = read_novels(args.source)
    chosen = choose(novels, args.n, args.seed)
    write_jsonl(chosen, args.out)

    for name, sentences in novels.items():
        picked = sum(1 for s in chosen if s.source == name)
        print(f"{name:24s} {len(sentences):6d} sentences, {picked:6d} chosen")
    total = sum(map(len, novels.values()))
    print(f"{'total':24s} {total:6d} sentences, {len(chosen):6d} chosen -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
