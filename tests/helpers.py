"""Helpers shared by the tests: compose a config, run an entry-point script in a fresh interpreter."""

import os
import subprocess
import sys
from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf"


def compose_config(name: str, overrides: list[str]) -> DictConfig:
    """`conf/<name>.yaml` composed with the overrides, as the script would see it."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name=name, overrides=overrides)


def run_script(
    script: str, *args: str, env: dict[str, str] | None = None, timeout: int = 300
) -> subprocess.CompletedProcess:
    """`python <script>.py ARGS` from the repository root, output captured; env adds variables."""
    return subprocess.run(
        [sys.executable, str(REPO / f"{script}.py"), *args],
        cwd=REPO,
        env=None if env is None else {**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
