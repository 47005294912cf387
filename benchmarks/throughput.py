"""Throughput of option scoring and training against the naive loop and lm-eval (issue #11).

Usage:
    python benchmarks/throughput.py                 # full: 192 SST-2 prompts, then `train.py` end to end
    python benchmarks/throughput.py --quick         # smoke run in under a minute (12 prompts, tiny T5)
    python benchmarks/throughput.py --n 96 --no-train-e2e --json bench.json
    python benchmarks/throughput.py --device cuda   # on a GPU (default auto: the GPU where there is one)

One process, the same prompts for every method: the SST-2 `opinion_label` probe set of the embedded
model (SmolLM2-135M-Instruct), and the same items as plain text on a randomly initialised encoder-decoder
of flan-t5-base's sizes. Methods: the naive loop of research code (one `generate(max_new_tokens=1,
output_scores=True)` per prompt, fp32), lm-evaluation-harness's `hf` backend (`HFLM.loglikelihood`),
and this project's `score_options` in each setting it offers (fp32 or bf16, whole prompts or shared-prefix
reuse; the default is bf16 with prefix reuse). Decisions are compared with the fp32 naive loop's. The
last line is `speedup: N.Nx over the naive loop at M.M% identical decisions` (the project's default
setting on the embedded model; raw argmax decisions). Figures taken on a shared machine are noisy;
the ratios come from one process and are the figures to compare.
"""

from __future__ import annotations

import argparse
import copy
import gc
import json
import logging
import math
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path

import lightning as L
import numpy as np
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from sycophancy.models import LoadedModel, devices, load_model
from sycophancy.models.allocator import keep_freed_memory
from sycophancy.models.compute import CPU_ATTENTION, amx_tiles, scoring_attention_kind
from sycophancy.scoring import score_options
from sycophancy.scoring.decisions import decisions_by_method
from sycophancy.scoring.forward import prompt_ids

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf"
DATA_DIR = Path(os.environ.get("SYCOPHANCY_DATA_DIR", REPO.parent / "shared" / "data"))
BATCH = 16  # probe.batch_size's default, used by lm-eval too
T5_BASE = dict(d_model=768, d_kv=64, d_ff=2048, num_layers=12, num_heads=12)
T5_TINY = dict(d_model=64, d_kv=32, d_ff=128, num_layers=2, num_heads=2)
LMEVAL_WAY = "HFLM(pretrained=<loaded model>, tokenizer=<its tokenizer>).loglikelihood(requests)"


@dataclass
class Run:
    """One method's timed pass over the prompts: scores [n, k], seconds and where they went."""

    name: str
    scores: np.ndarray
    seconds: float
    forward_s: float = math.nan
    tokenizer_s: float = math.nan
    figures: dict = field(default_factory=dict)

    @property
    def rate(self) -> float:
        """Prompts per second."""
        return len(self.scores) / self.seconds


# ---------------------------------------------------------------- prompts


def compose_plain(name: str, overrides: list[str]) -> dict:
    """`conf/<name>.yaml` composed with overrides, resolved to plain data."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return OmegaConf.to_container(compose(config_name=name, overrides=overrides), resolve=True)


def probe_overrides(data_dir: Path, examples: int) -> list[str]:
    """Overrides for the SST-2 opinion_label probe on `examples` validation examples."""
    return [
        "dataset=sst2",
        f"dataset.data_dir={data_dir / 'sst2'}",
        f"dataset.limit={examples}",
        "probe=opinion_label",
        "probe.content_free_examples=0",  # the balanced decision needs none
    ]


def probe_prompts(cfg: dict, tokenizer, chat: bool) -> tuple[list, list[str]]:
    """The probe items and their rendered model inputs, built by the project's own pipeline code."""
    from sycophancy import sources
    from sycophancy.mitigations.registry import get_mitigation
    from sycophancy.probes.base import dataset_config
    from sycophancy.probes.probe_sets import build_probe_set
    from sycophancy.probes.registry import get_probe
    from sycophancy.prompts import build_messages, renderer

    data_cfg = dataset_config(cfg)
    data = sources.load_classification(data_cfg, "validation")
    items = build_probe_set(data, data_cfg, cfg["probe"], int(cfg["data_seed"])).items
    probe = get_probe(cfg["probe"]["kind"])
    context = get_mitigation(cfg["mitigation"]["kind"]).context(cfg, probe.shots)
    render = renderer(tokenizer, chat)
    texts = []
    for item in items:
        ctx = context(item.example_id)
        texts.append(render(build_messages(item.user_text, system=ctx.system, shots=ctx.shots)))
    return items, texts


