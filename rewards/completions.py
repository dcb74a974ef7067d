"""Reading TRL's reward inputs: completions and prompts arrive as strings or as chat messages."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rewards.extract import THINK_OPEN


def prompt_key(prompt: str) -> str:
    """A prompt as compared for sameness: case and whitespace do not count."""
    return " ".join(prompt.lower().split())


def text_of(item: Any) -> str:
    """The text of a completion or prompt: a string as is, a conversation as its last message's content.

    For a completion the last message is the assistant's reply; for a prompt it is the turn the
    model answers (its content ends in `<think>` when a template pre-fills the thinking).
    """
    if item is None:
        return ""
    if isinstance(item, str):
        return item
    if isinstance(item, dict):
        return _content(item.get("content"))
    if isinstance(item, Sequence) and item:
        return _content(item[-1].get("content") if isinstance(item[-1], dict) else item[-1])
    return ""


def _content(content: Any) -> str:
    # Multimodal-style content is a list of parts; only the text parts matter here.
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return "" if content is None else str(content)


def user_text(prompt: Any) -> str:
    """What the user asked: a string prompt as is, else the last user message of the conversation."""
    if isinstance(prompt, str) or prompt is None:
        return prompt or ""
    users = [m for m in prompt if isinstance(m, dict) and m.get("role") == "user"]
    return _content(users[-1].get("content")) if users else text_of(prompt)


def think_prefilled(prompt: Any) -> bool:
    """True when the prompt already opens the thinking (ends in `<think>`), as R1-Distill templates do."""
    return text_of(prompt).rstrip().endswith(THINK_OPEN)


def column(kwargs: dict[str, Any], name: str, n: int, default: Any = None) -> list[Any]:
    """A dataset column from TRL's keyword arguments, or `default` repeated when the dataset lacks it."""
    values = kwargs.get(name)
    if values is None:
        return [default] * n
    if isinstance(values, str | bytes) or not isinstance(values, Sequence):
        return [values] * n  # one value for the whole batch (a direct call, not TRL)
    if len(values) != n:
        raise ValueError(f"column '{name}' has {len(values)} values for {n} completions; expected one each")
    return list(values)


def prefilled_flags(prompts: Any, n: int, think_prefilled_param: bool | None) -> list[bool]:
    """Per completion: was `<think>` pre-filled? An explicit parameter wins over detection from the prompt."""
    if think_prefilled_param is not None:
        return [bool(think_prefilled_param)] * n
    return [think_prefilled(p) for p in column({"prompts": prompts}, "prompts", n)]
