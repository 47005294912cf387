"""One LoadedModel from a `model` config: dispatch on the source; a local path always wins."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from sycophancy.errors import UserError
from sycophancy.models import devices
from sycophancy.models.allocator import keep_freed_memory
from sycophancy.models.embedded import _load_embedded, _load_gguf
from sycophancy.models.pretrained import (
    _check_family,
    _dtype,
    _family_of,
    _from_dir,
    _load_hub,
    _looks_like_path,
    _wanted_family,
)
from sycophancy.models.tiny import build_tiny

log = logging.getLogger(__name__)

SOURCES = ("hub", "local", "embedded", "tiny")


@dataclass
class LoadedModel:
    """A model in eval mode with its tokenizer, family and where its weights came from."""

    model: Any
    tokenizer: Any
    family: str  # "causal" | "seq2seq"
    chat: bool  # prompts should be rendered with tokenizer.apply_chat_template
    name: str
    source: str = ""  # hub | local | gguf | cache | tiny: where the weights were read from
    device: str = "cpu"  # where the model runs (scoring puts its inputs there): models/devices.py
    device_map: dict | None = None  # {module: device} when accelerate split it (device_map=auto)
    autocast: bool = False  # score and generate under bf16 autocast (float32 weights)
    reuse_prefixes: bool = True  # causal scoring: compute prompts' shared prefixes once (KV cache)


def load_model(cfg: dict) -> LoadedModel:
    """Load the model described by the Hydra `model` group (a plain dict)."""
    keep_freed_memory()  # CPU batches reuse freed activations (models/allocator.py)
    dtype = _dtype(cfg)
    wanted = _wanted_family(cfg)
    device = devices.select_device(cfg.get("device"), devices.local_rank())  # before any loading
    device_map = devices.check_device_map(cfg.get("device_map"))
    autocast = devices.check_autocast(cfg.get("autocast", False), dtype, device)
    model, tokenizer, source = _load({**cfg, "family": wanted}, dtype)
    model.eval()
    split = devices.place(model, device, device_map)
    family = _family_of(model.config)
    _check_family(wanted, family)
    chat = bool(cfg.get("chat_template", False)) and bool(getattr(tokenizer, "chat_template", None))
    name = str(cfg.get("name") or cfg.get("name_or_path") or "model")
    device = str(next(model.parameters()).device) if split else device
    log.info("Loaded %s (%s, %s) from %s onto %s", name, family, dtype, source, device)
    reuse = bool(cfg.get("reuse_prefixes", True))
    return LoadedModel(model, tokenizer, family, chat, name, source, device, split, autocast, reuse)


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
