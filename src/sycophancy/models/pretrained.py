"""Weights in the transformers layout: a folder, the HF cache or a hub id; family and dtype checks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

from sycophancy import hub
from sycophancy.errors import UserError

FAMILIES = ("causal", "seq2seq")
DTYPES = {"bfloat16": torch.bfloat16, "float32": torch.float32}
OFFLINE_HINT = (
    "Point model.name_or_path=/path/to/a/local/model/folder at a downloaded copy, or use the "
    "embedded model with model=smollm2-135m-instruct (no network needed)."
)


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
