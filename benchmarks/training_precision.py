"""How far a bf16 prompt-tuning step's soft-prompt gradient is from fp32's, per training step path.

Usage:
    python benchmarks/training_precision.py               # 3 SST-2 training batches of 8
    python benchmarks/training_precision.py --batches 6

The same batches (SST-2 training claims with random opinions, rendered as train.py renders them) and
the same initial soft prompt go through: the fp32 model on the padded batch (the reference); bf16 on
the padded batch with SDPA's math kernel (the training step before `training.share_prefix` and
grouped attention); bf16 with the default step. Printed per batch: each path's loss and the relative
error ||g - g_fp32|| / ||g_fp32|| of its soft-prompt gradient.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from throughput import (  # noqa: E402  (a sibling script, not a package)
    DATA_DIR,
    compose_plain,
    embedded_config,
    padded_math_loss,
    probe_overrides,
    quiet,
)

from sycophancy import sources  # noqa: E402
from sycophancy.mitigations import adapters  # noqa: E402
from sycophancy.models import load_model  # noqa: E402
from sycophancy.probes.base import dataset_config  # noqa: E402
from sycophancy.probes.training_items import random_items, to_train_item  # noqa: E402
from sycophancy.prompts import renderer  # noqa: E402
from sycophancy.training.batches import SycophancyDataModule  # noqa: E402
from sycophancy.training.module import _answer_loss, answer_loss  # noqa: E402


def soft_prompt_gradient(tuned, loss_of, batch: dict) -> tuple[float, torch.Tensor]:
    """The loss and the fp32 gradient of the soft prompt for one batch."""
    tuned.model.zero_grad(set_to_none=True)
    loss = loss_of(tuned.model, batch, tuned.family)
    loss.backward()
    weight = adapters.soft_prompt_weight(adapters.peft_of(tuned))
    return float(loss), weight.grad.detach().float().clone()


def main(argv: list[str] | None = None) -> None:
    """Print each path's loss and gradient error against fp32 for each batch."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, default=3)
    parser.add_argument("--data-dir", type=Path, default=DATA_DIR)
    args = parser.parse_args(argv)
    quiet()
    cfg = compose_plain("train", probe_overrides(args.data_dir, 64)[:2] + ["logger=none"])
    data_cfg = dataset_config(cfg)
    batch_size = int(cfg["training"]["batch_size"])
    data = sources.load_classification({**data_cfg, "limit": batch_size * args.batches}, "train")
    tuned = {}
    for dtype in ("float32", "bfloat16"):
        lm = load_model(embedded_config(dtype))
        tuned[dtype] = adapters.add_adapter(lm, cfg["mitigation"], int(cfg["seed"]))
    render = renderer(lm.tokenizer, lm.chat)
    pairs = random_items(data, data_cfg, cfg["probe"], int(cfg["data_seed"]))
    items = [to_train_item(rand, render) for rand, _ in pairs]
    module = SycophancyDataModule(
        lm, items, [], batch_size=batch_size, batches_per_epoch=args.batches
    )
    module.setup("fit")
    paths = {
        "bf16 padded batch, SDPA math kernel (before)": (tuned["bfloat16"], padded_math_loss),
        "bf16 shared prefix + grouped attention (default)": (tuned["bfloat16"], answer_loss),
    }
    print(
        f"soft-prompt gradient against fp32's (padded batch), {args.batches} batches of {batch_size}"
    )
    for i, batch in enumerate(module.train_dataloader()):
        loss32, grad32 = soft_prompt_gradient(
            tuned["float32"], lambda m, b, f: _answer_loss(m, b, f, share_prefix=False), batch
        )
        print(f"batch {i}: fp32 loss {loss32:.4f}")
        for name, (model, loss_of) in paths.items():
            loss, grad = soft_prompt_gradient(model, loss_of, batch)
            error = float((grad - grad32).norm() / grad32.norm())
            print(f"  {name:50s} loss {loss:.4f}  gradient error {100 * error:.1f}%")


if __name__ == "__main__":
    main()
