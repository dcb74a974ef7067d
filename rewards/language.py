"""Language consistency (the paper's stage-2 reward): the share of the chain of thought in one language.

Words are runs of letters. Each CJK ideograph counts as one word of 'zh' (kana: 'ja', hangul:
'ko'); Latin-script words are identified by small lexicons of frequent words (English and
French, including every connective the pocket world writes, see pocket/world.py PHRASES) and by
French-only accented letters; words no lexicon claims, or that both claim ('a', 'on'), are
ignored. Per-word lexicons are hand-written because the reward must judge single words and short
chains deterministically in microseconds; language-ID libraries judge whole texts and none is
installed here.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

from rewards.completions import column, prefilled_flags, text_of, user_text
from rewards.extract import think_text
from rewards.registry import reward

ENGLISH = frozenset(["the", "be", "to", "of", "and", "a", "in", "that", "have", "i", "it", "for", "not", "on", "with", "he", "as", "you", "do", "at", "this", "but", "his", "by", "from", "they", "we", "say", "her", "she", "or", "an", "will", "my", "one", "all", "would", "there", "their", "what", "so", "up", "out", "if", "about", "who", "get", "which", "go", "me", "when", "make", "can", "like", "time", "no", "just", "him", "know", "take", "people", "into", "year", "your", "good", "some", "could", "them", "see", "other", "than", "then", "now", "look", "only", "come", "its", "over", "think", "also", "back", "after", "use", "two", "how", "our", "work", "first", "well", "way", "even", "new", "want", "because", "any", "these", "give", "day", "most", "us", "is", "are", "was", "were", "been", "has", "had", "did", "does", "done", "am", "being", "let", "next", "step", "steps", "start", "starting", "answer", "answers", "result", "sum", "total", "add", "adding", "added", "plus", "minus", "subtract", "subtracting", "subtracted", "times", "multiply", "divide", "equals", "equal", "gives", "get", "gets", "got", "therefore", "hence", "thus", "final", "finally", "number", "numbers", "problem", "question", "compute", "computing", "calculate", "calculation", "check", "checking", "verify", "wait", "mistake", "however", "retry", "error", "wrong", "evaluate", "correct", "right", "left", "first", "second", "third", "again", "now", "here", "where", "why", "yes", "okay", "ok", "each", "both", "more", "less", "than", "should", "must", "need", "needs", "find", "found", "value", "values", "term", "terms", "carry", "carrying", "keep", "keeps", "write", "writing", "reasoning", "think", "thinking", "following", "state", "arithmetic", "expression", "solve", "solution", "so", "therefore", "since", "while", "with", "without"])

FRENCH = frozenset(["le", "la", "les", "un", "une", "des", "du", "de", "au", "aux", "et", "ou", "mais", "donc", "or", "ni", "car", "je", "tu", "il", "elle", "nous", "vous", "ils", "elles", "on", "ce", "cette", "ces", "cet", "mon", "ma", "mes", "ton", "ta", "tes", "son", "sa", "ses", "notre", "nos", "votre", "vos", "leur", "leurs", "qui", "que", "quoi", "dont", "où", "est", "sont", "suis", "es", "êtes", "sommes", "était", "étaient", "être", "avoir", "ai", "as", "avons", "avez", "ont", "fait", "faire", "font", "faisons", "dans", "par", "pour", "avec", "sans", "sous", "sur", "entre", "vers", "chez", "puis", "alors", "ensuite", "enfin", "aussi", "très", "plus", "moins", "bien", "encore", "déjà", "toujours", "jamais", "pas", "non", "oui", "si", "comme", "quand", "parce", "lorsque", "commence", "commencer", "commençons", "réponse", "réponses", "résultat", "somme", "total", "ajoute", "ajouter", "ajoutons", "soustrait", "soustraire", "soustrayons", "fois", "multiplier", "diviser", "égal", "égale", "égalent", "donne", "donnent", "nombre", "nombres", "problème", "question", "calcul", "calculer", "calculons", "vérifier", "vérifions", "attends", "attendez", "attention", "erreur", "faux", "vrai", "juste", "correct", "première", "premier", "deuxième", "troisième", "étape", "étapes", "reste", "restent", "garde", "gardons", "retenue", "chaque", "ainsi", "voici", "voilà", "cela", "ça", "il", "y", "avait", "seulement", "maintenant", "ici", "pourquoi", "trouver", "trouve", "valeur", "valeurs", "terme", "termes", "raisonnement", "pense", "penser"])

_AMBIGUOUS = ENGLISH & FRENCH
LEXICONS = {"en": ENGLISH - _AMBIGUOUS, "fr": FRENCH - _AMBIGUOUS}
_LEXICON_LOOKUP = {word: lang for lang, words in LEXICONS.items() for word in words}
_FRENCH_LETTERS = re.compile("[àâçéèêëîïôûùœ]")
_WORD_RE = re.compile(r"[^\W\d_]+")
_SCRIPTS = (  # (first, last, language) of scripts whose every character is a word
    (0x4E00, 0x9FFF, "zh"), (0x3400, 0x4DBF, "zh"), (0xF900, 0xFAFF, "zh"), (0x20000, 0x2FA1F, "zh"),
    (0x3040, 0x30FF, "ja"), (0xAC00, 0xD7AF, "ko"),
)


def _script(char: str) -> str | None:
    code = ord(char)
    for first, last, lang in _SCRIPTS:
        if first <= code <= last:
            return lang
    return None


def word_languages(text: str) -> list[str]:
    """The language of every identified word of `text`, in order (unidentified words left out)."""
    out = []
    for run in _WORD_RE.findall(text.lower()):
        if run.isascii():  # the common case, kept fast
            lang = _LEXICON_LOOKUP.get(run)
            if lang:
                out.append(lang)
            continue
        latin: list[str] = []
        for char in run:
            lang = _script(char)
            if lang is None:
                latin.append(char)
                continue
            out.extend(_latin(latin))
            latin = []
            out.append(lang)
        out.extend(_latin(latin))
    return out


def _latin(chars: list[str]) -> list[str]:
    if not chars:
        return []
    word = "".join(chars)
    lang = _LEXICON_LOOKUP.get(word)
    if lang:
        return [lang]
    return ["fr"] if _FRENCH_LETTERS.search(word) else []


def detect_language(text: str, default: str | None = None) -> str | None:
    """The most frequent identified language of `text` (ties: first seen), or `default`."""
    counts = Counter(word_languages(text))
    return counts.most_common(1)[0][0] if counts else default


def language_share(text: str, target: str) -> float:
    """Share of the identified words of `text` in language `target`; 1.0 when no word is identified."""
    langs = word_languages(text)
    return sum(lang == target for lang in langs) / len(langs) if langs else 1.0


@reward("language_consistency")
def language_consistency(completions: list[Any], prompts: list[Any] | None = None, language: Any = None,
                         default_language: str = "en", think_prefilled: bool | None = None,
                         **kwargs: Any) -> list[float | None]:
    """Share of the chain of thought's words in the target language.

    Args:
        language: the target (a column or one value); default: the prompt's detected language,
            else `default_language`.
        think_prefilled: the prompt already ends in `<think>`; default: detected from each prompt.
    """
    n = len(completions)
    targets = column({"language": language}, "language", n)
    prompt_list = column({"prompts": prompts}, "prompts", n)
    flags = prefilled_flags(prompts, n, think_prefilled)
    out: list[float | None] = []
    for completion, target, prompt, prefilled in zip(completions, targets, prompt_list, flags, strict=True):
        target = target or detect_language(user_text(prompt), default_language)
        out.append(language_share(think_text(text_of(completion), prefilled), target))
    return out
