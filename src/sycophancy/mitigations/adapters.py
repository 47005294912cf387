"""Trainable peft adapters on a frozen model: soft prompts (prompt tuning) and LoRA; save and reload.

Causal models score the next token with left padding (scoring.py). peft's prompt tuning prepends the
virtual tokens in front of the padding and drops `position_ids`, so the distance between the soft
prompt and the text would depend on the batch. `SoftPromptCausalLM` puts the soft prompt right
before each row's first real token instead and recomputes the positions, in training and evaluation
alike. Seq2seq models pad on the right, so peft's own forward is already exact there.
"""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from pathlib import Path

import torch
from peft import LoraConfig, PeftModel, PromptTuningConfig, TaskType, get_peft_model
from safetensors import safe_open

from sycophancy.errors import UserError
from sycophancy.files import ordinary_mode
from sycophancy.mitigations.base import Monitor, TrainableMitigation
from sycophancy.models import LoadedModel
from sycophancy.models.fingerprint import check_fingerprint, read_fingerprint, write_fingerprint
from sycophancy.schema import LoraSchema, PromptTuningSchema
from sycophancy.scoring.prefixes import cache_keyword

log = logging.getLogger(__name__)

ADAPTER_KINDS = ("prompt_tuning", "lora")
INITS = ("text", "vocab", "random")
NUMERIC_OPTIMIZER_KEYS = ("lr", "weight_decay", "eps", "momentum")  # checked before the model loads


def setting(mitigation: dict, key: str):
    """A required adapter setting; conf/mitigation/<kind>.yaml is its one source of defaults."""
    if mitigation.get(key) is None:
        raise UserError(
            f"mitigation.{key} is not set for mitigation={mitigation.get('name') or mitigation.get('kind')}; "
            f"conf/mitigation/{mitigation.get('kind')}.yaml sets it, or give mitigation.{key}=<value>."
        )
    return mitigation[key]


def peft_config(lm: LoadedModel, mitigation: dict):
    """The peft config for a mitigation of kind prompt_tuning or lora (plain dict in, peft config out)."""
    kind = mitigation.get("kind")
    task = TaskType.SEQ_2_SEQ_LM if lm.family == "seq2seq" else TaskType.CAUSAL_LM
    if kind == "prompt_tuning":
        return PromptTuningConfig(
            task_type=task,
            num_virtual_tokens=int(setting(mitigation, "num_virtual_tokens")),
            num_transformer_submodules=1,  # T5: only the encoder reads the soft prompt
            prompt_tuning_init="RANDOM",  # overwritten by init_soft_prompt
        )
    if kind == "lora":
        return LoraConfig(
            task_type=task,
            r=int(setting(mitigation, "r")),
            lora_alpha=int(setting(mitigation, "alpha")),
            lora_dropout=float(setting(mitigation, "dropout")),
            target_modules=mitigation.get("target_modules") or None,
        )
    raise UserError(
        f"mitigation.kind={kind!r} has no trainable adapter; train.py needs one of "
        f"{', '.join(ADAPTER_KINDS)} (e.g. mitigation=prompt_tuning)."
    )


def soft_prompt_init(mitigation: dict) -> str:
    """How the soft prompt starts (`mitigation.init`), refused unless one of INITS."""
    how = str(setting(mitigation, "init")).lower()
    if how not in INITS:
        raise UserError(f"mitigation.init={how!r} is not one of {', '.join(INITS)}.")
    return how


