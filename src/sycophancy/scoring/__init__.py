"""Model calls and what turns their output into answers: option log-probs, generation, decisions."""

from sycophancy.scoring.forward import encode, generate, pad_id, prompt_ids, score_options, tail

__all__ = ["encode", "generate", "pad_id", "prompt_ids", "score_options", "tail"]
