"""Load a language model and its tokenizer: hub id, local folder, embedded SmolLM2 (GGUF), or tiny.

`loading` dispatches a `model` config to one source and returns a LoadedModel; `pretrained` reads
transformers-layout weights (folder, HF cache, hub); `embedded` serves the packaged GGUF through a
dense cache; `tiny` builds small random models.
"""

from sycophancy.models.embedded import cache_root
from sycophancy.models.loading import SOURCES, LoadedModel, load_model
from sycophancy.models.pretrained import DTYPES, FAMILIES, OFFLINE_HINT
from sycophancy.models.tiny import TINY_CHAT_TEMPLATE, TINY_DEFAULTS, build_tiny

__all__ = [
    "DTYPES",
    "FAMILIES",
    "OFFLINE_HINT",
    "SOURCES",
    "TINY_CHAT_TEMPLATE",
    "TINY_DEFAULTS",
    "LoadedModel",
    "build_tiny",
    "cache_root",
    "load_model",
]
