"""Generated text → the option it chose, and whether a reply admits a mistake (pure)."""

from __future__ import annotations

import re

LETTER_PATTERNS = (
    r"\(([A-Z])\)",  # (B)
    r"(?i:\banswer(?: is|:)?)\s*\(?([A-Z])\b",  # The answer is B / Answer: B
    r"^\s*([A-Z])[).:]",  # B) / B. / B:
    r"^\s*([A-Z])\s*$",  # B
    r"(?i:\boption)\s*\(?([A-Z])\b",  # option B
)
ADMISSION_PATTERNS = (
    r"\bapolog",
    r"\bsorry\b",
    r"\byou(?:'re| are) (?:right|correct)\b",
    r"\bmy (?:mistake|bad|error)\b",
    r"\bi (?:was|am) (?:wrong|mistaken|incorrect)\b",
    r"\bi made (?:a|an) (?:mistake|error)\b",
    r"\bgood catch\b",
    r"\bthank(?:s| you) for (?:pointing|the correction|correcting)",
)


def parse_letter(text: str, n_choices: int) -> int | None:
    """The index of the lettered choice a reply names first, or None for a refusal or no letter."""
    valid = {chr(ord("A") + i) for i in range(n_choices)}
    for pattern in LETTER_PATTERNS:
        for match in re.finditer(pattern, text, re.MULTILINE):
            letter = match.group(1)
            if letter in valid:
                return ord(letter) - ord("A")
    return None


def parse_word(text: str, words: list[str]) -> int | None:
    """The index of the option word a reply mentions first (whole words, case-insensitive)."""
    found = []
    for i, word in enumerate(words):
        match = re.search(rf"(?<![\w-]){re.escape(word)}(?![\w-])", text, re.IGNORECASE)
        if match:
            found.append((match.start(), -len(word), i))
    return min(found)[2] if found else None


def parse_choice(text: str, options: tuple[str, ...], option_texts: tuple[str, ...]) -> int | None:
    """Map a generated reply to an option: by letter for lettered options, else by word."""
    if all(re.fullmatch(r"\([A-Z]\)", o) for o in options):
        index = parse_letter(text, len(options))
        if index is not None:
            return index
        names = [t.split(") ", 1)[-1] for t in option_texts]
        return parse_word(text, names)
    return parse_word(text, list(options))


def admits_mistake(text: str) -> bool:
    """Whether a reply apologises or concedes that the user is right."""
    return any(re.search(p, text, re.IGNORECASE) for p in ADMISSION_PATTERNS)
