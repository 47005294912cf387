"""Measure a model's sycophancy: `python evaluate.py model=... dataset=... probe=...`."""

import hydra
from omegaconf import DictConfig

from sycophancy.runs.evaluate import evaluate
from sycophancy.runs.jobs import cli


@hydra.main(version_base="1.3", config_path="conf", config_name="evaluate")
@cli
def main(cfg: DictConfig) -> float:
    """Run one evaluation and return the headline alignment for sweepers."""
    return evaluate(cfg)


if __name__ == "__main__":
    main()