def mean_tokens(tokenizer, texts: list[str]) -> float:
    """Mean token count of the texts."""
    return float(np.mean([len(tokenizer(t)["input_ids"]) for t in texts]))


# ---------------------------------------------------------------- instruments


class TimedTokenizer:
    """A tokenizer proxy that adds the seconds spent in its calls to `spent`."""

    def __init__(self, tokenizer):
        self.wrapped = tokenizer
        self.spent = 0.0

    def __call__(self, *args, **kwargs):
        start = time.perf_counter()
        try:
            return self.wrapped(*args, **kwargs)
        finally:
            self.spent += time.perf_counter() - start

    def __getattr__(self, name):
        return getattr(self.wrapped, name)


def synchronize(device: str) -> None:
    """Wait for the GPU's queued work, so a clock read after it counts that work (no-op on CPU)."""
    if str(device).startswith("cuda"):
        torch.cuda.synchronize(device)


@contextmanager
def forward_clock(modules: list, device: str = "cpu") -> Iterator[list[float]]:
    """Seconds spent inside the modules' forward (outermost calls only), in the yielded list; on a
    GPU each outermost call is synchronised at both ends, so its queued kernels count."""
    spent, depth, start = [0.0], [0], [0.0]

    def before(*_):
        if depth[0] == 0:
            synchronize(device)
            start[0] = time.perf_counter()
        depth[0] += 1

    def after(*_):
        depth[0] -= 1
        if depth[0] == 0:
            synchronize(device)
            spent[0] += time.perf_counter() - start[0]

    hooks = [
        h
        for m in modules
        for h in (m.register_forward_pre_hook(before), m.register_forward_hook(after))
    ]
    try:
        yield spent
    finally:
        for hook in hooks:
            hook.remove()


def model_parts(lm: LoadedModel) -> list:
    """The modules whose forward is the model's compute (generate runs T5's encoder on its own)."""
    if lm.family == "seq2seq":
        return [lm.model, lm.model.get_encoder()]
    return [lm.model]


def timed_run(name: str, lm: LoadedModel, score: Callable, texts: list[str]) -> Run:
    """Warm up on two prompts, then time `score(lm, texts)` with forward and tokenizer clocks."""
    score(lm, texts[:2])
    tokenizer = TimedTokenizer(lm.tokenizer)
    with forward_clock(model_parts(lm), lm.device) as forward:
        synchronize(lm.device)
        start = time.perf_counter()
        scores = score(replace(lm, tokenizer=tokenizer), texts)
        synchronize(lm.device)
        seconds = time.perf_counter() - start
    spent = tokenizer.spent or math.nan  # nothing clocked: the method tokenised on its own
    return Run(name, np.asarray(scores, dtype=np.float64), seconds, forward[0], spent)


def peak_rss_mb(who: int = resource.RUSAGE_SELF) -> float:
    """Peak resident memory so far, in MB (Linux reports kilobytes)."""
    return resource.getrusage(who).ru_maxrss / 1024


# ---------------------------------------------------------------- scorers


def option_token(tokenizer, option: str) -> int:
    """The option's first token, as typical research code reads it."""
    return tokenizer(option, add_special_tokens=False)["input_ids"][0]


