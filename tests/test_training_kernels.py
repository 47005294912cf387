"""Training steps' CPU kernels: the shared-prefix batch layout, grouped eager attention, row-major
head inputs. Each is checked against the plain computation it replaces, in fp32."""

from types import SimpleNamespace

import pytest
import torch
from transformers import AttentionInterface, LlamaConfig, LlamaForCausalLM
from transformers.integrations.sdpa_attention import sdpa_attention_forward

from sycophancy.models.attention import (
    fused_grouped_attention,
    grouped_attention,
    grouped_sdpa,
)
from sycophancy.models.compute import _row_major, training_attention
from sycophancy.training.module import _answer_loss, answer_loss
from sycophancy.training.packing import packed_tail_logits, rows_of, shared_length


def test_rows_drop_the_padding_and_the_shared_prefix_leaves_each_row_its_answer_positions():
    batch = {
        "input_ids": torch.tensor([[0, 0, 5, 6, 7, 8], [5, 6, 7, 9, 10, 11], [0, 5, 6, 7, 9, 8]]),
        "attention_mask": torch.tensor(
            [[0, 0, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1], [0, 1, 1, 1, 1, 1]]
        ),
    }
    rows = rows_of(batch)
    assert rows == [[5, 6, 7, 8], [5, 6, 7, 9, 10, 11], [5, 6, 7, 9, 8]]
    # all three start with 5 6 7; the shortest row (4 tokens) must keep `keep` tokens of its own
    assert shared_length(rows, keep=1) == 3
    assert shared_length(rows, keep=2) == 2
    assert shared_length(rows, keep=4) == 0
    assert shared_length([[1, 2, 3], [4, 2, 3]], keep=1) == 0


def gqa_llama(heads: int = 4, kv_heads: int = 2) -> LlamaForCausalLM:
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=heads, num_key_value_heads=kv_heads, max_position_embeddings=128,
        attn_implementation="sdpa",
    )  # fmt: skip
    return LlamaForCausalLM(config).eval()


def padded_batch(rows: list[list[int]], answer: int) -> dict:
    """Left-padded rows whose last `answer` tokens are the labels (the collate of batches.py)."""
    width = max(map(len, rows))
    ids = torch.zeros((len(rows), width), dtype=torch.long)
    mask, labels = torch.zeros_like(ids), torch.full_like(ids, -100)
    for i, row in enumerate(rows):
        ids[i, width - len(row) :], mask[i, width - len(row) :] = torch.tensor(row), 1
        labels[i, width - answer :] = torch.tensor(row[-answer:])
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def test_a_shared_prefix_batch_gives_every_row_its_unpadded_logits_and_the_same_gradients():
    model = gqa_llama()
    for p in model.parameters():
        p.requires_grad_(False)
    model.model.norm.weight.requires_grad_(True)  # a trainable tensor every row's loss reaches
    shared = [3, 9, 4, 1, 7]
    rows = [shared + [11, 12, 13, 2], shared + [14, 2], shared + [15, 16, 17, 18, 19, 2]]
    batch = padded_batch(rows, answer=1)
    logits = packed_tail_logits(model, batch, keep=2)
    assert logits is not None and logits.shape == (3, 2, 64)
    for i, row in enumerate(rows):  # each row alone, unpadded
        alone = model(input_ids=torch.tensor([row])).logits[0, -2:]
        torch.testing.assert_close(logits[i], alone, atol=2e-5, rtol=1e-4)
    grads = []
    for loss_of in (answer_loss, _answer_loss):  # shared prefix + grouped attention; plain path
        model.zero_grad(set_to_none=True)
        loss = loss_of(model, batch, "causal")
        loss.backward()
        grads.append((float(loss), model.model.norm.weight.grad.clone()))
    (loss_a, grad_a), (loss_b, grad_b) = grads
    assert abs(loss_a - loss_b) < 1e-5
    torch.testing.assert_close(grad_a, grad_b, atol=1e-6, rtol=1e-4)
    assert float(grad_a.abs().sum()) > 0


def test_a_model_without_a_cache_or_a_soft_prompt_with_nothing_shared_takes_the_plain_path():
    batch = padded_batch([[1, 2, 3], [4, 2, 3]], answer=1)
    no_cache = SimpleNamespace(forward=lambda input_ids=None: None)
    assert packed_tail_logits(no_cache, batch, keep=2) is None

    class SoftPrompted(torch.nn.Module):
        soft_prompt_first = True

        def forward(self, input_ids=None, cache=None, **kwargs):
            raise AssertionError("not called: nothing is shared for the soft prompt's cache")

    assert packed_tail_logits(SoftPrompted(), batch, keep=2) is None


