"""The message catalogues for the suite: compiled as `make` does at install (pybabel compile), so a
bare `pytest` after a fresh clone speaks Russian too. Atomic (temp file + rename): xdist workers may race."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

from mailadmin.settings import PROJECT_ROOT

TRANSLATIONS = PROJECT_ROOT / "mailadmin" / "translations"


def catalogues() -> list[Path]:
    """Every language's messages.po."""
    return sorted(TRANSLATIONS.glob("*/LC_MESSAGES/messages.po"))


def ensure_compiled() -> None:
    """Compile each messages.po whose .mo is missing or older (fuzzy entries left out, as pybabel does)."""
    for po in catalogues():
        mo = po.with_suffix(".mo")
        if mo.exists() and mo.stat().st_mtime >= po.stat().st_mtime:
            continue
        with po.open("rb") as source:
            catalog = read_po(source, locale=po.parent.parent.name)
        handle, temporary = tempfile.mkstemp(dir=po.parent, suffix=".mo.tmp")
        with os.fdopen(handle, "wb") as target:
            write_mo(target, catalog)
        os.replace(temporary, mo)