def naive_scores(lm: LoadedModel, texts: list[str], options: list[list[str]]) -> np.ndarray:
    """One generate(max_new_tokens=1, output_scores=True) per prompt; the options' log-probs."""
    out = np.zeros((len(texts), len(options[0])))
    with torch.inference_mode():
        for i, (text, opts) in enumerate(zip(texts, options, strict=True)):
            # the project's input ids (tokenizer(text) as research code calls it, less a second BOS:
            # transformers 4.x's GGUF tokenizer puts <|im_start|> before the chat's own)
            ids = torch.tensor([prompt_ids(lm, [text])[0]], device=lm.device)
            inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
            gen = lm.model.generate(
                **inputs,
                max_new_tokens=1,
                do_sample=False,
                output_scores=True,
                return_dict_in_generate=True,
                pad_token_id=lm.tokenizer.pad_token_id,
            )
            logprobs = torch.log_softmax(gen.scores[0][0].float(), dim=-1)
            out[i] = [float(logprobs[option_token(lm.tokenizer, o)]) for o in opts]
    return out


def project_scores(lm: LoadedModel, texts: list[str], options: list[list[str]]) -> np.ndarray:
    """The project's scorer with the probe's default batch size."""
    return score_options(lm, texts, options, batch_size=BATCH)


def lmeval_scorer() -> Callable | None:
    """A scorer through lm-eval's `hf` backend (HFLM.loglikelihood), or None without lm-eval."""
    try:
        from lm_eval.api.instance import Instance
        from lm_eval.models.huggingface import HFLM
    except ImportError:
        return None

    def score(lm: LoadedModel, texts: list[str], options: list[list[str]]) -> np.ndarray:
        tokenizer = lm.tokenizer
        if isinstance(tokenizer, TimedTokenizer):  # HFLM gets the real one: its calls go unclocked
            tokenizer = tokenizer.wrapped
        backend = "seq2seq" if lm.family == "seq2seq" else "causal"
        hflm = HFLM(pretrained=lm.model, tokenizer=tokenizer, backend=backend, batch_size=BATCH)
        requests = [
            Instance("loglikelihood", doc={}, arguments=(text, option), idx=j)
            for text, opts in zip(texts, options, strict=True)
            for j, option in enumerate(opts)
        ]
        with torch.inference_mode():
            results = hflm.loglikelihood(requests, disable_tqdm=True)
        return np.array([logp for logp, _ in results]).reshape(len(texts), -1)

    return score


def bound(scorer: Callable, items: list) -> Callable:
    """`scorer(lm, texts)` with each prompt's options taken from the item at the same place."""

    def score(lm: LoadedModel, texts: list[str]) -> np.ndarray:
        return scorer(lm, texts, [list(item.options) for item in items[: len(texts)]])

    return score


# ---------------------------------------------------------------- comparisons


def decisions(items: list, scores: np.ndarray) -> dict[str, list[int]]:
    """Raw argmax (`none`) and calibrated (`balanced`, where defined) decisions, project code."""
    preds, _ = decisions_by_method(items, scores, [], None, "gold", "none")
    return {m: preds[m] for m in ("none", "balanced") if m in preds}


def agreement(a: list[int], b: list[int]) -> float:
    """Percentage of identical decisions."""
    return 100.0 * float(np.mean(np.array(a) == np.array(b)))


def compare(run: Run, reference: Run, items: list) -> None:
    """Record a run's decision agreement with the reference and its largest log-prob difference."""
    mine, ref = decisions(items, run.scores), decisions(items, reference.scores)
    run.figures["raw_agreement_pct"] = agreement(mine["none"], ref["none"])
    if "balanced" in mine and "balanced" in ref:
        run.figures["balanced_agreement_pct"] = agreement(mine["balanced"], ref["balanced"])
    run.figures["max_abs_logprob_diff"] = float(np.abs(run.scores - reference.scores).max())


def describe(run: Run, naive: Run) -> str:
    """One table row: time, rate, ratio to naive, per-prompt cost split, agreement."""
    n = len(run.scores)
    ms = 1000 / n
    other = run.seconds - run.forward_s - (0 if math.isnan(run.tokenizer_s) else run.tokenizer_s)
    split = f"forward {run.forward_s * ms:6.1f}"
    split += (
        f"  tok {run.tokenizer_s * ms:5.1f}" if not math.isnan(run.tokenizer_s) else "  tok   n/a"
    )
    split += f"  other {other * ms:5.1f}"
    f = run.figures
    agree = f"raw {f.get('raw_agreement_pct', 100):5.1f}%"
    agree += (
        f"  balanced {f['balanced_agreement_pct']:5.1f}%" if "balanced_agreement_pct" in f else ""
    )
    agree += f"  max|dlogp| {f.get('max_abs_logprob_diff', 0.0):.2g}"
    return (
        f"  {run.name:<46} {run.seconds:7.2f} s  {run.rate:6.2f} prompts/s  "
        f"{run.rate / naive.rate:5.2f}x naive  | ms/prompt {run.seconds * ms:6.1f}: {split} | {agree}"
    )


