"""Mitigate sycophancy: `python train.py mitigation=prompt_tuning model=... dataset=...`."""

import hydra
from omegaconf import DictConfig

from sycophancy.runs.jobs import cli
from sycophancy.runs.train import train


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
@cli
def main(cfg: DictConfig) -> float:
    """Train one adapter and return the after-training alignment for sweepers."""
    return train(cfg)


if __name__ == "__main__":
    main()
