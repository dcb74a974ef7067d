"""The `format` reward: `<think>` reasoning `</think>` then the answer, each tag once and in order.

Accepted shape (whitespace around the parts is free):

    <think> REASONING </think> ANSWER        ANSWER = [SUMMARY] <answer> TEXT </answer>, or plain TEXT

with nothing before `<think>`, REASONING and TEXT non-blank and free of tags, and nothing after
`</answer>`. The optional SUMMARY (tag-free text before `<answer>`) is the paper's readable
summary of the reasoning. When the chat template pre-fills `<think>` at the end of the prompt (R1-Distill
templates do), the completion starts inside the thinking: it must not open a second `<think>`.
"""

from __future__ import annotations

import re
from typing import Any

from rewards.completions import prefilled_flags, text_of
from rewards.extract import THINK_OPEN
from rewards.registry import reward

_TAG = r"</?(?:think|answer)>"
_NO_TAG = rf"(?:(?!{_TAG}).)"
FORMAT_RE = re.compile(
    rf"^\s*<think>(?P<think>{_NO_TAG}*)</think>\s*"
    rf"(?:(?P<summary>{_NO_TAG}*?)<answer>(?P<tagged>{_NO_TAG}*)</answer>|(?P<plain>{_NO_TAG}+?))\s*$",
    re.DOTALL,
)


def well_formed(completion: str, think_prefilled: bool = False, require_answer_tags: bool = False) -> bool:
    """True when the completion has the R1 shape described in the module docstring."""
    if think_prefilled:
        if THINK_OPEN in completion:
            return False
        completion = THINK_OPEN + completion
    match = FORMAT_RE.match(completion)
    if match is None or not match["think"].strip():
        return False
    if match["tagged"] is not None:
        return bool(match["tagged"].strip())
    return not require_answer_tags and bool(match["plain"].strip())


@reward("format", on_error=0.0)
def format_reward(completions: list[Any], prompts: list[Any] | None = None, think_prefilled: bool | None = None,
                  require_answer_tags: bool = False, **kwargs: Any) -> list[float]:
    """1.0 for a well-formed completion, else 0.0.

    Args:
        think_prefilled: the prompt already ends in `<think>`; default: detected from each prompt.
        require_answer_tags: the answer must be inside `<answer>...</answer>`.
    """
    flags = prefilled_flags(prompts, len(completions), think_prefilled)
    return [float(well_formed(text_of(c), f, require_answer_tags)) for c, f in zip(completions, flags, strict=True)]