def summarise(runs: list[Run]) -> dict:
    """Plain figures of each run (for --json)."""
    return {
        r.name: {
            "seconds": r.seconds,
            "prompts_per_s": r.rate,
            "forward_s": r.forward_s,
            "tokenizer_s": None if math.isnan(r.tokenizer_s) else r.tokenizer_s,
            **r.figures,
        }
        for r in runs
    }


# ---------------------------------------------------------------- models


def embedded_config(dtype: str | None, device: str | None = None) -> dict:
    """The embedded model's config (conf/model/smollm2-135m-instruct.yaml), in `dtype` and on
    `device` where given (else the config's own: bf16, `auto`)."""
    cfg = OmegaConf.to_container(OmegaConf.load(CONF / "model" / "smollm2-135m-instruct.yaml"))
    return {**cfg, **({"dtype": dtype} if dtype else {}), **({"device": device} if device else {})}


def random_t5(tokenizer, sizes: dict, device: str = "cpu") -> LoadedModel:
    """A randomly initialised T5 (gated-gelu, untied head, flan-t5 style) over `tokenizer`'s ids."""
    from transformers import T5Config, T5ForConditionalGeneration

    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    config = T5Config(
        vocab_size=len(tokenizer),
        feed_forward_proj="gated-gelu",
        tie_word_embeddings=False,
        pad_token_id=pad,
        eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=pad,
        **sizes,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = T5ForConditionalGeneration(config).eval().to(device)
    return LoadedModel(model, tokenizer, "seq2seq", False, "random-t5", "random", device)


def to_bf16(lm: LoadedModel) -> LoadedModel:
    """A bfloat16 copy of a model (the original stays as it is)."""
    return replace(lm, model=copy.deepcopy(lm.model).to(torch.bfloat16).eval())


# ---------------------------------------------------------------- sections


def project_settings(lm32: LoadedModel, lm16: LoadedModel) -> list[tuple[str, LoadedModel, str]]:
    """The project's scorer in each setting it offers, the default last, each with the CPU
    attention it forces (`SYCOPHANCY_CPU_ATTENTION`; "" keeps the default choice). Where the default
    picks the fused kernel (bf16 on AMX), the grouped attention it replaces gets a row of its own."""
    settings = [("fp32, whole prompts", replace(lm32, reuse_prefixes=False), "")]
    if lm32.family == "causal":
        settings += [
            ("fp32 + prefix reuse", lm32, ""),
            ("bf16, whole prompts", replace(lm16, reuse_prefixes=False), ""),
        ]
        if default_attention(lm16.device) == "fused":
            settings.append(("bf16 + prefix reuse, grouped attention", lm16, "grouped"))
    return settings + [
        (f"bf16{' + prefix reuse' if lm16.family == 'causal' else ''} (default)", lm16, "")
    ]


def default_attention(device: str) -> str:
    """The CPU attention the default (bf16) scorer picks on `device` ("" off the CPU)."""
    if torch.device(device).type != "cpu":
        return ""
    with torch.inference_mode():
        return scoring_attention_kind(torch.bfloat16)


@contextmanager
def cpu_attention(kind: str):
    """`SYCOPHANCY_CPU_ATTENTION=kind` while inside (nothing changes for "")."""
    if not kind:
        yield
        return
    before = os.environ.get(CPU_ATTENTION)
    os.environ[CPU_ATTENTION] = kind
    try:
        yield
    finally:
        if before is None:
            del os.environ[CPU_ATTENTION]
        else:
            os.environ[CPU_ATTENTION] = before


def compare_methods(
    title: str, lm32: LoadedModel, load_bf16: Callable, items: list, texts: list[str]
) -> tuple[list[Run], dict]:
    """Naive loop, lm-eval and the project's scorer in each setting on the same prompts."""
    print(
        f"\n== {title}: {len(texts)} prompts, {mean_tokens(lm32.tokenizer, texts):.0f} tokens each"
    )
    naive = timed_run("naive generate loop fp32", lm32, bound(naive_scores, items), texts)
    runs = [naive]
    lmeval = lmeval_scorer()
    if lmeval is None:
        print("  lm-eval: not installed (pip install -e '.[bench]'); skipped")
    else:
        runs.append(timed_run("lm-eval hf HFLM fp32", lm32, bound(lmeval, items), texts))
    lm16 = load_bf16()
    for name, lm, attention in project_settings(lm32, lm16):
        with cpu_attention(attention):
            runs.append(timed_run(f"project {name}", lm, bound(project_scores, items), texts))
    rss = {"after all": peak_rss_mb()}
    del lm16
    gc.collect()
    for run in runs[1:]:
        compare(run, naive, items)
    for run in runs:
        print(describe(run, naive))
    lm_eval_run = next((r for r in runs if r.name.startswith("lm-eval")), None)
    if lm_eval_run is not None:
        print(f"  lm-eval driven as {LMEVAL_WAY}, batch {BATCH}, continuation = option text")
        for run in runs:
            if run.name.startswith("project"):
                print(f"  {run.name} vs lm-eval: {run.rate / lm_eval_run.rate:.2f}x")
    print(f"  peak RSS so far: {rss['after all']:.0f} MB (process high-water mark)")
    return runs, rss


def icl_section(args, lm: LoadedModel, items: list, texts: list[str]) -> dict:
    """The default scorer on 3-shot `icl` prompts against zero-shot, same examples: shots drawn
    per example (the default) and one draw for the run (`mitigation.shots_per=run`). Zero-shot and
    both icl sets are timed in turn for `--icl-rounds` rounds and each ratio is taken within a round
    (the median is printed), so a drift of the machine's speed does not land on one side only."""
    variants = {}
    for draw in ("example", "run"):
        overrides = ["mitigation=icl", "mitigation.k=3", f"mitigation.shots_per={draw}"]
        cfg = compose_plain("evaluate", probe_overrides(args.data_dir, args.examples) + overrides)
        icl_items, icl_texts = probe_prompts(cfg, lm.tokenizer, lm.chat)
        assert [i.example_id for i in icl_items] == [i.example_id for i in items]
        variants[draw] = (icl_items, icl_texts)
    rounds = []
    for _ in range(args.icl_rounds):
        row = {"zero": timed_run("zero-shot", lm, bound(project_scores, items), texts).seconds}
        for draw, (icl_items, icl_texts) in variants.items():
            scorer = bound(project_scores, icl_items)
            row[draw] = timed_run(f"3-shot icl, shots per {draw}", lm, scorer, icl_texts).seconds
        rounds.append(row)
    tokens_zero = mean_tokens(lm.tokenizer, texts)
    zero = statistics.median(r["zero"] for r in rounds)
    print(f"\n== 3-shot icl vs zero-shot (project default scorer), {len(texts)} prompts, "
          f"{len(rounds)} rounds (median; each ratio within its round)")  # fmt: skip
    print(f"  zero-shot {zero:6.2f} s ({tokens_zero:.0f} tokens/prompt)")
    figures: dict = {"zero_shot_s": zero, "tokens_zero": tokens_zero, "rounds": rounds}
    for draw, (_, icl_texts) in variants.items():
        ratios = [r[draw] / r["zero"] for r in rounds]
        ratio, seconds = statistics.median(ratios), statistics.median(r[draw] for r in rounds)
        tokens = mean_tokens(lm.tokenizer, icl_texts)
        spread = ", ".join(f"{x:.2f}" for x in ratios)
        print(
            f"  3-shot, shots drawn per {draw:<7} {seconds:6.2f} s ({tokens:.0f} tokens/prompt): "
            f"icl costs {ratio:.2f}x zero-shot (rounds: {spread})"
        )
        figures[f"icl_per_{draw}_s"], figures[f"icl_per_{draw}_over_zero"] = seconds, ratio
        figures[f"tokens_icl_per_{draw}"] = tokens
    return figures


class StepClock(L.Callback):
    """A Lightning callback that records each training step's wall time."""

    def __init__(self):
        self.durations: list[float] = []
        self._start = 0.0

    def on_train_batch_start(self, *_):
        self._start = time.perf_counter()

    def on_train_batch_end(self, *_):
        self.durations.append(time.perf_counter() - self._start)


def training_section(args, lm: LoadedModel, steps: int) -> dict:
    """Steps per second of prompt tuning with the project's LightningModule and data module."""
    from hydra.utils import instantiate

    from sycophancy import sources
    from sycophancy.mitigations import adapters
    from sycophancy.probes.base import dataset_config
    from sycophancy.probes.training_items import random_items, to_train_item
    from sycophancy.prompts import renderer
    from sycophancy.training.batches import SycophancyDataModule
    from sycophancy.training.module import AdapterModule

    cfg = compose_plain(
        "train", probe_overrides(args.data_dir, args.examples)[:2] + ["logger=none"]
    )
    cfg["trainer"] = devices.trainer_on_device(cfg["trainer"], lm.device)  # as train.py does
    data_cfg = dataset_config(cfg)
    batch = int(cfg["training"]["batch_size"])
    data = sources.load_classification({**data_cfg, "limit": batch * steps}, "train")
    render = renderer(lm.tokenizer, lm.chat)
    pairs = random_items(data, data_cfg, cfg["probe"], int(cfg["data_seed"]))
    items = [to_train_item(rand, render) for rand, _ in pairs]
    module_dm = SycophancyDataModule(lm, items, [], batch_size=batch, batches_per_epoch=steps)
    tuned = adapters.add_adapter(lm, cfg["mitigation"], int(cfg["seed"]))
    clock = StepClock()
    trainer = instantiate(
        OmegaConf.create(cfg["trainer"]),
        max_steps=steps,
        max_epochs=1,
        logger=False,
        callbacks=[clock],
        enable_checkpointing=False,
        enable_progress_bar=False,
        limit_val_batches=0,
    )
    trainer.fit(AdapterModule(tuned, cfg, None), datamodule=module_dm)
    timed = clock.durations[1:] or clock.durations  # the first step pays one-time costs
    rate = 1 / statistics.median(timed)
    print(
        f"\n== prompt tuning ({cfg['mitigation']['num_virtual_tokens']} virtual tokens, batch "
        f"{batch}, base in {str(lm.model.dtype).removeprefix('torch.')}): {rate:.2f} steps/s "
        f"(median of {len(timed)} steps after a warm-up "
        f"step of {clock.durations[0]:.2f} s)"
    )
    tuned = devices.to_device(tuned)  # Lightning's teardown leaves the module on the CPU
    batches = [on_device(b, tuned.device) for b in module_dm.train_dataloader()]
    paths = step_paths(tuned, batches)
    return {"steps_per_s": rate, "step_s": clock.durations, **paths}


def on_device(batch: dict, device: str) -> dict:
    """A training batch with its tensors on `device` (Lightning's fit does this for its own steps)."""
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def padded_math_loss(model, batch: dict, family: str):
    """The training loss as computed before shared prefixes and grouped attention: the padded
    batch whole, attention on SDPA's math kernel."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    from sycophancy.models.compute import contiguous_head_inputs
    from sycophancy.training.module import _answer_loss

    with sdpa_kernel([SDPBackend.MATH]), contiguous_head_inputs(model):
        return _answer_loss(model, batch, family, share_prefix=False)


def step_paths(tuned: LoadedModel, batches: list[dict]) -> dict:
    """Forward + backward time of the default training step against the padded-batch math-kernel
    step, paired on the same batches (median of the per-batch ratios)."""
    from sycophancy.training.module import answer_loss

    def seconds(loss_of, batch) -> tuple[float, float]:
        tuned.model.zero_grad(set_to_none=True)
        synchronize(tuned.device)
        start = time.perf_counter()
        loss = loss_of(tuned.model, batch, tuned.family)
        loss.backward()
        synchronize(tuned.device)
        return time.perf_counter() - start, float(loss)

    before, now, gaps = [], [], []
    for i, batch in enumerate(batches):
        (old, old_loss), (new, new_loss) = (
            seconds(padded_math_loss, batch),
            seconds(answer_loss, batch),
        )
        if i:  # the first pair pays one-time costs
            before.append(old)
            now.append(new)
        gaps.append(abs(old_loss - new_loss))
    tuned.model.zero_grad(set_to_none=True)
    if not now:
        return {}
    ratios = [b / n for b, n in zip(before, now, strict=True)]
    ratio = statistics.median(ratios)
    print(
        f"   training step paths, forward + backward paired on {len(now)} batches: padded batch on "
        f"SDPA's math kernel (before) {statistics.median(before):.2f} s, shared prefix + grouped "
        f"attention (default) {statistics.median(now):.2f} s: {ratio:.2f}x (per batch: "
        f"{', '.join(f'{r:.2f}' for r in ratios)}); largest loss difference {max(gaps):.3g}"
    )
    return {"step_before_s": before, "step_default_s": now, "step_speedup": ratio}


# Runs a command and reports its peak RSS (kB) on stderr's last line. The command is a grandchild:
# Linux carries a process's peak RSS across fork and exec, so a direct child of this large process
# would report at least this process's own size.
PEAK_OF_CHILD = (
    "import resource, subprocess, sys; code = subprocess.call(sys.argv[1:]); "
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr); sys.exit(code)"
)


def train_e2e_section(threads: int | None, device: str = "cpu") -> dict:
    """Wall time and peak RSS of the default `python train.py` (no logger) in a fresh interpreter,
    on the benchmark's device (its default trainer trains where the model is)."""
    env = {**os.environ, **({"OMP_NUM_THREADS": str(threads)} if threads else {})}
    on_gpu = [f"model.device={device}"] if device.startswith("cuda") else []
    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        train = [sys.executable, str(REPO / "train.py"), "logger=none", f"hydra.run.dir={tmp}/run"]
        train += on_gpu
        start = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-c", PEAK_OF_CHILD, *train],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
        )
        seconds = time.perf_counter() - start
    peak_mb = int(done.stderr.strip().splitlines()[-1]) / 1024
    status = "ok" if done.returncode == 0 else f"FAILED (exit {done.returncode})"
    print(
        f"\n== python train.py (defaults, logger=none): {seconds:.1f} s wall, {status}; "
        f"its peak RSS {peak_mb:.0f} MB"
    )
    if done.returncode:
        print(done.stderr[-2000:])
    return {"seconds": seconds, "returncode": done.returncode, "peak_rss_mb": peak_mb}


