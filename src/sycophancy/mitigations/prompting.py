"""Prompt-side mitigations: a system instruction (none, system_prompt) and k-shot examples (icl)."""

from __future__ import annotations

from sycophancy.errors import UserError
from sycophancy.mitigations.base import Context, Mitigation, Shots
from sycophancy.records import PromptContext
from sycophancy.schema import PromptMitigationSchema
from sycophancy.seeds import example_rng


class SystemPrompt(Mitigation):
    """The untouched model, with `mitigation.system_prompt` as a system turn where one is set."""

    schema = PromptMitigationSchema

    def check(self, cfg: dict) -> None:
        """A trained adapter belongs to the adapter mitigation it was trained as."""
        mitigation = cfg["mitigation"]
        if mitigation.get("adapter_path"):
            raise UserError(
                f"mitigation.adapter_path is set, and mitigation={mitigation.get('name')} attaches no "
                "adapter; evaluate a trained adapter with the mitigation it was trained as, e.g. "
                "mitigation=prompt_tuning mitigation.adapter_path=<run>/adapter."
            )


class InContext(SystemPrompt):
    """k in-context examples per prompt, drawn per example id from the probe's train-split shots."""

    settings = ("k", "shots_per")
    context_settings = ("system_prompt", "k", "pool_size", "shots_per")
    draws = ("example", "run")

    def check(self, cfg: dict) -> None:
        """No adapter; shots drawn per example or once per run; k no larger than the pool it is
        drawn from (when that size is set)."""
        super().check(cfg)
        mitigation = cfg["mitigation"]
        draw = mitigation.get("shots_per", "example")
        if draw not in self.draws:
            raise UserError(
                f"mitigation.shots_per={draw!r} is not one of {', '.join(self.draws)}: `example` "
                "draws k shots per example id, `run` one set for every example."
            )
        k, pool = int(mitigation.get("k") or 0), mitigation.get("pool_size")
        if pool is not None and k > int(pool):
            raise UserError(
                f"mitigation.k={k} is larger than mitigation.pool_size={pool}, the train examples "
                f"the shots are drawn from; give mitigation.k={min(int(pool), 8)} or fewer."
            )

    def context(self, cfg: dict, shots: Shots) -> Context:
        """The system prompt and k shots seeded by (data_seed, example id), flattened to exchanges."""
        mitigation, data_seed = cfg["mitigation"], int(cfg["data_seed"])
        k = int(mitigation.get("k", 0))
        if k == 0:
            return super().context(cfg, shots)
        system = mitigation.get("system_prompt") or None
        pool = shots(cfg, mitigation.get("pool_size"))
        if not pool:
            raise UserError(
                "mitigation=icl needs in-context examples from the train split, and it is empty; "
                "check the data set's train files or set mitigation.k=0."
            )
        if k > len(pool):
            raise UserError(
                f"mitigation.k={k} asks for more in-context examples per prompt than the {len(pool)} "
                "the train split offers (each prompt would hold the whole pool, and be long): "
                f"give mitigation.k={min(len(pool), 8)} or fewer (a few shots are the usual setting)."
            )

        per_run = mitigation.get("shots_per", "example") == "run"

        def context(example_id: str) -> PromptContext:
            rng = example_rng(data_seed, "" if per_run else example_id, "icl")
            picked = rng.sample(pool, k)
            return PromptContext(system=system, shots=[turn for shot in picked for turn in shot])

        return context
