"""django-post-office sending the same kind of campaign through the same relay: the baseline the
send loop is compared with (`bench/send_loop.py` runs it in `make bench`).

    python -m bench.post_office_baseline --smtp-url smtp://127.0.0.1:PORT --messages 1500 --threads 5 \
        --database-url postgresql://...

Queues N mails with `post_office.mail.send_many` (one bulk INSERT, not timed), then times one
`post_office.mail.send_queued(processes=1)`: post_office renders each mail and sends it over Django's
SMTP backend (smtplib, one command at a time) from THREADS_PER_PROCESS threads, each with its own
connection kept open for the batch. Prints ONE JSON line: {"bench": "post_office", "messages",
"threads", "sent", "failed", "seconds", "send_rate"}.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

PROJECT_ROOT = Path(__file__).resolve().parent.parent

BODY = ("Hello {name},\n\nThis is the monthly newsletter: what changed, what is coming, and how to "
        "reach us.\n\nThe team\n") * 4


def run_in_subprocess(smtp_url: str, database_url: str, messages: int, threads: int) -> dict:
    """Run the baseline in its own process (Django's settings are process-wide); its JSON line."""
    output = subprocess.run(
        [sys.executable, "-m", "bench.post_office_baseline", "--smtp-url", smtp_url, "--database-url", database_url,
         "--messages", str(messages), "--threads", str(threads)],
        cwd=PROJECT_ROOT, check=True, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    ).stdout
    return json.loads(output.strip().splitlines()[-1])


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="django-post-office baseline")
    parser.add_argument("--smtp-url", required=True)
    parser.add_argument("--database-url", required=True, help="postgresql://... or sqlite:////path")
    parser.add_argument("--messages", type=int, default=1500)
    parser.add_argument("--threads", type=int, default=5)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    smtp = urlsplit(args.smtp_url)
    os.environ.update({
        "DJANGO_SETTINGS_MODULE": "bench.post_office_settings",
        "POST_OFFICE_DATABASE_URL": args.database_url,
        "POST_OFFICE_SMTP_HOST": smtp.hostname or "127.0.0.1",
        "POST_OFFICE_SMTP_PORT": str(smtp.port or 25),
        "POST_OFFICE_THREADS": str(args.threads),
    })
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)
    from post_office import mail
    from post_office.models import Email

    mail.send_many([
        {"recipients": [f"user{i}@example.com"], "sender": "news@example.com", "subject": "Monthly newsletter",
         "message": BODY.format(name=f"User {i}"), "priority": "medium"}
        for i in range(args.messages)
    ])
    started = time.perf_counter()
    sent, failed, requeued = mail.send_queued(processes=1)
    seconds = time.perf_counter() - started
    if sent != args.messages or Email.objects.filter(status=0).count() != args.messages:
        raise RuntimeError(f"post_office sent {sent} of {args.messages} ({failed} failed, {requeued} requeued)")
    print(json.dumps({"bench": "post_office", "messages": args.messages, "threads": args.threads, "sent": sent,
                      "failed": failed, "seconds": round(seconds, 2), "send_rate": round(sent / seconds, 1)}),
          flush=True)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(PROJECT_ROOT))
    sys.exit(main())
