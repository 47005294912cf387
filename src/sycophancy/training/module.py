"""LightningModule: a frozen base model with a trainable adapter, loss on the answer tokens only."""

from __future__ import annotations

from collections.abc import Callable

import lightning as L
import torch
import torch.nn.functional as F
from hydra.utils import instantiate

from sycophancy.errors import UserError
from sycophancy.metrics.table import metric_names
from sycophancy.models.compute import contiguous_head_inputs, training_attention
from sycophancy.models.fingerprint import check_fingerprint, fingerprint
from sycophancy.training.packing import packed_tail_logits

MONITORED = metric_names(monitored=True)  # logged as val/<metric> after each validation epoch


def answer_loss(model, batch: dict, family: str, share_prefix: bool = True) -> torch.Tensor:
    """Mean cross-entropy over answer tokens (labels != -100), on the faster CPU kernels; causal
    batches as one shared prefix and unpadded rows where the model allows (`training/packing.py`)."""
    with training_attention(batch["input_ids"].device), contiguous_head_inputs(model):
        return _answer_loss(model, batch, family, share_prefix)


def _answer_loss(model, batch: dict, family: str, share_prefix: bool = False) -> torch.Tensor:
    """Mean cross-entropy over answer tokens (labels != -100)."""
    labels = batch["labels"]
    if family == "seq2seq":
        out = model(
            input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=labels
        )
        logits = out.logits
    else:
        # left padding aligns the answers at the end: only the last positions need logits
        width = int((labels != -100).sum(dim=1).max())
        logits = packed_tail_logits(model, batch, width + 1) if share_prefix else None
        if logits is None:
            logits = model(
                input_ids=batch["input_ids"],
                attention_mask=batch["attention_mask"],
                logits_to_keep=width + 1,
            ).logits
        logits, labels = logits[:, :-1], labels[:, -width:]
    return F.cross_entropy(
        logits.float().reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=-100
    )


class AdapterModule(L.LightningModule):
    """Trains only the adapter of `lm.model`; the base stays frozen and in eval mode (no dropout)."""

    def __init__(self, lm, hparams: dict, probe_eval: Callable | None = None):
        super().__init__()
        self.lm = lm
        self.model = lm.model
        self.probe_eval = probe_eval
        self.strict_loading = False  # checkpoints hold the trainable tensors only
        self.save_hyperparameters(hparams)

    def train(self, mode: bool = True):
        """Keep the frozen base deterministic; only adapter dropout (LoRA) follows `mode`."""
        super().train(mode)
        self.model.eval()
        if mode:
            for name, module in self.model.named_modules():
                if "lora_dropout" in name:
                    module.train()
        return self

    @property
    def share_prefix(self) -> bool:
        """`training.share_prefix` (default true): causal batches as a shared prefix and unpadded rows."""
        return bool(self.hparams.get("training", {}).get("share_prefix", True))

    def training_step(self, batch, batch_idx):
        loss = answer_loss(self.model, batch, self.lm.family, self.share_prefix)
        self.log("train/loss", loss, prog_bar=True, batch_size=len(batch["labels"]))
        return loss

    def validation_step(self, batch, batch_idx):
        loss = answer_loss(self.model, batch, self.lm.family, self.share_prefix)
        self.log("val/loss", loss, prog_bar=True, batch_size=len(batch["labels"]), sync_dist=True)

    def on_validation_epoch_end(self):
        # the probe is deterministic and identical on every rank: rank 0 measures, the others wait
        if (
            self.probe_eval is None
            or self.trainer.sanity_checking
            or not self.trainer.is_global_zero
        ):
            return
        metrics = self.probe_eval(self.lm)
        self.log_dict(
            {f"val/{k}": float(metrics[k]) for k in MONITORED if k in metrics},
            prog_bar=False,
            rank_zero_only=True,
        )
        self.model.eval()

    def configure_optimizers(self):
        """`mitigation.optimizer` (a Hydra `_partial_` target) over the trainable parameters, with
        a linear warmup over `mitigation.warmup_steps`."""
        mitigation = self.hparams["mitigation"]
        params = [p for p in self.parameters() if p.requires_grad]
        optimizer = instantiate(mitigation["optimizer"])(params)
        warmup = int(mitigation.get("warmup_steps", 0))
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: min(1.0, (step + 1) / warmup) if warmup else 1.0
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """Drop the frozen base from the checkpoint: kilobytes instead of the whole model."""
        keep = {name for name, p in self.named_parameters() if p.requires_grad}
        checkpoint["state_dict"] = {k: v for k, v in self.state_dict().items() if k in keep}
        checkpoint["base_model"] = fingerprint(self.lm)

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        """Refuse a checkpoint of another model or adapter (strict_loading is off: a mismatch would
        silently load nothing)."""
        check_fingerprint(checkpoint.get("base_model"), self.lm, "checkpoint", "ckpt_path")
        keep = {name: p.shape for name, p in self.named_parameters() if p.requires_grad}
        saved = checkpoint.get("state_dict", {})
        wrong = sorted(set(keep) ^ set(saved)) or [
            k for k in keep if tuple(saved[k].shape) != tuple(keep[k])
        ]
        if wrong:
            raise UserError(
                f"The checkpoint's adapter tensors do not match this run's adapter ({wrong[0]} "
                f"and {len(wrong) - 1} more differ): it was trained with another mitigation or "
                "model. Resume with the settings it was trained with, or start without ckpt_path."
            )