def attention_inputs(batch=2, heads=4, kv_heads=2, n=5, cached=3, dim=8):
    torch.manual_seed(1)
    q = torch.randn(batch, heads, n, dim, requires_grad=True)
    k = torch.randn(batch, kv_heads, cached + n, dim, requires_grad=True)
    v = torch.randn(batch, kv_heads, cached + n, dim, requires_grad=True)
    module = SimpleNamespace(num_key_value_groups=heads // kv_heads, is_causal=True)
    return module, q, k, v


def tree_mask(batch, n, cached) -> torch.Tensor:
    allowed = torch.ones(n, cached + n, dtype=torch.bool).tril(cached)
    allowed[3, cached + 1] = False  # a token that may not see an earlier one (another slot)
    return allowed.expand(batch, 1, n, cached + n)


def masked_inputs(mask_kind: str, kv_heads: int):
    """Attention inputs and a tree mask (boolean or additive), or none (with or without a cache)."""
    cached = 0 if mask_kind == "none" else 3
    module, q, k, v = attention_inputs(kv_heads=kv_heads, cached=cached)
    mask = None
    if mask_kind in ("bool", "additive"):
        mask = tree_mask(2, 5, cached)
        if mask_kind == "additive":
            mask = torch.zeros(mask.shape).masked_fill(~mask, torch.finfo(torch.float32).min)
    return module, q, k, v, mask


@pytest.mark.parametrize("mask_kind", ["bool", "additive", "none", "none-cached"])
@pytest.mark.parametrize("kv_heads", [2, 4, 1])
def test_grouped_attention_equals_sdpa_with_its_gradients(mask_kind, kv_heads):
    module, q, k, v, mask = masked_inputs(mask_kind, kv_heads)
    outs = []
    for attend in (grouped_attention, sdpa_attention_forward):
        out, weights = attend(module, q, k, v, mask, scaling=0.3)
        assert weights is None and out.shape == (2, 5, 4, 8)
        (grad_q, grad_k, grad_v) = torch.autograd.grad(out.square().sum(), (q, k, v))
        outs.append((out.detach(), grad_q, grad_k, grad_v))
    for mine, theirs in zip(*outs, strict=True):
        torch.testing.assert_close(mine, theirs, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("mask_kind", ["bool", "additive", "none", "none-cached"])
@pytest.mark.parametrize("kv_heads", [2, 4, 1])
def test_fused_grouped_attention_equals_sdpa_on_repeated_heads(mask_kind, kv_heads):
    module, q, k, v, mask = masked_inputs(mask_kind, kv_heads)
    with torch.inference_mode():
        mine, weights = fused_grouped_attention(module, q, k, v, mask, scaling=0.3)
        theirs, _ = sdpa_attention_forward(module, q, k, v, mask, scaling=0.3)
    assert weights is None and mine.shape == (2, 5, 4, 8) and mine.is_contiguous()
    torch.testing.assert_close(mine, theirs, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("attend", [grouped_attention, fused_grouped_attention])
def test_grouped_attentions_hand_what_they_do_not_cover_to_sdpa(attend):
    module, q, k, v = attention_inputs()
    bias = torch.randn(2, 4, 5, 8)
    mine, _ = attend(module, q, k, v, None, scaling=0.3, position_bias=bias)
    theirs, _ = sdpa_attention_forward(module, q, k, v, None, scaling=0.3, position_bias=bias)
    torch.testing.assert_close(mine, theirs)


def test_training_attention_routes_sdpa_models_through_grouped_attention_and_restores_it():
    before = AttentionInterface._global_mapping["sdpa"]
    with training_attention("cpu"):
        assert AttentionInterface._global_mapping["sdpa"] is grouped_attention
        assert not torch.backends.cuda.flash_sdp_enabled()
    assert AttentionInterface._global_mapping["sdpa"] is before
    with pytest.raises(RuntimeError), grouped_sdpa():
        raise RuntimeError("a failing step")
    assert AttentionInterface._global_mapping["sdpa"] is before
    with training_attention("meta"):  # any other device keeps its kernels
        assert AttentionInterface._global_mapping["sdpa"] is before


def test_a_one_row_slice_of_a_batch_of_one_is_handed_to_the_head_in_row_major_memory():
    # hidden[:, -1:] of a [1, 7, 4] batch counts as contiguous but keeps stride 28 for its batch:
    # matmul would then take the batched path that copies the output layer's weight
    hidden = torch.randn(1, 7, 4)
    last = hidden[:, -1:]
    assert last.is_contiguous() and last.stride() == (28, 4, 1)
    fixed = _row_major(last)
    assert fixed.stride() == (4, 4, 1) and torch.equal(fixed, last)
    dense = torch.randn(2, 3, 4)
    assert _row_major(dense) is dense


@pytest.mark.parametrize(("training", "expected"), [({}, True), ({"share_prefix": False}, False)])
def test_the_training_step_follows_training_share_prefix(monkeypatch, training, expected):
    from sycophancy.training import module

    seen = []

    def loss(model, batch, family, share_prefix):
        seen.append(share_prefix)
        return torch.tensor(0.0)

    monkeypatch.setattr(module, "answer_loss", loss)
    lm = SimpleNamespace(model=torch.nn.Linear(1, 1), family="causal")
    step = module.AdapterModule(lm, {"training": training})
    step.log = lambda *args, **kwargs: None
    step.training_step({"labels": torch.zeros(1, 1)}, 0)
    step.validation_step({"labels": torch.zeros(1, 1)}, 0)
    assert seen == [expected, expected]
