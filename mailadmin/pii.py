"""PII helpers for logging: masking, hashing and the per-level field policy.

Pure functions, no I/O. The only state is the *active policy* (`PiiPolicy`), which
`mailadmin.logging.setup_logging()` sets from the settings so that call sites can write::

    logger.bind(**get_pii_log_fields(address, "INFO")).info("Email sent successfully")

Which fields a record of a given level may carry (SPEC "Logging"):

=========  ============  ============  ============  ===================================
level      email_domain  email_hash    email_masked  email (full)
=========  ============  ============  ============  ===================================
DEBUG      yes           yes           yes           only if MAILER_LOG_FULL_EMAILS=true
INFO       yes           yes           yes           never
WARNING+   yes           no            yes           never
=========  ============  ============  ============  ===================================

``MAILER_LOG_PII_LEVEL`` (default ERROR) is the minimum level at which anything derived from an
address's local part may appear *in free text* (a message, an exception, a third-party log
line): from that level up a stray address is masked (``jo***@company.com``), below it redacted
to ``***@company.com``. The structured fields above are deliberate and follow the table.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mailadmin.settings import DEFAULT_HASH_SALT

#: Field names produced by `get_pii_log_fields`.
PII_FIELDS = ("email", "email_masked", "email_domain", "email_hash")
MASK = "***"

# Numeric values of the level names we accept (loguru's numbers, which match stdlib's).
LEVEL_NUMBERS = {
    "TRACE": 5,
    "DEBUG": 10,
    "INFO": 20,
    "SUCCESS": 25,
    "WARNING": 30,
    "WARN": 30,
    "ERROR": 40,
    "CRITICAL": 50,
    "FATAL": 50,
}
_INFO, _WARNING = LEVEL_NUMBERS["INFO"], LEVEL_NUMBERS["WARNING"]

# --- address grammar -------------------------------------------------------------------------
# Bounded repetitions everywhere: the pattern runs over every log line, so it must stay linear
# even on a 100 kB base64 blob (RFC 5321 caps a local part at 64 octets; we allow 128).
_QUOTED_LOCAL = r'"(?:[^"\\\r\n]|\\.){1,128}"'
# In free text the local part excludes the URL delimiters / ? & # so that
# "https://x.org/u?to=john@example.com" masks "to=john@..." and not the whole URL; "=" stays
# because VERP bounce addresses ("bounce-john=example.com@lists.example.org") carry the
# recipient's address in the local part.
_TEXT_LOCAL = r"[\w!$%*+=^~-][\w!$%'*+=^`{|}~.-]{0,127}"
_STRICT_LOCAL = r"[\w!#$%&'*+/=?^`{|}~.-]{1,128}"
# Unicode labels (IDN as written, e.g. bücher.de, 例子.广告) and punycode; a label never starts
# or ends with "-" or "_", so trailing punctuation ("mail a@b.com.") is left outside the match.
_LABEL = r"[^\W_](?:[\w-]{0,61}[^\W_])?"
_DOMAIN = rf"(?:{_LABEL}(?:\.{_LABEL}){{0,15}}|\[[^\]\s]{{1,64}}\])"

#: Finds addresses inside free text: plus tags, sub-domains, upper case, IDN/unicode domains,
#: quoted local parts ("john doe"@example.com), mailto: links and URL-encoded "@" (%40).
EMAIL_PATTERN = re.compile(rf"(?P<local>{_QUOTED_LOCAL}|{_TEXT_LOCAL})(?P<sep>@|%40)(?P<domain>{_DOMAIN})")
_VISIBLE_PREFIX = re.compile(r"[\w.+'-]*")
_ADDRESS = re.compile(rf"(?P<local>{_QUOTED_LOCAL}|{_STRICT_LOCAL})@(?P<domain>{_DOMAIN})")


@dataclass(frozen=True)
class PiiPolicy:
    """What the logs may contain; built from the settings by `setup_logging`."""

    pii_level: str = "ERROR"
    full_emails: bool = False
    hash_salt: str = DEFAULT_HASH_SALT

    @classmethod
    def from_settings(cls, settings: Any) -> PiiPolicy:
        """The policy described by `Settings.log_pii_level`, `log_full_emails`, `log_hash_salt`."""
        return cls(
            pii_level=level_name(settings.log_pii_level),
            full_emails=bool(settings.log_full_emails),
            hash_salt=settings.log_hash_salt,
        )


_active_policy = PiiPolicy()


def get_active_policy() -> PiiPolicy:
    """The policy installed by the last `setup_logging()` (SPEC defaults before that)."""
    return _active_policy


def set_active_policy(policy: PiiPolicy) -> None:
    """Install `policy` as the one `get_pii_log_fields` and the log patcher apply."""
    global _active_policy
    _active_policy = policy


def level_number(level: str | int) -> int:
    """The numeric severity of a level name ("INFO") or number (20)."""
    if isinstance(level, int):
        return level
    try:
        return LEVEL_NUMBERS[str(level).strip().upper()]
    except KeyError:
        raise ValueError(f"unknown log level {level!r}") from None


def level_name(level: str | int) -> str:
    """The canonical name of a level ("warn" -> "WARNING"); numbers map to the nearest name below."""
    number = level_number(level)
    name = "TRACE"
    for candidate in ("TRACE", "DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        if LEVEL_NUMBERS[candidate] <= number:
            name = candidate
    return name


# --- single addresses ------------------------------------------------------------------------


def _split(email: object) -> tuple[str, str] | None:
    """(local part, domain) of a well-formed address, else None."""
    if not isinstance(email, str):
        return None
    match = _ADDRESS.fullmatch(email.strip())
    if match is None:
        return None
    return match.group("local"), match.group("domain")


def mask_email(email: object) -> str:
    """`john.doe@company.com` -> `jo***@company.com`; anything that is not an address -> `***`."""
    parts = _split(email)
    if parts is None:
        return MASK
    local, domain = parts
    if local.startswith('"') and local.endswith('"'):
        local = local[1:-1]
    # Only plain characters are shown, which also keeps masking idempotent:
    # mask_email("a***@x.org") == "a***@x.org".
    visible = _VISIBLE_PREFIX.match(local[:2]).group()
    return f"{visible}{MASK}@{domain.lower()}"


def redact_email(email: object) -> str:
    """`john.doe@company.com` -> `***@company.com` (domain only); non-addresses -> `***`."""
    parts = _split(email)
    if parts is None:
        return MASK
    return f"{MASK}@{parts[1].lower()}"


def email_domain(email: object) -> str:
    """The lower-cased domain as written (IDN not converted to punycode); "" for a non-address."""
    parts = _split(email)
    return parts[1].lower() if parts else ""


def email_hash(email: object, salt: str) -> str:
    """HMAC-SHA256 keyed with `salt` over the stripped, lower-cased address: first 16 hex chars."""
    normalised = (email if isinstance(email, str) else "").strip().lower()
    return hmac.new(salt.encode("utf-8"), normalised.encode("utf-8"), hashlib.sha256).hexdigest()[:16]


ERASED_PREFIX = "erased:"


@functools.lru_cache(maxsize=4)
def _keyed_sha256(salt: str) -> hmac.HMAC:
    # Keying an HMAC is the costly part; imports compare thousands of addresses with one salt.
    return hmac.new(salt.encode("utf-8"), digestmod=hashlib.sha256)


def erasure_hash(email: object, salt: str) -> str:
    """The full salted HMAC-SHA256 of an address (64 hex): what stays of an erased person."""
    normalised = (email if isinstance(email, str) else "").strip().lower()
    digest = _keyed_sha256(salt).copy()
    digest.update(normalised.encode("utf-8"))
    return digest.hexdigest()


def erasure_marker(email: object, salt: str) -> str:
    """What replaces an erased address in every stored copy: `erased:<salted hash>` (no `@`)."""
    return ERASED_PREFIX + erasure_hash(email, salt)


def is_email(value: object) -> bool:
    """True when `value` is exactly one address (surrounding whitespace allowed)."""
    return _split(value) is not None


# --- the level policy ------------------------------------------------------------------------


def allowed_pii_fields(level: str | int, *, full_emails_allowed: bool = False) -> frozenset[str]:
    """The PII field names a record of `level` may carry.

    `email_domain` and `email_masked` always; `email_hash` below WARNING; the full `email` only
    at DEBUG (or TRACE) when full emails are allowed — an explicit debugging opt-in.
    """
    number = level_number(level)
    fields = {"email_domain", "email_masked"}
    if number < _WARNING:
        fields.add("email_hash")
    if full_emails_allowed and number < _INFO:
        fields.add("email")
    return frozenset(fields)


def safe_email_for_logging(
    email: object,
    level: str | int,
    *,
    salt: str,
    full_emails_allowed: bool,
) -> dict[str, str]:
    """The PII-safe fields describing `email` in a record of `level` (explicit policy, no globals)."""
    allowed = allowed_pii_fields(level, full_emails_allowed=full_emails_allowed)
    fields: dict[str, str] = {}
    if "email" in allowed and isinstance(email, str):
        fields["email"] = email.strip()
    if "email_masked" in allowed:
        fields["email_masked"] = mask_email(email)
    fields["email_domain"] = email_domain(email)
    if "email_hash" in allowed:
        fields["email_hash"] = email_hash(email, salt)
    return fields


def get_pii_log_fields(
    email: object,
    level: str | int = "INFO",
    *,
    salt: str | None = None,
    full_emails_allowed: bool | None = None,
) -> dict[str, str]:
    """`safe_email_for_logging` with every omitted option taken from the active policy."""
    policy = get_active_policy()
    return safe_email_for_logging(
        email,
        level,
        salt=policy.hash_salt if salt is None else salt,
        full_emails_allowed=policy.full_emails if full_emails_allowed is None else full_emails_allowed,
    )


# --- free text -------------------------------------------------------------------------------

# EMAIL_PATTERN.sub() would try the 128-character local part at every position of the text,
# which costs ~0.5 s on a 200 kB line. Instead each separator is an anchor: the domain is matched
# forward from it and the local part backward within a bounded window, so the cost stays linear.
# Quoted local parts may contain "@" themselves, so they are found first, by a pattern that can
# only start at a '"'.
_SEPARATOR = re.compile(r"@|%40")
_QUOTED_EMAIL = re.compile(rf"(?P<local>{_QUOTED_LOCAL})(?:@|%40)(?P<domain>{_DOMAIN})")
_LOCAL_BEFORE_SEPARATOR = re.compile(rf"{_TEXT_LOCAL}\Z")
_DOMAIN_AFTER_SEPARATOR = re.compile(_DOMAIN)
_LOCAL_WINDOW = 128  # the longest unquoted local part the grammar accepts
_QUERY_DELIMITERS = "?&;"


def find_emails(text: str) -> list[tuple[int, int, str]]:
    """(start, end, address) of every address in `text`, in order: the matches of `EMAIL_PATTERN`."""
    found: list[tuple[int, int, str]] = []
    if '"' in text:
        for match in _QUOTED_EMAIL.finditer(text):
            found.append((match.start(), match.end(), f"{match.group('local')}@{match.group('domain')}"))
    quoted_spans = [(start, end) for start, end, _ in found]
    cursor = next_quoted = 0
    for separator in _SEPARATOR.finditer(text):
        position = separator.start()
        while next_quoted < len(quoted_spans) and quoted_spans[next_quoted][1] <= position:
            cursor = max(cursor, quoted_spans[next_quoted][1])
            next_quoted += 1
        inside_quoted = next_quoted < len(quoted_spans) and quoted_spans[next_quoted][0] <= position
        if position < cursor or inside_quoted:
            continue
        domain = _DOMAIN_AFTER_SEPARATOR.match(text, separator.end())
        if domain is None:
            continue
        local = _LOCAL_BEFORE_SEPARATOR.search(text, max(cursor, position - _LOCAL_WINDOW), position)
        if local is None:
            continue
        found.append((local.start(), domain.end(), f"{local.group()}@{domain.group()}"))
        cursor = domain.end()
    found.sort()
    return found


def mask_emails_in_text(text: str, replace: Callable[[str], str] = mask_email) -> str:
    """Replace every address found in `text` with `replace(address)` (default: `mask_email`)."""
    if not isinstance(text, str) or ("@" not in text and "%40" not in text):
        return text
    pieces: list[str] = []
    cursor = 0
    for start, end, address in find_emails(text):
        local = address.rsplit("@", 1)[0]
        encoded_separator = text[start + len(local)] != "@"
        # "?to=john@example.com" in a URL: keep "to=" readable, mask the address after it.
        if start > 0 and text[start - 1] in _QUERY_DELIMITERS and "=" in local and not local.startswith('"'):
            key_length = local.index("=") + 1
            if key_length < len(local):
                start += key_length
                address = address[key_length:]
        pieces.append(text[cursor:start])
        replaced = replace(address)
        # Keep a URL-encoded separator encoded so the surrounding URL still reads as one.
        pieces.append(replaced.replace("@", "%40", 1) if encoded_separator else replaced)
        cursor = end
    pieces.append(text[cursor:])
    return "".join(pieces)
