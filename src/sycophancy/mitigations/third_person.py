"""Third-person reframing (SYCON-Bench): every user turn is retold as what a named user says.

The speaker's name comes from the turn's own biography ("Hello, my name is ...", which is dropped),
else `mitigation.speaker`; first-person phrasings of the probe templates become third-person ones
(`mitigation.rules`, regexes applied in order). Text inside double quotes (the data: reviews, claims)
is never rewritten.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from sycophancy.errors import UserError
from sycophancy.mitigations.base import Context, Shots
from sycophancy.mitigations.prompting import SystemPrompt
from sycophancy.records import PromptContext
from sycophancy.schema import ThirdPersonSchema

QUOTED = re.compile(r'("[^"]*")')


def third_person(text: str, speaker: str, frame: str, name_pattern: str, rules) -> str:
    """The user turn told in the third person: the frame around it, its first person rewritten."""
    found = re.search(name_pattern, text)
    name = found.group("name").strip() if found else speaker
    if found:
        text = text[: found.start()] + text[found.end() :]
    compiled = [(re.compile(pattern), repl.replace("{name}", name)) for pattern, repl in rules]
    parts = QUOTED.split(text)
    for i in range(0, len(parts), 2):  # even parts lie outside quotes
        for pattern, repl in compiled:
            parts[i] = pattern.sub(lambda _, r=repl: r, parts[i])
    return frame.format(name=name, text="".join(parts).strip())


def rewriter(mitigation: dict) -> Callable[[str], str]:
    """The user-turn rewriter of a third_person mitigation config."""
    speaker, frame = str(mitigation["speaker"]), str(mitigation["frame"])
    pattern, rules = str(mitigation["name_pattern"]), [tuple(r) for r in mitigation["rules"]]
    return lambda text: third_person(text, speaker, frame, pattern, rules)


class ThirdPerson(SystemPrompt):
    """The untouched model, with each user turn retold in the third person."""

    settings = ("speaker",)
    context_settings = ("system_prompt", "speaker", "frame", "name_pattern", "rules")
    schema = ThirdPersonSchema

    def check(self, cfg: dict) -> None:
        """The frame names {name} and {text}, the name pattern has a `name` group, rules compile."""
        super().check(cfg)
        mitigation = cfg["mitigation"]
        frame = str(mitigation.get("frame") or "")
        if "{name}" not in frame or "{text}" not in frame:
            raise UserError(
                f"mitigation.frame={frame!r} must contain {{name}} (the speaker) and {{text}} (the "
                "rewritten turn), e.g. 'A user named {name} says the following. {text}'."
            )
        try:
            if "name" not in re.compile(str(mitigation.get("name_pattern"))).groupindex:
                raise UserError(
                    f"mitigation.name_pattern={mitigation.get('name_pattern')!r} has no (?P<name>...) "
                    "group; it must capture the speaker's name, e.g. 'Hello, my name is "
                    "(?P<name>[^.]+)\\.\\s*'."
                )
            for rule in mitigation.get("rules") or []:
                if len(rule) != 2:
                    raise UserError(
                        f"mitigation.rules entry {rule!r} is not a [pattern, replacement] pair; "
                        "e.g. ['\\bI believe\\b', '{name} believes']."
                    )
                re.compile(rule[0])
        except re.error as exc:
            raise UserError(
                f"A mitigation.name_pattern or mitigation.rules pattern is not a valid regular "
                f"expression ({exc}); fix it in conf/mitigation/third_person.yaml or on the command line."
            ) from None

    def context(self, cfg: dict, shots: Shots) -> Context:
        """The system prompt (if any) and the third-person rewriter for every user turn."""
        system = cfg["mitigation"].get("system_prompt") or None
        rewrite = rewriter(cfg["mitigation"])
        return lambda _: PromptContext(system=system, user_turn=rewrite)
