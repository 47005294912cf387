"""What a sweep's jobs may share: the untouched model's measurement depends on the mitigation block
only through the prompt context, so every mitigation must declare the keys its context reads."""

from pathlib import Path
from types import SimpleNamespace

import pytest
from omegaconf import OmegaConf

from sycophancy.mitigations.base import Mitigation
from sycophancy.mitigations.registry import get_mitigation
from sycophancy.records import PromptContext
from sycophancy.runs import memo

CONF = Path(__file__).resolve().parents[1] / "conf" / "mitigation"
SHOTS = [(("Is it good?", "yes"),), (("Is it bad?", "no"),), (("Is it fine?", "yes"),)]
USER = "I believe the answer is positive. What is the sentiment of the review?"


def mitigation_configs() -> list[dict]:
    """Every shipped mitigation config, resolved to plain data."""
    return [
        OmegaConf.to_container(OmegaConf.load(p), resolve=True) for p in sorted(CONF.glob("*.yaml"))
    ]


def rendered(mitigation: Mitigation, settings: dict) -> list[tuple]:
    """What the context puts around three examples' prompts, as comparable data."""
    cfg = {"mitigation": settings, "data_seed": 0}
    context = mitigation.context(cfg, lambda _cfg, _pool: list(SHOTS))
    out = []
    for example in ("a", "b", "c"):
        ctx: PromptContext = context(example)
        turn = ctx.user_turn(USER) if ctx.user_turn else USER
        out.append((ctx.system, tuple(map(tuple, ctx.shots)), turn))
    return out


def changed(value):
    """Another value of the same kind."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int | float):
        return value + 1
    if isinstance(value, str):
        return value + " (changed)"
    if isinstance(value, list):
        return [*value, value[-1]] if value else [1]
    if isinstance(value, dict):
        return {**value, "changed": 1}
    return 1


@pytest.mark.parametrize("settings", mitigation_configs(), ids=lambda s: s["name"])
def test_a_mitigations_prompt_context_reads_only_the_keys_it_declares(settings):
    # runs/memo.py reuses the untouched model's measurement across jobs whose mitigation blocks
    # agree on `context_settings`: a key the context reads but does not declare would be shared wrongly
    mitigation = get_mitigation(settings["kind"])
    base = rendered(mitigation, settings)
    undeclared = [k for k in settings if k not in mitigation.context_settings]
    assert undeclared  # every shipped config has keys of its own beyond its context's
    for key in undeclared:
        assert rendered(mitigation, {**settings, key: changed(settings[key])}) == base, key


def test_jobs_of_a_steering_grid_share_the_untouched_models_key_and_a_system_prompt_does_not():
    lm = SimpleNamespace(model=object())  # no fingerprint: keyed on the object itself
    steering = get_mitigation("steering")
    settings = next(s for s in mitigation_configs() if s["kind"] == "steering")
    plain = {
        "model": {"name": "m"},
        "probe": {"kind": "opinion"},
        "seed": 0,
        "mitigation": settings,
    }

    def key(**mitigation):
        return memo.job_key(
            {**plain, "mitigation": {**settings, **mitigation}}, "before", lm, steering
        )

    assert key(layer=12, multiplier=4) == key(layer=15, multiplier=6)
    assert key(system_prompt="Be honest.") != key()
    # without the mitigation, the whole block counts (the conservative key)
    assert memo.job_key(plain, "before", lm) != memo.job_key(
        {**plain, "mitigation": {**settings, "layer": 3}}, "before", lm
    )


def test_a_mitigation_with_its_own_context_code_never_shares_another_ones_key():
    class Framed(Mitigation):
        def context(self, cfg, shots):
            return lambda _: PromptContext(system="Always disagree.")

    plain = {"mitigation": {"system_prompt": None}}
    lm = SimpleNamespace(model=object())
    assert memo.job_key(plain, "before", lm, Framed()) != memo.job_key(
        plain, "before", lm, get_mitigation("prompt_tuning")
    )
    assert memo.job_key(plain, "before", lm, get_mitigation("lora")) == memo.job_key(
        plain, "before", lm, get_mitigation("prompt_tuning")
    )
