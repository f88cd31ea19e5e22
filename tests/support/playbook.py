"""Reading the playbook (`playbook/*.md`) the way the tests check it, and producing real JSON log lines.

- `fenced_blocks()`: every fenced code block with its language and the line it starts on;
- `sql_statements()`: the statements of a ```sql block and its dialect label (`-- PostgreSQL` /
  `-- SQLite` as the block's first line; no label = must run on both);
- `shell_commands()`: the commands of ```bash blocks (continuation lines joined);
- `heading_anchors()`: the anchors GitHub (and /admin/playbook) give the headings;
- `produce_log_lines()`: drives the real engine, services and limiters through every event the
  observability pack documents, with the production JSON sink, and returns the lines written.
"""

from __future__ import annotations

import re
import shlex
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from sqlalchemy import select, update

from mailadmin.models.reasons import BounceRateTrip, PauseLine
from mailadmin.ops import PLAYBOOK_DIR, heading_slug

DIALECT_LABELS = {"-- postgresql": "postgresql", "-- sqlite": "sqlite"}
_FENCE = re.compile(r"^```\s*([\w+-]*)\s*$")


@dataclass(frozen=True)
class Block:
    path: Path
    lang: str
    text: str
    line: int

    @property
    def where(self) -> str:
        return f"{self.path.name}:{self.line}"


def playbook_files() -> list[Path]:
    """Every Markdown file of the playbook."""
    return sorted(PLAYBOOK_DIR.glob("*.md"))


def fenced_blocks(paths: list[Path] | None = None, lang: str | None = None) -> list[Block]:
    """Fenced code blocks (of one language, when given) of the playbook files."""
    blocks = []
    for path in paths or playbook_files():
        lines = path.read_text(encoding="utf-8").splitlines()
        i = 0
        while i < len(lines):
            fence = _FENCE.match(lines[i])
            if fence:
                start = i + 1
                body = []
                i += 1
                while i < len(lines) and not lines[i].startswith("```"):
                    body.append(lines[i])
                    i += 1
                if lang is None or fence.group(1) == lang:
                    blocks.append(Block(path, fence.group(1), "\n".join(body), start))
            i += 1
    return blocks


def dialect_of(block: Block) -> str | None:
    """'postgresql' or 'sqlite' when the block's first line labels it, else None (portable)."""
    first = block.text.strip().splitlines()[0].strip().lower() if block.text.strip() else ""
    return DIALECT_LABELS.get(first)


def sql_statements(text: str) -> list[str]:
    """Split SQL on `;` outside quotes and comments; comment-only pieces are dropped."""
    statements, current = [], []
    quote = None
    i = 0
    while i < len(text):
        char = text[i]
        if quote:
            current.append(char)
            if char == quote:
                quote = None
        elif char in ("'", '"'):
            quote = char
            current.append(char)
        elif text.startswith("--", i):
            end = text.find("\n", i)
            end = len(text) if end == -1 else end
            i = end
            continue
        elif char == ";":
            statements.append("".join(current).strip())
            current = []
        else:
            current.append(char)
        i += 1
    statements.append("".join(current).strip())
    return [s for s in statements if s]


def bind_names(statement: str) -> set[str]:
    """The `:name` parameters of a statement (not `::casts`, not inside quotes)."""
    without_strings = re.sub(r"'[^']*'", "''", statement)
    return set(re.findall(r"(?<![:\w]):([A-Za-z_]\w*)", without_strings))


def shell_commands(blocks: list[Block]) -> list[tuple[Block, str]]:
    """(block, command) for each command line of the blocks; `\\` continuations joined, comments skipped."""
    commands = []
    for block in blocks:
        pending = ""
        for raw in block.text.splitlines():
            line = raw.rstrip()
            if not pending and (not line.strip() or line.lstrip().startswith("#")):
                continue
            if line.endswith("\\"):
                pending += line[:-1] + " "
                continue
            commands.append((block, (pending + line).strip()))
            pending = ""
    return commands


