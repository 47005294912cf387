"""What base model an artefact was made on: a small record saved with every adapter, checkpoint and
vector, checked before it is loaded into a model.

`fingerprint(lm)` gives name, family, architecture, hidden size, vocabulary and embedding shapes and
a hash of the input embedding matrix (rounded to bf16, so fp32 and bf16 loads of one checkpoint
agree); `check_fingerprint(saved, lm, what, path)` refuses with a UserError when they differ.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

from sycophancy.errors import UserError
from sycophancy.files import write_json

FILE = "base_model.json"  # the fingerprint beside an adapter's adapter_config.json
ROWS = 256  # embedding rows hashed (evenly spaced): enough to tell two trained models apart
COMPARED = (
    "family",
    "model_type",
    "hidden_size",
    "vocab_size",
    "embedding_shape",
    "embedding_sha256",
)


def _base(model):
    """The base transformers model under peft or our wrappers."""
    model = getattr(model, "peft", model)  # adapters.SoftPromptCausalLM
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def fingerprint(lm) -> dict:
    """Identity of `lm`'s base model: name, family, architecture, shapes, embedding hash."""
    model = _base(lm.model)
    config = model.config
    table = model.get_input_embeddings().weight.detach()
    step = max(1, table.shape[0] // ROWS)
    rows = table[::step][:ROWS].to("cpu", torch.bfloat16).view(torch.int16).contiguous()
    return {
        "name": lm.name.split("+")[0],
        "family": lm.family,
        "model_type": getattr(config, "model_type", None),
        "hidden_size": getattr(config, "hidden_size", None) or getattr(config, "d_model", None),
        "vocab_size": getattr(config, "vocab_size", None),
        "embedding_shape": list(table.shape),
        "embedding_sha256": hashlib.sha256(rows.numpy().tobytes()).hexdigest(),
    }


def check_fingerprint(saved: dict | None, lm, what: str, path) -> None:
    """Refuse to load `what` (saved at `path` with fingerprint `saved`) into a different model; an
    artefact saved before fingerprints existed (`saved` None) is let through."""
    if not saved:
        return
    here = fingerprint(lm)
    differ = [k for k in COMPARED if k in saved and saved[k] != here[k]]
    if differ:
        shown = ", ".join(f"{k} {saved[k]} vs {here[k]}" for k in differ if k != "embedding_sha256")
        if "embedding_sha256" in differ:
            shown = f"{shown}, different embedding weights" if shown else "embedding weights differ"
        made = (
            f"a model also named {here['name']!r} but with other weights (another checkpoint, "
            "model.tiny.seed or model.name_or_path)"
            if saved.get("name") == here["name"]
            else f"model {saved.get('name')!r}, not on the loaded model {here['name']!r}"
        )
        raise UserError(
            f"The {what} at {path} was made on {made} ({shown}). Load it with the model it was "
            f"trained on (model={saved.get('name')} and the same model settings), or train a new "
            "one."
        )


def write_fingerprint(lm, folder: str | Path) -> Path:
    """Save `fingerprint(lm)` as <folder>/base_model.json."""
    return write_json(Path(folder) / FILE, fingerprint(lm))


def read_fingerprint(folder: str | Path) -> dict | None:
    """The fingerprint saved in <folder>/base_model.json; None if there is none (older artefact)."""
    path = Path(folder) / FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UserError(
            f"{path} is unreadable ({exc}); it records which model the artefact belongs to. "
            "Restore it from the run folder or train again."
        ) from None
