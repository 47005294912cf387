"""Probe items → model input text: chat templates for chat models, plain text for the rest."""

from __future__ import annotations

from collections.abc import Callable

from sycophancy.records import ProbeItem, PromptContext

Message = dict[str, str]


def build_messages(
    user_text: str,
    system: str | None = None,
    shots: list[tuple[str, str]] | None = None,
    history: list[Message] | None = None,
    user_turn: Callable[[str], str] | None = None,
) -> list[Message]:
    """A conversation: optional system turn, k-shot (user, assistant) pairs, history, the user turn;
    `user_turn` (a mitigation's rewriter) rewrites every user turn, shots and history included."""
    messages: list[Message] = []
    if system:
        messages.append({"role": "system", "content": system})
    for question, answer in shots or []:
        messages.append({"role": "user", "content": question})
        messages.append({"role": "assistant", "content": answer})
    messages.extend(history or [])
    messages.append({"role": "user", "content": user_text})
    if user_turn is None:
        return messages
    return [
        {**m, "content": user_turn(m["content"])} if m["role"] == "user" else m for m in messages
    ]


def flatten(messages: list[Message], assistant_cue: bool = True) -> str:
    """Plain text for models without a chat template (Flan-T5): a lone user turn stays as it is."""
    if len(messages) == 1 and messages[0]["role"] == "user":
        return messages[0]["content"]
    if [m["role"] for m in messages] == ["system", "user"]:
        return f"{messages[0]['content']}\n\n{messages[1]['content']}"
    labels = {"system": "", "user": "User: ", "assistant": "Assistant: "}
    text = "\n\n".join(f"{labels[m['role']]}{m['content']}" for m in messages)
    return f"{text}\n\nAssistant:" if assistant_cue else text


ZERO_WIDTH_SPACE = "\u200b"


def special_strings(tokenizer) -> tuple[str, ...]:
    """The tokenizer's special-token strings (chat markers, EOS, ...), longest first."""
    names = set(getattr(tokenizer, "all_special_tokens", None) or [])
    added = getattr(tokenizer, "added_tokens_decoder", None) or {}
    names |= {tok.content for tok in added.values() if getattr(tok, "special", False)}
    return tuple(sorted((n for n in names if len(n) > 1), key=len, reverse=True))


def as_data(text: str, specials: tuple[str, ...]) -> str:
    """Text in which no special-token string survives: a zero-width space after each one's first
    character, so an end-of-turn marker inside a review is read as text, not as a control token."""
    for special in specials:
        if special in text:
            text = text.replace(special, special[0] + ZERO_WIDTH_SPACE + special[1:])
    return text


def renderer(tokenizer, use_chat_template: bool) -> Callable[[list[Message]], str]:
    """A function that turns a conversation into the exact string the model reads; the messages'
    contents are data, so special-token strings inside them are neutralised first."""
    specials = special_strings(tokenizer)

    def as_text(messages: list[Message]) -> list[Message]:
        return [{**m, "content": as_data(m["content"], specials)} for m in messages]

    if use_chat_template and getattr(tokenizer, "chat_template", None):

        def render_chat(messages: list[Message]) -> str:
            return tokenizer.apply_chat_template(
                as_text(messages), tokenize=False, add_generation_prompt=True
            )

        return render_chat
    return lambda messages: flatten(as_text(messages))


def render_items(
    items: list[ProbeItem], render: Callable, context: Callable[[str], PromptContext]
) -> list[str]:
    """The exact model input for each item under a mitigation's prompt context."""
    texts = []
    for item in items:
        ctx = context(item.example_id)
        messages = build_messages(
            item.user_text, system=ctx.system, shots=ctx.shots, user_turn=ctx.user_turn
        )
        texts.append(render(messages))
    return texts
