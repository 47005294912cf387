"""Hugging Face hub data sets: one split via datasets.load_dataset, failures as UserError."""

from __future__ import annotations

from typing import Any

from sycophancy import hub
from sycophancy.errors import UserError
from sycophancy.sources.common import Table, _name, _split_entry

_HUB_HINT = (
    "use dataset.data_dir=... (e.g. ../shared/data/sst2) or an embedded set such as "
    "dataset=synthetic_sentiment"
)


def _offline() -> bool:
    """Whether the Hugging Face libraries are told to stay offline."""
    return hub.offline(hub.DATASETS_OFFLINE)


def _hub_reachable(timeout: float = hub.PROBE_TIMEOUT_S) -> bool:
    """False when the hub cannot be contacted within `timeout` s (True offline: the cache serves)."""
    return _offline() or hub.reachable(timeout)


def _hub_error(cfg: dict, hub_id: str, err: BaseException | None) -> UserError:
    """UserError for a failed hub load: unreachable hub, or a wrong id/config/split."""
    reason = f"{type(err).__name__}: {str(err).splitlines()[0][:300]}" if err else "no connection"
    hint = _HUB_HINT + ("" if _offline() else "; with a cached copy, set HF_DATASETS_OFFLINE=1")
    if err is None or isinstance(err, ConnectionError | TimeoutError) or "reach" in reason.lower():
        return UserError(
            f"dataset {_name(cfg)}: could not reach the Hugging Face hub for {hub_id} ({reason}); "
            f"{hint}."
        )
    return UserError(
        f"dataset {_name(cfg)}: loading {hub_id} (config {cfg.get('hub_config')!r}) from the "
        f"Hugging Face hub failed ({reason}). Check dataset.hub_id, dataset.hub_config and "
        f"dataset.splits, or {hint}."
    )


def hub_load(cfg: dict, hub_config: str | None, hub_split: str) -> Any:
    """One split from the hub via datasets.load_dataset, or UserError when that fails."""
    hub_id = cfg.get("hub_id")
    if not hub_id:
        raise UserError(
            f"dataset {_name(cfg)} has no hub_id and no data_dir. Set dataset.data_dir to a local "
            "folder or dataset.hub_id to a Hugging Face data set."
        )
    if not _hub_reachable():
        raise _hub_error(cfg, hub_id, None)
    import datasets

    try:
        return datasets.load_dataset(hub_id, hub_config, split=hub_split)
    except Exception as err:  # datasets raises many types for one failure; report them all
        raise _hub_error(cfg, hub_id, err) from err


def _hub_table(cfg: dict, split: str) -> tuple[Table, str]:
    """The table of a hub classification split."""
    hub_split = _split_entry(cfg, "splits", split)
    dataset = hub_load(cfg, cfg.get("hub_config"), hub_split)
    return dataset.to_dict(), f"the hub split {cfg['hub_id']}:{hub_split}"