def init_soft_prompt(peft_model, lm: LoadedModel, mitigation: dict, seed: int) -> None:
    """Initialise the soft prompt from text, from sampled vocabulary rows or at random (fp32)."""
    how = soft_prompt_init(mitigation)
    table = lm.model.get_input_embeddings().weight.detach().float()
    weight = soft_prompt_weight(peft_model)
    n = weight.shape[0]
    gen = torch.Generator().manual_seed(int(seed))
    if how == "text":
        text = str(setting(mitigation, "init_text"))
        ids = lm.tokenizer(text, add_special_tokens=False)["input_ids"]
        if not ids:
            raise UserError("mitigation.init_text tokenises to nothing; give a non-empty sentence.")
        ids = (ids * (n // len(ids) + 1))[:n]
        rows = table[torch.tensor(ids)]
    elif how == "vocab":
        rows = table[torch.randint(0, min(table.shape[0], 5000), (n,), generator=gen)]
    else:
        rows = torch.randn(n, table.shape[1], generator=gen) * table.std()
    with torch.no_grad():
        weight.data = rows.clone().to(torch.float32)


def soft_prompt_weight(peft_model) -> torch.nn.Parameter:
    """The [num_virtual_tokens, d] soft prompt parameter of a prompt-tuning PeftModel."""
    return peft_model.prompt_encoder[peft_model.active_adapter].embedding.weight


class SoftPromptCausalLM(torch.nn.Module):
    """A causal PeftModel (prompt tuning) whose soft prompt sits right after each row's left padding."""

    def __init__(self, peft_model):
        super().__init__()
        self.peft = peft_model

    @property
    def config(self):
        """The base model's config."""
        return self.peft.get_base_model().config

    def save_pretrained(self, path, **kwargs):
        """Save the adapter (soft prompt and its config) with peft."""
        return self.peft.save_pretrained(path, **kwargs)

    def embed(self, input_ids, attention_mask):
        """Input embeddings with the soft prompt inserted before each row's first real token."""
        base = self.peft.get_base_model()
        emb = base.get_input_embeddings()(input_ids)
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        b, t = input_ids.shape
        soft = self.peft.get_prompt(batch_size=b).to(emb.dtype)
        n = soft.shape[1]
        start = (attention_mask.cumsum(dim=1) == 0).sum(dim=1, keepdim=True)  # pads before text
        j = torch.arange(t + n, device=input_ids.device).unsqueeze(0)
        idx = torch.where(j < start, j, torch.where(j < start + n, t + j - start, j - n))
        full = torch.cat([emb, soft], dim=1)
        embeds = full.gather(1, idx.unsqueeze(-1).expand(-1, -1, emb.shape[-1]))
        ones = attention_mask.new_ones((b, n))
        mask = torch.cat([attention_mask, ones], dim=1).gather(1, idx)
        return embeds, mask

    soft_prompt_first = True  # scoring's prefix caches must start with the soft prompt

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, cache=None, **kwargs):
        """Base forward on the soft-prompted embeddings; positions count real tokens only. After a
        non-empty key/value `cache` (which then holds the soft prompt) the tokens are fed as they are."""
        base = self.peft.get_base_model()
        if cache is not None:
            kwargs[cache_keyword(base) or "past_key_values"] = cache
            if cache.get_seq_length() > 0:
                return base(input_ids=input_ids, attention_mask=attention_mask,
                            position_ids=position_ids, **kwargs)  # fmt: skip
        embeds, mask = self.embed(input_ids, attention_mask)
        positions = (mask.cumsum(dim=1) - 1).clamp(min=0)
        return base(inputs_embeds=embeds, attention_mask=mask, position_ids=positions, **kwargs)

    def generate(self, input_ids=None, attention_mask=None, **kwargs):
        """Greedy generation; returns input ids followed by the new tokens, like the base model."""
        embeds, mask = self.embed(input_ids, attention_mask)
        new = self.peft.get_base_model().generate(
            inputs_embeds=embeds, attention_mask=mask, **kwargs
        )
        return torch.cat([input_ids, new.to(input_ids.device)], dim=1)


def _wrap(peft_model, lm: LoadedModel) -> LoadedModel:
    """The LoadedModel that scoring and training use for a peft model."""
    is_prompt = peft_model.active_peft_config.is_prompt_learning
    model = SoftPromptCausalLM(peft_model) if is_prompt and lm.family == "causal" else peft_model
    return replace(lm, model=model, name=f"{lm.name}+{_kind(peft_model)}")


def _kind(peft_model) -> str:
    """'prompt_tuning' or 'lora' (lower-case peft type)."""
    return str(peft_model.active_peft_config.peft_type.value).lower()


def peft_of(lm: LoadedModel):
    """The PeftModel inside an adapted LoadedModel."""
    return lm.model.peft if isinstance(lm.model, SoftPromptCausalLM) else lm.model


def add_adapter(lm: LoadedModel, mitigation: dict, seed: int = 0) -> LoadedModel:
    """Freeze the model and add a fresh trainable adapter (fp32 trainable weights)."""
    torch.manual_seed(int(seed))
    peft_model = get_peft_model(lm.model, peft_config(lm, mitigation))
    if mitigation.get("kind") == "prompt_tuning":
        init_soft_prompt(peft_model, lm, mitigation, seed)
    for param in peft_model.parameters():
        if param.requires_grad:
            param.data = param.data.float()
    peft_model.eval()  # deterministic until training asks for adapter dropout (module.py)
    return _wrap(peft_model, lm)


def save_adapter(lm: LoadedModel, path: str | Path) -> Path:
    """Write the adapter with peft's save_pretrained (adapter_config.json + weights)."""
    path = Path(path)
    peft_of(lm).save_pretrained(str(path))
    write_fingerprint(lm, path)  # evaluate.py refuses to attach it to another model
    return ordinary_mode(path)


def check_adapter_files(path: str | Path) -> Path:
    """Refuse a missing or unreadable adapter folder before the model loads: adapter_config.json
    must parse and the weights file's header must match its size."""
    path = Path(path).expanduser()
    config = path / "adapter_config.json"
    if not config.is_file():
        raise UserError(
            f"No adapter at {str(path)!r} (adapter_config.json missing). Point "
            "mitigation.adapter_path at the `adapter` folder a train.py run wrote."
        )
    weights = [
        w for w in (path / "adapter_model.safetensors", path / "adapter_model.bin") if w.is_file()
    ]
    problem = None
    try:
        json.loads(config.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        problem = f"{config.name} is not valid JSON ({exc})"
    if problem is None and not weights:
        problem = "it holds no adapter_model.safetensors"
    if problem is None and weights[0].suffix == ".safetensors":
        try:
            with safe_open(str(weights[0]), framework="pt") as handle:
                for key in handle.keys():  # noqa: SIM118 (not iterable)
                    handle.get_tensor(key)  # kilobytes
        except Exception as exc:  # safetensors raises its own error types for a damaged file
            problem = f"{weights[0].name} is damaged ({type(exc).__name__}: {exc})"
    if problem is None:
        read_fingerprint(path)  # refuses an unreadable base_model.json
    if problem:
        raise UserError(
            f"The adapter at {path} cannot be read: {problem}. Copy the folder again from the "
            "train.py run that wrote it, or train a new adapter."
        )
    return path


def attach_adapter(lm: LoadedModel, path: str | Path) -> LoadedModel:
    """Load a saved adapter onto a freshly loaded base model, for evaluation (not trainable)."""
    path = check_adapter_files(path)
    check_fingerprint(read_fingerprint(path), lm, "adapter", path)
    try:
        peft_model = PeftModel.from_pretrained(lm.model, str(path), is_trainable=False)
    except (RuntimeError, ValueError, KeyError) as exc:  # shapes or modules of another model
        raise UserError(
            f"The adapter at {path} does not fit model {lm.name!r} ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0][:300]}). Load it with the model it was trained on."
        ) from None
    peft_model.eval()
    return _wrap(peft_model, lm)


class Adapter(TrainableMitigation):
    """A peft adapter on the frozen model: train.py fits and saves it, evaluate.py attaches a saved one
    from `mitigation.adapter_path`; `mitigation.system_prompt`, if set, stays a system turn."""

    def check(self, cfg: dict) -> None:
        """The optimizer is a Hydra partial target, which training/module.py gives the parameters;
        a saved adapter to attach is readable."""
        if cfg["mitigation"].get("adapter_path"):
            path = check_adapter_files(cfg["mitigation"]["adapter_path"])
            kind = json.loads((path / "adapter_config.json").read_text()).get("peft_type", "")
            wanted = cfg["mitigation"].get("kind")
            if str(kind).lower() in ADAPTER_KINDS and str(kind).lower() != wanted:
                raise UserError(
                    f"The adapter at {path} is a {str(kind).lower()} adapter, and "
                    f"mitigation={cfg['mitigation'].get('name') or wanted} expects {wanted}: use "
                    f"mitigation={str(kind).lower()} mitigation.adapter_path={path}."
                )
        optimizer = cfg["mitigation"].get("optimizer") or {}
        for key in NUMERIC_OPTIMIZER_KEYS:
            value = optimizer.get(key)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int | float)
            ):
                raise UserError(
                    f"mitigation.optimizer.{key}={value!r} is not a number; give e.g. "
                    f"mitigation.optimizer.{key}=0.03."
                )
        if not optimizer.get("_target_") or not optimizer.get("_partial_"):
            raise UserError(
                f"mitigation.optimizer={optimizer} is not a Hydra partial target; give the class and "
                "its settings, e.g. ++mitigation.optimizer={_target_:torch.optim.AdamW,_partial_:true,"
                "lr:0.03} (conf/mitigation/prompt_tuning.yaml shows Adafactor)."
            )

    def wrap(self, cfg: dict, lm: LoadedModel) -> LoadedModel:
        """The model with the saved adapter attached; the untouched model without an adapter_path."""
        path = cfg["mitigation"].get("adapter_path")
        return attach_adapter(lm, path) if path else lm

    def fit(self, cfg: dict, lm: LoadedModel, trainer, datamodule, monitor: Monitor) -> LoadedModel:
        """Add a fresh adapter (seeded by `seed`) and train only it; resumes from `ckpt_path`."""
        from sycophancy.training.module import AdapterModule  # Lightning: for training only

        tuned = add_adapter(lm, cfg["mitigation"], int(cfg["seed"]))
        module = AdapterModule(tuned, cfg, monitor)
        trainer.fit(
            module, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"), weights_only=True
        )
        return tuned

    def save(self, lm: LoadedModel, run_dir: Path) -> Path:
        """The adapter in <run>/adapter, for evaluate.py's mitigation.adapter_path."""
        return save_adapter(lm, run_dir / "adapter")


class PromptTuning(Adapter):
    """A trained soft prompt in front of every input (Lester et al., 2021)."""

    settings = ("num_virtual_tokens", "optimizer.lr")
    schema = PromptTuningSchema

    def check(self, cfg: dict) -> None:
        """The optimizer is a partial target and the soft prompt's init is known."""
        super().check(cfg)
        soft_prompt_init(cfg["mitigation"])


class LoRA(Adapter):
    """Trained low-rank updates of the attention projections (Hu et al., 2021)."""

    settings = ("r", "optimizer.lr")
    schema = LoraSchema
