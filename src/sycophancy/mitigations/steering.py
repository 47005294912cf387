"""Contrastive activation addition (Rimsky et al., 2024) against sycophancy, with our own hooks.

The vector at a layer is the mean, over random-opinion training prompts whose user is wrong, of the
residual-stream output at the answer token when the prompt is completed with the truthful answer
minus the same when it is completed with the user's answer (CAA's A/B contrast: one prompt, two
answers, so only the choice differs). At inference `multiplier` times it is added to that layer's
output: at every position of every forward call (`steer_positions=all`, which gives the same result
whether a prompt runs whole or as a cached prefix plus suffix) or at each call's final position
(`last`: the position scored for a whole, left-padded causal prompt, and each new token in
generation). Causal models are steered in their decoder layers, T5 in its decoder blocks (where the
answer token is read). Hooks live only for one forward or generate call and are removed in
`finally`.
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import torch
from safetensors.torch import load_file, safe_open, save_file

from sycophancy.errors import UserError
from sycophancy.files import ordinary_mode
from sycophancy.mitigations.base import Monitor, TrainableMitigation
from sycophancy.models import LoadedModel
from sycophancy.records import TrainItem
from sycophancy.schema import SteeringSchema

log = logging.getLogger(__name__)

READ_POSITIONS = ("answer", "last")  # the token of the completion whose activation is read
STEER_POSITIONS = ("all", "last")  # the positions of each forward call the vector is added to
VECTOR_FILE = "steering.safetensors"


def layers_of(model) -> torch.nn.ModuleList:
    """The residual-stream blocks that are steered: decoder layers (causal) or decoder blocks (T5)."""
    decoder = model.get_decoder() if hasattr(model, "get_decoder") else model
    for name in ("layers", "block"):
        blocks = getattr(decoder, name, None)
        if isinstance(blocks, torch.nn.ModuleList):
            return blocks
    raise UserError(
        f"mitigation=steering cannot find the decoder layers of {type(model).__name__} (no "
        "`layers` or `block` list in its decoder); it supports Llama-family and T5 models."
    )


def hidden_size(model) -> int:
    """The width of the residual stream."""
    config = model.config
    return int(getattr(config, "hidden_size", None) or config.d_model)


def layer_list(mitigation: dict) -> list[int]:
    """`mitigation.layer` as a sorted list of distinct layer indices."""
    layer = mitigation.get("layer")
    layers = layer if isinstance(layer, list) else [layer]
    if not layers or any(isinstance(i, bool) or not isinstance(i, int) for i in layers):
        raise UserError(
            f"mitigation.layer={layer!r} must be a layer index or a list of them, e.g. "
            "mitigation.layer=15 or 'mitigation.layer=[10,15]'."
        )
    return sorted(set(layers))


def checked_layers(model, layers: list[int]) -> list[int]:
    """The layers, each inside the model (negative indices count from the end)."""
    n = len(layers_of(model))
    if any(not -n <= i < n for i in layers):
        raise UserError(
            f"mitigation.layer={layers} is outside the model's {n} layers; use indices 0..{n - 1} "
            "(or negative ones counted from the end)."
        )
    return sorted({i % n for i in layers})


def _hidden(output):
    """The hidden states in a block's output (a tensor, or the first item of a tuple)."""
    return output[0] if isinstance(output, tuple) else output


def _replace(output, hidden):
    """The block's output with its hidden states replaced."""
    return (hidden, *output[1:]) if isinstance(output, tuple) else hidden


@contextmanager
def hooked(model, hooks: dict[int, object]) -> Iterator[None]:
    """Forward hooks on the given layers for the duration of the block, removed also on error."""
    blocks = layers_of(model)
    handles = [blocks[i].register_forward_hook(fn) for i, fn in hooks.items()]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def steering(model, vectors: dict[int, torch.Tensor], multiplier: float, positions: str):
    """A context in which `multiplier * vectors[layer]` is added to each layer's output."""
    if positions not in STEER_POSITIONS:
        raise UserError(
            f"mitigation.steer_positions={positions!r} is not one of {', '.join(STEER_POSITIONS)}."
        )

    def add(vector: torch.Tensor):
        def hook(_module, _args, output):
            if multiplier == 0:
                return None  # exact: the output is left as it is
            hidden = _hidden(output)
            shift = (float(multiplier) * vector).to(hidden.device, hidden.dtype)
            if positions == "all":
                return _replace(output, hidden + shift)
            hidden = hidden.clone()
            hidden[:, -1] += shift
            return _replace(output, hidden)

        return hook

    return hooked(model, {i: add(v) for i, v in vectors.items()})


