"""Model loading: tiny builds, local folders, hub failures, configs and the embedded SmolLM2."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch
import transformers
from omegaconf import OmegaConf

from sycophancy.errors import UserError
from sycophancy.models import LoadedModel, build_tiny, load_model

CONF = Path(__file__).resolve().parents[1] / "conf" / "model"
REQUIRED_KEYS = {"name", "family", "source", "name_or_path", "dtype", "chat_template"}


def model_cfg(name: str, **overrides) -> dict:
    """The plain dict of conf/model/<name>.yaml with overrides applied."""
    return {**OmegaConf.to_container(OmegaConf.load(CONF / f"{name}.yaml")), **overrides}


def state(model) -> dict:
    """A detached copy of a model's parameters."""
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("name", ["tiny-t5", "tiny-llama"])
def test_tiny_models_are_deterministic_from_seed(name):
    a, b = build_tiny(model_cfg(name))[0], build_tiny(model_cfg(name))[0]
    other = build_tiny({**model_cfg(name), "tiny": {"seed": 1}})[0]
    sa, sb, so = state(a), state(b), state(other)
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], so[k]) for k in sa)


def test_tiny_build_leaves_global_rng_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    build_tiny(model_cfg("tiny-llama"))
    assert torch.equal(torch.rand(3), expected)


@pytest.mark.parametrize(
    ("name", "family", "chat"), [("tiny-t5", "seq2seq", False), ("tiny-llama", "causal", True)]
)
def test_load_tiny_model(name, family, chat):
    lm = load_model(model_cfg(name))
    assert isinstance(lm, LoadedModel)
    assert (lm.family, lm.chat, lm.name, lm.source) == (family, chat, name, "tiny")
    assert not lm.model.training
    assert lm.tokenizer.pad_token_id is not None
    assert 50_000 < sum(p.numel() for p in lm.model.parameters()) < 1_000_000


def test_tiny_llama_chat_template_renders():
    lm = load_model(model_cfg("tiny-llama"))
    text = lm.tokenizer.apply_chat_template(
        [{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True
    )
    assert text == "<|user|>\nhi\n<|assistant|>\n"


def test_dtype_is_selectable():
    lm = load_model(model_cfg("tiny-llama", dtype="bfloat16"))
    assert lm.model.dtype == torch.bfloat16


@pytest.mark.parametrize(
    "overrides",
    [{"dtype": "float16"}, {"family": "decoder"}, {"source": "ftp"}, {"family": "seq2seq"}],
)
def test_bad_settings_raise_user_error(overrides, tmp_path):
    lm = load_model(model_cfg("tiny-llama"))
    lm.model.save_pretrained(tmp_path)
    lm.tokenizer.save_pretrained(tmp_path)
    with pytest.raises(UserError):
        load_model(model_cfg("local", name_or_path=str(tmp_path), family="causal") | overrides)


@pytest.mark.parametrize("name", ["tiny-t5", "tiny-llama"])
def test_local_folder_round_trip(name, tmp_path):
    built = load_model(model_cfg(name))
    built.model.save_pretrained(tmp_path)
    built.tokenizer.save_pretrained(tmp_path)
    lm = load_model(model_cfg("local", name_or_path=str(tmp_path), family=built.family))
    assert (lm.family, lm.source, lm.chat) == (built.family, "local", built.chat)
    assert not lm.model.training
    assert all(torch.equal(v, state(built.model)[k]) for k, v in state(lm.model).items())


def test_existing_folder_overrides_any_source(tmp_path):
    built = load_model(model_cfg("tiny-t5"))
    built.model.save_pretrained(tmp_path)
    built.tokenizer.save_pretrained(tmp_path)
    lm = load_model(model_cfg("flan-t5-small", name_or_path=str(tmp_path)))
    assert (lm.source, lm.family, lm.name) == ("local", "seq2seq", "flan-t5-small")


def test_family_inferred_when_null(tmp_path):
    built = load_model(model_cfg("tiny-t5"))
    built.model.save_pretrained(tmp_path)
    built.tokenizer.save_pretrained(tmp_path)
    assert (
        load_model(model_cfg("local", name_or_path=str(tmp_path), family=None)).family == "seq2seq"
    )


@pytest.mark.parametrize("source", ["local", "hub"])
def test_missing_local_folder_raises(source, tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        load_model(
            model_cfg("local", name_or_path=str(tmp_path / "nope"), family="causal", source=source)
        )


def test_folder_without_config_raises(tmp_path):
    with pytest.raises(UserError, match="config.json"):
        load_model(model_cfg("local", name_or_path=str(tmp_path), family="causal"))


def test_hub_offline_raises_quickly(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.monotonic()
    with pytest.raises(UserError, match="smollm2-135m-instruct"):
        load_model(model_cfg("flan-t5-small", name_or_path="sycophancy-tests/no-such-model"))
    assert time.monotonic() - start < 5


def test_hub_unreachable_raises_quickly(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    for var in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)  # behind a proxy the hub is not probed
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # closed port: refused at once
    start = time.monotonic()
    with pytest.raises(UserError, match="unreachable"):
        load_model(model_cfg("flan-t5-small", name_or_path="sycophancy-tests/no-such-model"))
    assert time.monotonic() - start < 10


def test_embedded_without_package_raises(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cfg = model_cfg("smollm2-135m-instruct", gguf={"package": "no_such_pkg_xyz", "file": "x.gguf"})
    with pytest.raises(UserError, match="no_such_pkg_xyz"):
        load_model(cfg)


@pytest.mark.parametrize("path", sorted(CONF.glob("*.yaml")), ids=lambda p: p.stem)
def test_model_configs_have_contract_keys(path):
    cfg = OmegaConf.load(path)
    assert set(cfg.keys()) >= REQUIRED_KEYS
    assert cfg.name == path.stem
    assert cfg.source in ("hub", "local", "embedded", "tiny")
    assert cfg.dtype in ("float32", "bfloat16")


def test_local_config_requires_path_and_family():
    assert set(OmegaConf.missing_keys(OmegaConf.load(CONF / "local.yaml"))) == {
        "name_or_path",
        "family",
    }


@pytest.mark.slow
def test_embedded_smollm2_loads_from_gguf_then_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("SYCOPHANCY_CACHE", str(tmp_path))
    cfg = model_cfg("smollm2-135m-instruct", name_or_path=None)  # null: skip the HF cache and hub
    first = load_model(cfg)
    start = time.monotonic()
    again = load_model(cfg)
    assert time.monotonic() - start < 5
    assert (first.source, again.source) == ("gguf", "cache")
    assert first.chat and again.chat and not again.model.training
    assert not hasattr(again.model.config, "quantization_config")
    major = transformers.__version__.split(".")[0]
    assert [p.name for p in tmp_path.iterdir()] == [
        f"SmolLM2-135M-Instruct.Q4_1.transformers{major}"
    ]
    ids = torch.tensor([first.tokenizer("Hello there")["input_ids"]])
    with torch.inference_mode():
        assert torch.equal(first.model(ids).logits, again.model(ids).logits)
