"""The one parser of boolean words, shared by the settings, the API and the simulator.

``1/true/yes/on`` and ``0/false/no/off`` (any case, surrounding space ignored). Callers word their
own error for anything else (a ConfigError naming the variable, a 400 naming the parameter).
"""

from __future__ import annotations

from typing import Final

__all__ = ("FALSE_WORDS", "TRUE_WORDS", "parse_bool")

TRUE_WORDS: Final = frozenset({"1", "true", "yes", "on"})
FALSE_WORDS: Final = frozenset({"0", "false", "no", "off"})


def parse_bool(text: str) -> bool | None:
    """True or False for a boolean word, None when ``text`` is not one."""
    word = text.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    return None