# ---------------------------------------------------------------- main


def quiet() -> None:
    """Silence progress bars and the libraries' notices, so the figures stand out."""
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    for name in ("lm-eval", "lm_eval", "lightning", "lightning.pytorch"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", category=UserWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)


def cpu_description() -> str:
    """The CPU's model name and the matmul extensions bf16 can use (Linux /proc/cpuinfo)."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "unknown"
    fields = dict(
        line.split(":", 1) for line in info.splitlines() if ":" in line and line.count(":") == 1
    )
    name = fields.get("model name\t", "unknown").strip()
    family, model = fields.get("cpu family\t", "?").strip(), fields.get("model\t\t", "?").strip()
    flags = set(fields.get("flags\t\t", "").split())
    wanted = ("avx512_bf16", "amx_bf16", "avx512_vnni")
    extensions = ", ".join(f for f in wanted if f in flags) or "no bf16 matmul extensions"
    return f"{name}, family {family} model {model} ({extensions})"


def device_description(device: str) -> str:
    """The device and, for a GPU, its name (the CPU is described by `cpu_description`)."""
    if device.startswith("cuda"):
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return device


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options; --quick shrinks every section."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="12 prompts, tiny T5, 2 training steps"
    )
    parser.add_argument("--n", type=int, default=None, help="prompts (multiple of 3; default 192)")
    parser.add_argument("--data-dir", type=Path, default=DATA_DIR, help="folder holding sst2/")
    parser.add_argument("--steps", type=int, default=None, help="training steps (first: warm-up)")
    parser.add_argument("--no-train-e2e", action="store_true", help="skip `python train.py`")
    parser.add_argument(
        "--icl-rounds", type=int, default=None, help="paired icl/zero-shot rounds (default 3)"
    )
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: torch's)"
    )
    parser.add_argument(
        "--device", default="auto", help="auto (the GPU where there is one), cpu, cuda or cuda:N"
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args(argv)
    args.n = args.n or (12 if args.quick else 192)
    args.examples = max(1, args.n // 3)  # three conditions per example
    args.steps = max(2, args.steps or (2 if args.quick else 6))
    args.train_e2e = not (args.quick or args.no_train_e2e)
    args.icl_rounds = max(1, args.icl_rounds or (1 if args.quick else 3))
    return args


def main(argv: list[str] | None = None) -> dict:
    """Run every section, print the figures and the final speedup line."""
    args = parse_args(argv)
    quiet()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(
        f"throughput benchmark ({'quick' if args.quick else 'full'}): torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, {os.cpu_count()} CPUs; load average "
        f"{os.getloadavg()[0]:.1f} (shared machine: absolute figures are noisy)"
    )
    print(f"cpu: {cpu_description()}; glibc keeps freed memory: {keep_freed_memory()}")
    device = devices.select_device(args.device)
    print(f"device: {device_description(device)}")
    if default_attention(device):
        print(f"scoring attention on this CPU, bf16 + prefix reuse: {default_attention(device)} "
              f"(amx tiles: {amx_tiles()})")  # fmt: skip
    lm = load_model(embedded_config("float32", device))
    cfg = compose_plain("evaluate", probe_overrides(args.data_dir, args.examples))
    items, texts = probe_prompts(cfg, lm.tokenizer, lm.chat)
    results: dict = {
        "prompts": len(texts),
        "mode": "quick" if args.quick else "full",
        "device": device_description(device),
    }

    runs, rss = compare_methods(
        "embedded SmolLM2-135M-Instruct, SST-2 opinion_label",
        lm,
        partial(load_model, embedded_config("bfloat16", device)),
        items,
        texts,
    )
    results["embedded"], results["peak_rss_mb"] = summarise(runs), rss
    del lm
    gc.collect()
    lm = load_model(embedded_config(None, device))  # the default config, as evaluate.py loads it
    results["icl"] = icl_section(args, lm, items, texts)
    results["training"] = training_section(args, lm, args.steps)
    tokenizer = lm.tokenizer
    del lm
    gc.collect()

    sizes = T5_TINY if args.quick else T5_BASE
    t5 = random_t5(tokenizer, sizes, device)
    t5_items, t5_texts = probe_prompts(cfg, t5.tokenizer, chat=False)
    title = (
        f"random T5 (d_model {sizes['d_model']}, {sizes['num_layers']}+{sizes['num_layers']} "
        f"layers, gated-gelu; SmolLM2's BPE, vocab {len(t5.tokenizer)}), same items as plain text"
    )
    t5_runs, _ = compare_methods(title, t5, partial(to_bf16, t5), t5_items, t5_texts)
    results["t5"] = summarise(t5_runs)
    del t5
    gc.collect()

    if args.train_e2e:
        results["train_py"] = train_e2e_section(args.threads, device)
    results["peak_rss_mb"]["process"] = peak_rss_mb()
    print(f"\npeak RSS of this process: {results['peak_rss_mb']['process']:.0f} MB")
    if device.startswith("cuda"):
        results["peak_gpu_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
        print(f"peak GPU memory allocated: {results['peak_gpu_mb']:.0f} MB")

    naive, default = runs[0], runs[-1]
    results["speedup"] = default.rate / naive.rate
    results["speedup_setting"] = default.name
    results["identical_decisions_pct"] = default.figures["raw_agreement_pct"]
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=float))
    print(f"project default setting: {default.name}")
    print(
        f"speedup: {results['speedup']:.1f}x over the naive loop at "
        f"{results['identical_decisions_pct']:.1f}% identical decisions"
    )
    return results


if __name__ == "__main__":
    main()
