"""Chat formatting: a task prompt becomes a conversation through the recipe's instruction template,
and a conversation becomes model input through the tokenizer's own chat template."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from core.config import TemplateConfig


def messages(prompt: str, template: TemplateConfig) -> list[dict[str, str]]:
    """The conversation for one task prompt: optional system message, then the user's turn."""
    out = [{"role": "system", "content": template.system}] if template.system else []
    out.append({"role": "user", "content": template.instruction.format(prompt=prompt)})
    return out


def render(tokenizer: Any, conversation: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
    """The text the model sees, via the tokenizer's chat template (which may pre-fill `<think>`)."""
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError(
            f"tokenizer {getattr(tokenizer, 'name_or_path', '?')!r} has no chat template; "
            "use an instruct/chat model or set one"
        )
    return tokenizer.apply_chat_template(conversation, tokenize=False, add_generation_prompt=add_generation_prompt)


def prompt_dataset(rows: Any, template: TemplateConfig, limit: int | None = None, seed: int = 0) -> Any:
    """Task rows as a TRL conversational prompt dataset: `prompt` becomes the conversation, the task
    text stays in `question`, and answer / task / metadata ride along for the rewards."""
    ds = rows.shuffle(seed=seed) if limit is not None else rows
    if limit is not None:
        ds = ds.select(range(min(limit, len(ds))))
    return ds.map(lambda r: {"question": r["prompt"], "prompt": messages(r["prompt"], template)})