class SteeredModel(torch.nn.Module):
    """A model whose forward and generate calls run with the steering hooks in place."""

    def __init__(self, base, vectors: dict[int, torch.Tensor], multiplier: float, positions: str):
        super().__init__()
        self.base = base
        self.vectors = {int(i): v.detach().float() for i, v in vectors.items()}
        self.multiplier, self.positions = float(multiplier), str(positions)
        # steering each forward call's last position would also steer a cached prefix's last one
        self.prefix_reuse_safe = self.positions != "last"

    def __getattr__(self, name: str):
        """Anything else (config, device, dtype, generation_config, ...) is the base model's."""
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(super().__getattr__("base"), name)

    def forward(self, *args, **kwargs):
        """The base forward, steered."""
        with steering(self.base, self.vectors, self.multiplier, self.positions):
            return self.base(*args, **kwargs)

    def generate(self, *args, **kwargs):
        """The base generate, every step steered."""
        with steering(self.base, self.vectors, self.multiplier, self.positions):
            return self.base.generate(*args, **kwargs)


def steered(lm: LoadedModel, vectors: dict[int, torch.Tensor], mitigation: dict) -> LoadedModel:
    """The LoadedModel that scores with the vectors added at `mitigation.multiplier`."""
    model = SteeredModel(
        lm.model, vectors, float(mitigation["multiplier"]), str(mitigation["steer_positions"])
    )
    return LoadedModel(model, lm.tokenizer, lm.family, lm.chat, f"{lm.name}+steering", lm.source)


def contrast_items(items: list[TrainItem], n: int | None, seed: int) -> list[TrainItem]:
    """Up to `n` items whose user is wrong, balanced over gold answers and drawn by `seed`."""
    wrong = [it for it in items if it.user_target is not None and it.user_target != it.target]
    by_gold: dict[str, list[TrainItem]] = {}
    for item in sorted(wrong, key=lambda it: it.example_id):
        by_gold.setdefault(item.target, []).append(item)
    rng = random.Random(int(seed))
    pools = [by_gold[key] for key in sorted(by_gold)]
    for pool in pools:
        rng.shuffle(pool)
    interleaved = [
        pool[i] for i in range(max(map(len, pools), default=0)) for pool in pools if i < len(pool)
    ]
    return interleaved if n is None else interleaved[: int(n)]


def read_index(truthful: list[int], user: list[int], how: str) -> tuple[int, int]:
    """Where each answer's activation is read: its first token that differs from the other answer
    (`answer`, the token carrying the choice), or its final token (`last`)."""
    if how == "last":
        return len(truthful) - 1, len(user) - 1
    shared = 0
    while shared < min(len(truthful), len(user)) and truthful[shared] == user[shared]:
        shared += 1
    if shared == len(truthful) or shared == len(user):
        raise UserError(
            f"The truthful and the user's answers tokenise to one being a prefix of the other "
            f"({truthful} / {user}); no token tells them apart. Use mitigation.read_position=last."
        )
    return shared, shared


FIT_BATCH = 16  # completions per forward pass while fitting


def _activations(lm: LoadedModel, rows: list[tuple[list[int], list[int], int]], layers: list[int]):
    """Per layer, [len(rows), d] outputs at token `at` of each row's answer, the prompt completed
    with the answer up to that token (the answer token is the input there, as CAA reads it).
    Causal rows are left-padded and end at the read token; seq2seq decoder rows are right-padded
    and read at their own last token."""
    model, seen = lm.model, {}
    device = next(model.parameters()).device
    pad = lm.tokenizer.pad_token_id if lm.tokenizer.pad_token_id is not None else 0
    if lm.family == "seq2seq":
        start = model.config.decoder_start_token_id
        start = model.config.pad_token_id if start is None else start
        encoder = [context for context, _, _ in rows]
        decoder = [[int(start)] + answer[: at + 1] for _, answer, at in rows]
        ids, mask = _padded(encoder, pad, left=False)
        dec, _ = _padded(decoder, pad, left=False)
        inputs = {"input_ids": ids, "attention_mask": mask, "decoder_input_ids": dec}
        where = torch.tensor([len(d) - 1 for d in decoder])
    else:
        ids, mask = _padded([c + a[: at + 1] for c, a, at in rows], pad, left=True)
        positions = (mask.cumsum(dim=1) - 1).clamp(min=0)
        inputs = {"input_ids": ids, "attention_mask": mask, "position_ids": positions}
        where = torch.full((len(rows),), ids.shape[1] - 1)

    def keep(i):
        def hook(_module, _args, output):
            hidden = _hidden(output)
            seen[i] = hidden[torch.arange(hidden.shape[0]), where.to(hidden.device)].float().cpu()
            if i == max(layers):
                raise _Read  # the layers above it are not needed

        return hook

    with hooked(model, {i: keep(i) for i in layers}), torch.inference_mode(), suppress(_Read):
        model(**{k: v.to(device) for k, v in inputs.items()})
    return seen


