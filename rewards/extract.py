"""Finding the final answer in a completion.

The answer region is the text after the last `</think>` (the whole completion when it has no
think tags at all; nothing when a `<think>` is never closed, because the model is still
thinking). Within that region the answer is, in this order:
  1. the content of the last `<answer>...</answer>` pair;
  2. the content of the last `\\boxed{...}`;
  3. the region itself, stripped.
An answer written only inside the thinking therefore does not count.
"""

from __future__ import annotations

import re

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
ANSWER_RE = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)


def last_boxed(text: str) -> str | None:
    r"""Content of the last \boxed{...} (or \fbox{...}), braces balanced; None when absent or unclosed."""
    start = max(text.rfind("\\boxed"), text.rfind("\\fbox"))
    if start < 0:
        return None
    # The brace must open the box's argument: in `\boxed 5 ... {x}` nothing is boxed.
    brace = start + len("\\boxed" if text.startswith("\\boxed", start) else "\\fbox")
    while brace < len(text) and text[brace].isspace():
        brace += 1
    if brace >= len(text) or text[brace] != "{":
        return None
    depth = 0
    for i in range(brace, len(text)):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                return text[brace + 1 : i]
    return None


def answer_region(completion: str, think_prefilled: bool = False) -> str | None:
    """The part of a completion that may hold the final answer (see module docstring)."""
    if THINK_CLOSE in completion:
        return completion.rsplit(THINK_CLOSE, 1)[1]
    if THINK_OPEN in completion or think_prefilled:
        return None
    return completion


def extract_answer(completion: str, think_prefilled: bool = False) -> str | None:
    """The final answer of a completion, or None when it gives none."""
    region = answer_region(completion, think_prefilled)
    if region is None:
        return None
    tagged = ANSWER_RE.findall(region)
    if tagged:
        return tagged[-1].strip()
    if "<answer>" in region:  # opened but never closed: no answer given
        return None
    boxed = last_boxed(region)
    if boxed is not None:
        return boxed.strip()
    region = region.strip()
    return region or None


def think_text(completion: str, think_prefilled: bool = False) -> str:
    """The chain of thought: the text inside <think>...</think> ('' when there is none)."""
    if THINK_CLOSE in completion:
        head = completion.split(THINK_CLOSE, 1)[0]
        if THINK_OPEN in head:
            return head.split(THINK_OPEN, 1)[1].strip()
        return head.strip() if think_prefilled else ""
    if THINK_OPEN in completion:
        return completion.split(THINK_OPEN, 1)[1].strip()
    return completion.strip() if think_prefilled else ""
