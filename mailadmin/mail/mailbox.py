"""The bounce mailbox over IMAP (MAILER_BOUNCE_IMAP_URL): fetch what is not processed yet, mark it processed.

`imaps://user:password@host:993/INBOX?processed=Processed` — the path is the mailbox to read
(default INBOX); the optional `processed` folder receives each message once handled. Either way
a handled message gets the keyword `$MailadminProcessed` (and \\Seen), and only messages without
that keyword are fetched, so no message is counted twice — and a message read by a person in a
mail client is still processed.
"""

from __future__ import annotations

import imaplib
import ssl
from collections.abc import Iterator
from urllib.parse import parse_qs, unquote, urlsplit

PROCESSED_KEYWORD = "$MailadminProcessed"
# At most this many messages per run: the next run takes the rest.
FETCH_LIMIT = 500


class MailboxError(Exception):
    """The IMAP server refused a step (login, select, fetch, store); the message names the step."""


class BounceMailbox:
    """One IMAP session on the bounce mailbox; use as a context manager."""

    def __init__(self, url: str, *, timeout: float = 30.0) -> None:
        parts = urlsplit(url)
        self.secure = parts.scheme == "imaps"
        self.host = parts.hostname or ""
        self.port = parts.port or (993 if self.secure else 143)
        self.user = unquote(parts.username or "")
        self.password = unquote(parts.password or "")
        self.mailbox = unquote(parts.path.lstrip("/")) or "INBOX"
        self.processed_folder = (parse_qs(parts.query).get("processed") or [""])[0]
        self.timeout = timeout
        self.imap: imaplib.IMAP4 | None = None

    def __repr__(self) -> str:  # never shows the password
        return f"<BounceMailbox {self.user}@{self.host}:{self.port}/{self.mailbox}>"

    def __enter__(self) -> BounceMailbox:
        if self.secure:
            self.imap = imaplib.IMAP4_SSL(self.host, self.port, ssl_context=ssl.create_default_context(),
                                          timeout=self.timeout)
        else:
            self.imap = imaplib.IMAP4(self.host, self.port, timeout=self.timeout)
        self._check("login", self.imap.login(self.user, self.password))
        self._check("select", self.imap.select(self._quoted(self.mailbox)))
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.imap is not None:
            try:
                self.imap.logout()
            except (imaplib.IMAP4.error, OSError):
                pass
            self.imap = None

    @staticmethod
    def _quoted(name: str) -> str:
        return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'

    @staticmethod
    def _check(step: str, answer: tuple) -> list:
        status, data = answer
        if status != "OK":
            raise MailboxError(f"IMAP {step} failed")
        return data

    def unprocessed_uids(self) -> list[bytes]:
        """UIDs of the messages not handled yet, oldest first, at most FETCH_LIMIT."""
        data = self._check("search", self.imap.uid("SEARCH", None, "UNKEYWORD", PROCESSED_KEYWORD))
        return (data[0] or b"").split()[:FETCH_LIMIT]

    def fetch(self, uid: bytes) -> bytes | None:
        """The raw message (PEEK: fetching does not mark it read); None when it vanished meanwhile."""
        data = self._check("fetch", self.imap.uid("FETCH", uid, "(BODY.PEEK[])"))
        for item in data:
            if isinstance(item, tuple) and len(item) == 2:
                return item[1]
        return None

    def mark_processed(self, uid: bytes) -> None:
        """Flag the message processed (and seen); move it to the processed folder when one is set."""
        self._check("store", self.imap.uid("STORE", uid, "+FLAGS", f"({PROCESSED_KEYWORD} \\Seen)"))
        if self.processed_folder:
            self._check("move", self.imap.uid("MOVE", uid, self._quoted(self.processed_folder)))

    def messages(self) -> Iterator[tuple[bytes, bytes]]:
        """(uid, raw message) of each unprocessed message."""
        for uid in self.unprocessed_uids():
            raw = self.fetch(uid)
            if raw is not None:
                yield uid, raw