class _Read(Exception):
    """Raised by the deepest reading hook to stop a fitting forward pass once it has what it needs."""


def _padded(seqs: list[list[int]], pad: int, left: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Id lists padded into a [b, t] tensor and its attention mask."""
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), int(pad), dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, seq in enumerate(seqs):
        span = slice(width - len(seq), width) if left else slice(0, len(seq))
        ids[i, span], mask[i, span] = torch.tensor(seq, dtype=torch.long), 1
    return ids, mask


def fit_vectors(
    lm: LoadedModel, items: list[TrainItem], layers: list[int], read_position: str
) -> dict[int, torch.Tensor]:
    """CAA vectors: mean over items of (truthful − user's answer) activations, per layer (fp32)."""
    if read_position not in READ_POSITIONS:
        raise UserError(
            f"mitigation.read_position={read_position!r} is not one of {', '.join(READ_POSITIONS)}."
        )
    if not items:
        raise UserError(
            "mitigation=steering found no training prompt whose user is wrong to contrast; raise "
            "training.train_limit, set training.filter=false, or check the training data set."
        )
    from sycophancy.training.batches import encode  # imports Lightning: fitting only

    good_rows, bad_rows = [], []
    for item in items:
        context, truthful = encode(lm, item.prompt, item.target)
        _, user = encode(lm, item.prompt, item.user_target)
        at_t, at_u = read_index(truthful, user, read_position)
        good_rows.append((context, truthful, at_t))
        bad_rows.append((context, user, at_u))
    sums = {i: torch.zeros(hidden_size(lm.model)) for i in layers}
    model = lm.model
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(items), FIT_BATCH):
            good = _activations(lm, good_rows[start : start + FIT_BATCH], layers)
            bad = _activations(lm, bad_rows[start : start + FIT_BATCH], layers)
            for i in layers:
                sums[i] += (good[i] - bad[i]).sum(dim=0)
    finally:
        model.train(was_training)
    return {i: s / len(items) for i, s in sums.items()}


def save_vectors(path: Path, vectors: dict[int, torch.Tensor], info: dict) -> Path:
    """The vectors (fp32, one tensor per layer) with what they were fitted on, as safetensors."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {f"layer.{i}": v.detach().float().contiguous().cpu() for i, v in vectors.items()}
    save_file(tensors, str(path), metadata={"steering": json.dumps(info, sort_keys=True)})
    return ordinary_mode(path)


def load_vectors(path: str | Path) -> tuple[dict[int, torch.Tensor], dict]:
    """The vectors and their fitting info from a file save_vectors wrote."""
    path = Path(path).expanduser()
    if path.is_dir():
        path = path / VECTOR_FILE
    if not path.is_file():
        raise UserError(
            f"No steering vector at {str(path)!r}. Point mitigation.vector_path at the "
            f"{VECTOR_FILE} a `train.py mitigation=steering` run wrote (or its run folder)."
        )
    with safe_open(str(path), framework="pt") as handle:
        info = json.loads((handle.metadata() or {}).get("steering", "{}"))
    vectors = {int(k.split(".")[1]): v for k, v in load_file(str(path)).items()}
    return vectors, info


def matching(lm: LoadedModel, vectors: dict, info: dict, mitigation: dict, path) -> dict:
    """The vectors, refused unless fitted on this model (name and width) at the configured layers."""
    width = hidden_size(lm.model)
    if info.get("model") != lm.name or int(info.get("hidden_size", -1)) != width:
        raise UserError(
            f"The steering vector at {str(path)!r} was fitted on model {info.get('model')!r} "
            f"(hidden size {info.get('hidden_size')}), and this run loads {lm.name!r} (hidden size "
            f"{width}); a vector only means something in the residual stream it was read from. "
            "Evaluate it with the model it was fitted on, or fit one for this model with train.py "
            "mitigation=steering."
        )
    layers = checked_layers(lm.model, layer_list(mitigation))
    if sorted(vectors) != layers:
        raise UserError(
            f"The steering vector at {str(path)!r} holds layers {sorted(vectors)}, and "
            f"mitigation.layer is {layers}; set mitigation.layer={sorted(vectors)} (or fit a "
            "vector at the layers you want)."
        )
    return vectors


class Steering(TrainableMitigation):
    """CAA vectors added to the residual stream: train.py fits and saves them (no gradient steps),
    evaluate.py adds a saved one from `mitigation.vector_path` on any probe."""

    settings = ("layer", "multiplier")
    schema = SteeringSchema

    def check(self, cfg: dict) -> None:
        """Known positions, layers as integers, a usable fitting count, an existing vector file."""
        mitigation = cfg["mitigation"]
        layer_list(mitigation)
        for key, known in (("read_position", READ_POSITIONS), ("steer_positions", STEER_POSITIONS)):
            if mitigation.get(key) not in known:
                raise UserError(
                    f"mitigation.{key}={mitigation.get(key)!r} is not one of {', '.join(known)}."
                )
        family = (cfg.get("model") or {}).get("family")
        if mitigation.get("steer_positions") == "last" and family == "seq2seq":
            raise UserError(
                "mitigation.steer_positions=last steers each forward call's final position, which "
                "is padding for the shorter decoder rows of a right-padded seq2seq batch; use "
                "mitigation.steer_positions=all with T5 models."
            )
        n = mitigation.get("fit_examples")
        if n is not None and int(n) < 1:
            raise UserError(
                f"mitigation.fit_examples={n} must be at least 1 (null: every contrast pair)."
            )
        if mitigation.get("adapter_path"):
            raise UserError(
                "mitigation.adapter_path is set, and mitigation=steering attaches no adapter; give "
                "a fitted vector as mitigation.vector_path=<run>/steering.safetensors."
            )
        path = mitigation.get("vector_path")
        if path:
            load_vectors(path)  # a missing or unreadable file is refused before the model loads

    def wrap(self, cfg: dict, lm: LoadedModel) -> LoadedModel:
        """The model steered by the saved vector (evaluate.py); mitigation.vector_path is required."""
        mitigation = cfg["mitigation"]
        path = mitigation.get("vector_path")
        if not path:
            raise UserError(
                "evaluate.py mitigation=steering needs a fitted vector: run `train.py "
                "mitigation=steering` (it writes <run>/steering.safetensors) and give "
                "mitigation.vector_path=<that file>."
            )
        vectors, info = load_vectors(path)
        return steered(lm, matching(lm, vectors, info, mitigation, path), mitigation)

    def fit(self, cfg: dict, lm: LoadedModel, trainer, datamodule, monitor: Monitor) -> LoadedModel:
        """CAA vectors from the datamodule's training items whose user is wrong (seeded subset)."""
        mitigation = cfg["mitigation"]
        layers = checked_layers(lm.model, layer_list(mitigation))
        items = contrast_items(datamodule.train_items, mitigation.get("fit_examples"), cfg["seed"])
        vectors = fit_vectors(lm, items, layers, str(mitigation["read_position"]))
        norms = {i: round(float(v.norm()), 4) for i, v in vectors.items()}
        log.info("steering vectors from %d contrast pairs, norms %s", len(items), norms)
        tuned = steered(lm, vectors, mitigation)
        tuned.model.fit_info = {
            "model": lm.name,
            "hidden_size": hidden_size(lm.model),
            "family": lm.family,
            "layers": layers,
            "read_position": mitigation["read_position"],
            "pairs": len(items),
            "seed": int(cfg["seed"]),
            "norms": {str(i): n for i, n in norms.items()},
            "mitigation": mitigation,
        }
        return tuned

    def save(self, lm: LoadedModel, run_dir: Path) -> Path:
        """The vectors in <run>/steering.safetensors, for evaluate.py's mitigation.vector_path."""
        model = lm.model
        return save_vectors(run_dir / VECTOR_FILE, model.vectors, model.fit_info)
