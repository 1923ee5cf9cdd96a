"""load_corpus on datasets: save_to_disk folders, split selection, and Hub ids (offline, faked)."""

from __future__ import annotations

from pathlib import Path

import datasets
import pytest

from nextlaw_task.corpus import SUPPORTED_FORMS, Corpus, CorpusError, CorpusSource, load_corpus


def load(location: Path | str, **options) -> Corpus:
    return load_corpus(CorpusSource(location=str(location), **options))


def dataset(*texts: str | None, field: str = "text") -> datasets.Dataset:
    return datasets.Dataset.from_dict({field: list(texts), "n": list(range(len(texts)))})


def saved_dict(folder: Path, **splits: datasets.Dataset) -> Path:
    datasets.DatasetDict(splits).save_to_disk(str(folder))
    return folder


class FakeHub:
    """Stands in for ``datasets.load_dataset``: records its calls, answers or raises."""

    def __init__(self, answer: object) -> None:
        self.answer = answer
        self.calls: list[tuple[tuple, dict]] = []

    def __call__(self, *args, **kwargs):
        self.calls.append((args, kwargs))
        if isinstance(self.answer, BaseException):
            raise self.answer
        return self.answer


def test_a_saved_dataset_with_a_text_field_and_null_values(tmp_path: Path) -> None:
    folder = tmp_path / "saved"
    dataset("x", None, "y", " ", field="body").save_to_disk(str(folder))
    corpus = load(folder, text_field="body")
    assert corpus == Corpus(texts=("x", "y"), n_empty=2, origins=((str(folder), 4),), location=str(folder))


@pytest.mark.parametrize(
    ("split", "texts"),
    [(None, ("train one", "train two")), ("train", ("train one", "train two")), ("test", ("test one",))],
)
def test_a_saved_dataset_dict_reads_the_given_split_else_train(tmp_path: Path, split: str | None,
                                                               texts: tuple[str, ...]) -> None:
    folder = saved_dict(tmp_path / "dict", train=dataset("train one", "train two"), test=dataset("test one"))
    corpus = load(folder, split=split)
    assert corpus.texts == texts and corpus.origins == ((str(folder), len(texts)),)


def test_a_dataset_dict_with_one_split_reads_it(tmp_path: Path) -> None:
    folder = saved_dict(tmp_path / "dict", validation=dataset("only", None))
    corpus = load(folder)
    assert corpus.texts == ("only",) and corpus.n_empty == 1


def test_an_unknown_split_lists_the_splits(tmp_path: Path) -> None:
    folder = saved_dict(tmp_path / "dict", train=dataset("a"), test=dataset("b"))
    with pytest.raises(CorpusError) as caught:
        load(folder, split="dev")
    assert str(caught.value) == (f"{folder}: no split 'dev' (its splits: 'train', 'test'); set nextlaw_split "
                                 "to one of them")


def test_several_splits_without_train_ask_for_nextlaw_split(tmp_path: Path) -> None:
    folder = saved_dict(tmp_path / "dict", validation=dataset("a"), test=dataset("b"))
    with pytest.raises(CorpusError) as caught:
        load(folder)
    assert str(caught.value) == (f"{folder}: several splits ('validation', 'test') and none is 'train'; "
                                 "choose one with nextlaw_split")


@pytest.mark.parametrize(
    ("field", "expected"),
    [
        ("text", ": no field or column 'text' (it has: 'content', 'n'); set nextlaw_text_field to the one that "
                 "holds the text"),
        ("n", ', row 0: expected a string field "n", found "n" is a number'),
    ],
)
def test_a_missing_or_numeric_column_is_named(tmp_path: Path, field: str, expected: str) -> None:
    folder = tmp_path / "saved"
    dataset("a", field="content").save_to_disk(str(folder))
    with pytest.raises(CorpusError) as caught:
        load(folder, text_field=field)
    assert str(caught.value) == f"{folder}{expected}"


def test_a_damaged_saved_folder_is_named(tmp_path: Path) -> None:
    folder = tmp_path / "damaged"
    folder.mkdir()
    (folder / "dataset_dict.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(CorpusError) as caught:
        load(folder)
    message = str(caught.value)
    assert message.startswith(f"{folder}: cannot load this save_to_disk folder (JSONDecodeError: ")
    assert message.endswith("save the dataset again with save_to_disk, or pass the corpus in another form")


def test_a_hub_id_with_a_split_is_loaded_with_that_split(monkeypatch) -> None:
    hub = FakeHub(dataset("hub one", None, "hub two"))
    monkeypatch.setattr(datasets, "load_dataset", hub)
    corpus = load("owner/corpus-name_1.0", split="validation")
    assert hub.calls == [(("owner/corpus-name_1.0",), {"split": "validation"})]
    assert corpus.location == "owner/corpus-name_1.0" and corpus.origins == (("owner/corpus-name_1.0", 3),)
    assert corpus.n_empty == 1 and corpus.texts == ("hub one", "hub two")


def test_a_hub_id_without_a_split_picks_train_from_the_dataset_dict(monkeypatch) -> None:
    hub = FakeHub(datasets.DatasetDict({"test": dataset("test"), "train": dataset("train", field="body")}))
    monkeypatch.setattr(datasets, "load_dataset", hub)
    corpus = load("wikitext", text_field="body")
    assert hub.calls == [(("wikitext",), {})]
    assert corpus.texts == ("train",) and corpus.origins == (("wikitext", 1),)


def test_a_hub_dataset_dict_without_train_asks_for_a_split(monkeypatch) -> None:
    monkeypatch.setattr(datasets, "load_dataset", FakeHub(datasets.DatasetDict({"a": dataset("x"), "b": dataset("y")})))
    with pytest.raises(CorpusError, match="^owner/name: several splits \\('a', 'b'\\) and none is 'train'"):
        load("owner/name")


def test_a_hub_failure_names_the_id_and_suggests_a_local_corpus(monkeypatch) -> None:
    hub = FakeHub(ConnectionError("Couldn't reach 'owner/name' on the Hub (LocalEntryNotFoundError)\nsecond line"))
    monkeypatch.setattr(datasets, "load_dataset", hub)
    with pytest.raises(CorpusError) as caught:
        load("owner/name", split="train")
    assert hub.calls == [(("owner/name",), {"split": "train"})]
    assert str(caught.value) == (
        "owner/name: no local file or folder has this name, and the Hugging Face Hub could not provide a "
        "dataset of this id (ConnectionError: Couldn't reach 'owner/name' on the Hub "
        "(LocalEntryNotFoundError)); check the id, the network and your access, or pass a local file or a "
        "folder saved with datasets' save_to_disk"
    )


@pytest.mark.parametrize("location", ["owner/name/extra", "corpus.jsonl", "data.CSV", "-name", "a b", "owner/.."])
def test_a_string_that_is_no_hub_id_is_not_sent_to_the_hub(monkeypatch, location: str) -> None:
    hub = FakeHub(dataset("never"))
    monkeypatch.setattr(datasets, "load_dataset", hub)
    with pytest.raises(CorpusError) as caught:
        load(location)
    assert str(caught.value) == f"{location}: corpus path not found; pass {SUPPORTED_FORMS}"
    assert hub.calls == []


def test_an_existing_local_folder_wins_over_a_hub_id(tmp_path: Path, monkeypatch) -> None:
    hub = FakeHub(dataset("hub"))
    monkeypatch.setattr(datasets, "load_dataset", hub)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "owner" / "name").mkdir(parents=True)
    (tmp_path / "owner" / "name" / "doc.txt").write_text("local\n", encoding="utf-8")
    assert load("owner/name").texts == ("local",) and hub.calls == []