def heading_anchors(path: Path) -> set[str]:
    """Anchors of the file's headings (outside code blocks), with GitHub's -1, -2 for repeats."""
    anchors: set[str] = set()
    seen: dict[str, int] = {}
    in_code = False
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            in_code = not in_code
            continue
        match = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if in_code or not match:
            continue
        slug = heading_slug(match.group(1))
        if slug in seen:
            seen[slug] += 1
            slug = f"{slug}-{seen[slug]}"
        else:
            seen[slug] = 0
        anchors.add(slug)
    return anchors


def markdown_links(path: Path) -> list[str]:
    """Targets of [text](target) links outside code blocks."""
    text = re.sub(r"```.*?```", "", path.read_text(encoding="utf-8"), flags=re.S)
    return re.findall(r"\]\(([^)\s]+)\)", text)


def redis_cli_key(command: str) -> str | None:
    """The key (or scan pattern) a `redis-cli ...` command reads; None for key-less commands (PING)."""
    tokens = shlex.split(command.split("|")[0])
    assert tokens[0] == "redis-cli", command
    i = 1
    while i < len(tokens):
        token = tokens[i]
        if token == "--pattern":
            return tokens[i + 1]
        if token in ("-u", "-h", "-p", "-n", "-a"):
            i += 2
            continue
        if token.startswith("-"):
            i += 1
            continue
        break
    if i >= len(tokens) or tokens[i].lower() in ("ping", "info", "dbsize", "time"):
        return None
    return tokens[i + 1] if i + 1 < len(tokens) else None


# --- real log lines ----------------------------------------------------------------------------


