"""Where a model runs: `model.device` (auto | cpu | cuda | cuda:N), `model.device_map` and autocast."""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import re
from typing import Any

import torch

from sycophancy.errors import UserError

log = logging.getLogger(__name__)

DEVICES = "auto, cpu, cuda, cuda:N"
DEVICE_MAPS = (None, "auto")


def local_rank(env: dict | None = None) -> int:
    """This process's index on its node as its launcher set it (torchrun, accelerate, SLURM); 0."""
    env = os.environ if env is None else env
    for key in ("LOCAL_RANK", "SLURM_LOCALID"):
        if str(env.get(key, "")).isdigit():
            return int(env[key])
    return 0


def select_device(requested: str | None, rank: int = 0, cuda_count: int | None = None) -> str:
    """The torch device a `model.device` setting names for the process of local rank `rank`.

    auto: this process's GPU where there is one (cuda:rank, modulo the GPUs), else cpu; cuda: the
    same, but refused without a GPU; cuda:N: that GPU; cpu: the CPU. `cuda_count` defaults to the
    GPUs torch sees.
    """
    name = str(requested or "auto").strip().lower()
    if cuda_count is None:
        cuda_count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if name == "cpu":
        return "cpu"
    if name == "auto" and cuda_count == 0:
        return "cpu"
    if name in ("auto", "cuda"):
        if cuda_count == 0:
            raise _no_gpu(name)
        return f"cuda:{rank % cuda_count}"
    match = re.fullmatch(r"cuda:(\d+)", name)
    if match is None:
        raise UserError(
            f"model.device={requested!r} is not one of {DEVICES}. Use model.device=auto (the GPU "
            "where there is one, else the CPU), model.device=cpu, or model.device=cuda:0."
        )
    if int(match.group(1)) >= cuda_count:
        raise _no_gpu(name, cuda_count)
    return name


def _no_gpu(name: str, count: int = 0) -> UserError:
    """The error for a GPU the machine does not have."""
    seen = f"torch sees {count} GPU(s)" if count else "torch sees no GPU"
    return UserError(
        f"model.device={name} asks for a GPU, but {seen} (torch {torch.__version__}, CUDA build: "
        f"{torch.version.cuda or 'no'}). Use model.device=auto or model.device=cpu, pick a GPU "
        "that exists, or install a CUDA build of torch (TORCH_SPEC=torch bash scripts/install.sh)."
    )


def check_device_map(value: Any) -> str | None:
    """`model.device_map`: null (the whole model on model.device) or auto (split by accelerate)."""
    if value not in DEVICE_MAPS:
        raise UserError(
            f"model.device_map={value!r} is not supported; use null (the whole model on "
            "model.device) or auto (accelerate splits a model too large for one GPU over the GPUs, "
            "then the CPU)."
        )
    if value == "auto" and importlib.util.find_spec("accelerate") is None:
        raise UserError(
            "model.device_map=auto needs the `accelerate` package, which is not installed: "
            "`pip install accelerate`, or leave model.device_map=null."
        )
    return value


def place(model: Any, device: str, device_map: str | None) -> dict | None:
    """Put `model` on `device`, or split it over the devices with accelerate (device_map=auto);
    returns the split ({module: device}) or None."""
    if device_map != "auto":
        model.to(device)
        return None
    from accelerate import dispatch_model, infer_auto_device_map
    from accelerate.utils import get_balanced_memory

    dtype = next(model.parameters()).dtype
    no_split = getattr(model, "_no_split_modules", None) or []
    memory = get_balanced_memory(model, dtype=dtype, no_split_module_classes=no_split)
    split = infer_auto_device_map(
        model, max_memory=memory, no_split_module_classes=no_split, dtype=dtype
    )
    dispatch_model(model, device_map=split)
    log.info("Split the model with device_map=auto: %s", sorted(set(map(str, split.values()))))
    return dict(split)


def trainer_on_device(trainer: dict, device: str, env: dict | None = None) -> dict:
    """The Lightning trainer settings with `accelerator: auto` resolved to the model's device, so
    training runs where the probes do: `gpu` on that GPU for cuda:N, `cpu` for the CPU. Explicit
    accelerators are kept, and so are `devices` other than 1 or a launcher's processes (ddp)."""
    if str(trainer.get("accelerator", "")).strip().lower() != "auto":
        return trainer
    if not device.startswith("cuda"):
        return {**trainer, "accelerator": "cpu"}
    env = os.environ if env is None else env
    one_process = str(env.get("WORLD_SIZE", "1")) == "1"
    if trainer.get("devices", 1) == 1 and one_process:
        return {**trainer, "accelerator": "gpu", "devices": [int(device.partition(":")[2] or 0)]}
    return {**trainer, "accelerator": "gpu"}


def to_device(lm: Any) -> Any:
    """Put a LoadedModel back on its device (Lightning's teardown leaves it on the CPU); a model
    split with device_map stays where accelerate put it."""
    if lm.device_map is None:
        lm.model.to(lm.device)
    return lm


def check_autocast(value: Any, dtype: torch.dtype, device: str) -> bool:
    """Whether scoring runs under bf16 autocast: `model.autocast` asked and the weights are fp32."""
    if not isinstance(value, bool):
        raise UserError(
            f"model.autocast={value!r} must be true or false (true: a float32 model scores under "
            "bf16 autocast; never float16, which turns T5 into NaNs)."
        )
    if not value or dtype != torch.float32:
        return False
    if device.startswith("cuda") and not torch.cuda.is_bf16_supported():
        raise UserError(
            f"model.autocast=true runs bf16, which {torch.cuda.get_device_name(device)} does not "
            "support; use model.autocast=false (float32) on this GPU."
        )
    return True


def autocast(lm: Any) -> contextlib.AbstractContextManager:
    """bf16 autocast on the model's device type when the LoadedModel asks for it, else nothing."""
    if not getattr(lm, "autocast", False):
        return contextlib.nullcontext()
    return torch.autocast(torch.device(lm.device).type, dtype=torch.bfloat16)
