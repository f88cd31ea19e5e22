"""How counts read in the product's English: "1 duplicate", "2 duplicates", "1,204 recipients".

Pure functions, usable from every layer (services word their summaries with them, templates
get `plural` as a filter).
"""

from __future__ import annotations

# Words whose plural is not "word + s".
_IRREGULAR = {"is": "are", "was": "were", "this": "these", "campaign is": "campaigns are"}


def plural_word(count: int, singular: str, plural: str | None = None) -> str:
    """The word alone, in the form `count` needs: plural_word(1, "event") == "event"."""
    if count == 1:
        return singular
    return plural or _IRREGULAR.get(singular) or singular + "s"


def plural(count: int, singular: str, plural: str | None = None) -> str:
    """The count and its word: plural(1, "duplicate") == "1 duplicate", plural(1204, "event") == "1,204 events"."""
    return f"{count:,} {plural_word(count, singular, plural)}"