def produce_log_lines(app, make_user, smtp, redis_url: str) -> tuple[list[str], dict[str, int]]:
    """Run the product through every documented event with the JSON sink at DEBUG.

    Returns (the lines written, campaign ids by role). Needs MAILER_SMTP_MAX_PER_HOUR=6 and
    MAILER_CIRCUIT_BREAKER_THRESHOLD=2 in the app's env.
    """
    from rq import Queue

    from mailadmin.devtools.redis_server import free_port
    from mailadmin.extensions import SEND_QUEUE, db, get_redis, get_settings
    from mailadmin.jobs.recovery import recover_stalled_campaigns
    from mailadmin.limits.send_pace import reserve_send_tokens
    from mailadmin.limits.throttle import ACTION_TEST_EMAIL, is_user_throttled
    from mailadmin.logging import reset_logging, setup_logging
    from mailadmin.models import CampaignQueue, Recipient
    from mailadmin.models.types import utcnow
    from mailadmin.queue.outages import call_through_outage, set_process_name
    from mailadmin.services import campaigns as service
    from mailadmin.services import delivery, sending_switch
    from mailadmin.services.test_email import send_test_email
    from tests.factories import create_campaign
    from tests.support.jobs import run_queued_jobs

    settings = get_settings()
    assert settings.smtp_max_per_hour == 6 and settings.circuit_breaker_threshold == 2
    lines: list[str] = []
    ids: dict[str, int] = {}
    setup_logging(settings, sink=lines.append, level="DEBUG")
    try:
        owner = make_user("owner@example.com", role="admin")

        # A transient error (deferred), then a second one: the breaker trips. No token: the relay refused it.
        breaker = create_campaign(owner, ["transient@example.test"], name="breaker")
        smtp.reply_with(451, times=1)
        service.start_campaign(breaker, owner, enforce_throttle=False)
        run_queued_jobs(redis_url)
        # The retry cycle, when due: its slice takes the campaign back to sending, and fails again.
        due = db.session.scalar(select(CampaignQueue.deferred_until).where(CampaignQueue.campaign_id == breaker.id))
        delivery.begin_slice(breaker.id, "second-retry-cycle", due)
        delivery.record_transient_error(breaker.id, "451 4.3.0 still failing", now=due)
        ids["breaker"] = breaker.id

        # Two sent, one hard bounce: finished with errors. 2 tokens (the refused message gave its back).
        with_errors = create_campaign(
            owner, ["ok1@example.test", "bounce@example.test", "ok2@example.test"], name="with errors"
        )
        smtp.reply_for_address("bounce@example.test", 550, "5.1.1 user unknown")
        service.start_campaign(with_errors, owner, enforce_throttle=False)
        run_queued_jobs(redis_url)
        ids["with_errors"] = with_errors.id

        # Clean: finished ok. 4 tokens: the hourly quota (6) is used up.
        clean = create_campaign(owner, ["a@example.test", "b@example.test", "d@example.test", "e@example.test"],
                                name="clean")
        service.start_campaign(clean, owner, enforce_throttle=False)
        run_queued_jobs(redis_url)
        ids["clean"] = clean.id

        # Reported later: a hard bounce by SES, a complaint through the bounce mailbox; and a
        # campaign paused for its bounce rate.
        from mailadmin.mail.bounces import BounceReport
        from mailadmin.services import bounces as bounce_service
        from mailadmin.services.bounces import record_bounce

        record_bounce(BounceReport("ok1@example.test", "hard", "ses", "sns-1", status_code="5.1.1"))
        record_bounce(BounceReport("a@example.test", "complaint", "ses", "sns-2"))
        bouncing = create_campaign(owner, ["bad@example.test"], name="bounce rate")
        service.start_campaign(bouncing, owner, enforce_throttle=False)
        bounce_service.pause_for_bounce_rate(bouncing.id, BounceRateTrip(PauseLine.BOUNCE_RATE, 200, 11, 0, 5))
        Queue(SEND_QUEUE, connection=get_redis()).empty()
        ids["bounce_rate"] = bouncing.id

        # No token left: deferred with rate_limit; then an admin pauses, resumes and cancels it.
        quota = create_campaign(owner, ["c@example.test"], name="quota")
        service.start_campaign(quota, owner, enforce_throttle=False)
        run_queued_jobs(redis_url)
        ids["rate_limit"] = quota.id
        db.session.refresh(quota)
        service.pause_campaign(quota, owner)
        db.session.refresh(quota)
        service.resume_campaign(quota, owner)
        db.session.refresh(quota)
        service.cancel_campaign(quota, owner)

        # A scheduled start.
        scheduled = create_campaign(owner, ["s@example.test"], name="scheduled")
        service.start_campaign(scheduled, owner, scheduled_at=utcnow() + timedelta(hours=1), enforce_throttle=False)
        ids["scheduled"] = scheduled.id

        # All sending switched off while a campaign is queued: its slice defers it (global_pause).
        paused_all = create_campaign(owner, ["g@example.test"], name="global pause")
        service.start_campaign(paused_all, owner, enforce_throttle=False)
        sending_switch.set_sending_paused(True, owner)
        run_queued_jobs(redis_url)
        sending_switch.set_sending_paused(False, owner)
        Queue(SEND_QUEUE, connection=get_redis()).empty()
        ids["global_pause"] = paused_all.id

        # A worker died mid-batch and its job was lost: the sweep marks the claim unknown and re-enqueues.
        crashed = create_campaign(owner, ["x@example.test", "y@example.test"], name="crashed")
        service.start_campaign(crashed, owner, enforce_throttle=False)
        Queue(SEND_QUEUE, connection=get_redis()).empty()
        long_ago = utcnow() - timedelta(hours=1)
        db.session.execute(
            update(Recipient)
            .where(Recipient.campaign_id == crashed.id, Recipient.email == "x@example.test")
            .values(status="sending", claimed_by="dead-job", claimed_at=long_ago)
        )
        db.session.execute(update(CampaignQueue).where(CampaignQueue.campaign_id == crashed.id).values(heartbeat_at=long_ago))
        db.session.commit()
        recover_stalled_campaigns()
        ids["crashed"] = crashed.id

        # A test email.
        send_test_email(clean, owner, "tester@example.com")

        # Redis unreachable: the rate limiter fails open, the throttle fails closed.
        dead = redis.Redis(port=free_port(), socket_connect_timeout=0.5, socket_timeout=0.5, retry=Retry(NoBackoff(), 0))
        reserve_send_tokens(dead, 1, settings.smtp_max_per_hour, campaign_id=clean.id)
        is_user_throttled(dead, ACTION_TEST_EMAIL, owner.id, settings.throttle_test_email_per_hour)
        # ... and a process waiting it out logs the outage once when it starts and once when it ends.
        set_process_name("worker")
        try:
            call_through_outage(dead.ping, deadline=time.monotonic() + 0.1)
        except redis.ConnectionError:
            pass
        call_through_outage(get_redis().ping)
        set_process_name("app")
    finally:
        reset_logging()
    return [line.rstrip("\n") for line in lines], ids
