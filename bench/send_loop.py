"""`make bench`: the send loop's throughput against a bare smtplib loop, on the same local SMTP sink,
and through a delaying relay.

    python bench/send_loop.py [--messages 5000] [--memory-recipients 100000] [--start-recipients 10000]

Prints ONE JSON line on stdout:

    {"bench": "send_loop", "messages": N, "send_rate": msg/s, "baseline_rate": msg/s, "ratio": ..., "sink": ...,
     "database": ..., "batch_size": ..., "start_request_ms": ..., "start_recipients": 10000,
     "worker_peak_rss_mb": ..., "worker_peak_rss_mb_small": ..., "memory_recipients": 100000}

* send path: a started campaign of N recipients run by the real RQ job (`send_campaign_slice`, in-process
  SimpleWorker) — claims, a rate-limit token per message (quota set out of reach), the per-message state
  query, rendering, real SMTP, outcome writes, JSON logging of every send (to /dev/null);
* baseline: smtplib sending one prebuilt message N times over one connection to the same sink, run
  before and after the send path (the faster of the two counts);
* sink: postfix's `smtp-sink` when installed (far faster than aiosmtpd, so the ratio measures our
  overhead), else the in-process CaptureSMTP — the line says which;
* start_request_ms: `start_campaign()` (with the per-user throttle) on a 10,000-recipient campaign;
* worker_peak_rss_mb: peak RSS of `python worker.py --burst` (and its work horses) sending a
  100,000-recipient campaign, next to the same for a 1,000-recipient one: flat means no loading
  all recipients;
* then one `send_loop_relay` line per relay variant (`--relay-messages 0` skips them): the send path
  through `bench/relay.py` (~20 ms of round trip) with 1 worker × each `--relay-connections` count
  on `smtp-sink` (PIPELINING) and on `bench/chunking_sink.py` (PIPELINING and CHUNKING), without
  PIPELINING and with 2 workers at the largest count: msg/s, the steady rate, CPU per message, the
  round trips per message the transports counted (from the workers' logs; assumed 2 or 4 for a
  client that does not count them), the physical limit they allow and the one-round-trip limit;
* then one `post_office_relay` line: django-post-office (`bench/post_office_baseline.py`) with 5
  threads through the same relay to the same smtp-sink, and the ratio of the 1 worker × 5
  connections line to it (`--post-office-messages 0` skips it).
  `--messages 0` skips the loopback line.

Database: BENCH_DATABASE_URL, else TEST_DATABASE_URL / DATABASE_URL (PostgreSQL: a scratch database is
created and dropped), else a temporary SQLite file. Redis: REDIS_URL, else an embedded redis-server
(a flushed scratch db index either way is NOT assumed: the bench uses its own embedded server unless
BENCH_REDIS_URL is given).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import smtplib
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import ExitStack, contextmanager
from pathlib import Path
from urllib.parse import urlsplit

PROJECT_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_ROOT))

import sqlalchemy as sa  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from bench.measure import process_cpu, run_campaign_with_workers  # noqa: E402

SMTP_SINK_CANDIDATES = ("/usr/sbin/smtp-sink", "/usr/lib/postfix/sbin/smtp-sink")


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


# --- infrastructure ----------------------------------------------------------------------


def find_smtp_sink() -> str | None:
    for candidate in (shutil.which("smtp-sink"), *SMTP_SINK_CANDIDATES):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


def _answers_smtp(port: int, process: subprocess.Popen) -> bool:
    """True once the SMTP server on `port` greets; RuntimeError when its process has exited."""
    if process.poll() is not None:
        raise RuntimeError("smtp-sink did not start")
    try:
        smtplib.SMTP("127.0.0.1", port, timeout=1).quit()
    except OSError:
        return False
    return True


@contextmanager
def smtp_sink(pipelining: bool = True):
    """(url, name) of a local SMTP sink: postfix's smtp-sink if installed, else CaptureSMTP."""
    from mailadmin.devtools.redis_server import free_port
    from tests.support.waiting import wait_until

    binary = find_smtp_sink()
    if binary:
        port = free_port()
        command = [binary]
        if os.geteuid() == 0:
            command += ["-u", "nobody"]  # smtp-sink refuses to keep root privileges
        if not pipelining:
            command += ["-p"]  # do not advertise PIPELINING
        command += [f"127.0.0.1:{port}", "1024"]
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_until(lambda: _answers_smtp(port, process), 10, message="smtp-sink to answer")
            yield f"smtp://127.0.0.1:{port}", "postfix smtp-sink"
        finally:
            process.terminate()
            process.wait(10)
        return
    from mailadmin.devtools.smtp_capture import CaptureSMTP

    capture = CaptureSMTP(keep_messages=False, pipelining=pipelining, chunking=pipelining).start()
    try:
        yield capture.url, "CaptureSMTP (aiosmtpd; smtp-sink not installed)"
    finally:
        capture.stop()


@contextmanager
def redis_url():
    explicit = os.environ.get("BENCH_REDIS_URL")
    if explicit:
        yield explicit
        return
    from mailadmin.devtools.redis_server import EmbeddedRedis

    with EmbeddedRedis() as server:
        yield server.url


@contextmanager
def database_url():
    """(url, label): a scratch PostgreSQL database when one is configured, else a temporary SQLite file."""
    from mailadmin.settings import _database_url

    raw = os.environ.get("BENCH_DATABASE_URL") or os.environ.get("TEST_DATABASE_URL") or os.environ.get("DATABASE_URL")
    if raw and _database_url(raw).startswith("postgresql"):
        base = _database_url(raw)
        name = f"mailadmin_bench_{uuid.uuid4().hex[:10]}"
        admin = sa.create_engine(base, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        try:
            yield make_url(base).set(database=name).render_as_string(hide_password=False), "postgresql"
        finally:
            with admin.connect() as conn:
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()
        return
    with tempfile.TemporaryDirectory(prefix="mailadmin-bench-") as directory:
        yield f"sqlite:///{directory}/bench.sqlite3", "sqlite"


# --- the measurements --------------------------------------------------------------------


def bench_env(db_url: str, redis: str, smtp: str) -> dict[str, str]:
    return {
        "APP_ENV": "development",
        "LOG_FORMAT": "json",
        "DATABASE_URL": db_url,
        "REDIS_URL": redis,
        "SMTP_URL": smtp,
        "MAIL_FROM": "Shop <news@shop.example.com>",
        "PUBLIC_URL": "https://mail.example.com",
        "SECRET_KEY": "bench-secret-key-" + "x" * 32,
        "MAILER_LOG_HASH_SALT": "bench-salt",
        "MAILER_SMTP_MAX_PER_HOUR": str(10**9),
        "MAILER_MAX_CAMPAIGN_RECIPIENTS": str(10**6),
        "MAILER_THROTTLE_CAMPAIGN_START_PER_HOUR": str(10**6),
    }


def create_campaign(owner_id: int, count: int, name: str) -> int:
    """A draft campaign with `count` recipients, made by the tests' factory (tests/factories.py)."""
    from bench.message_build import CATALOGUE_HTML, CATALOGUE_TEXT
    from mailadmin.extensions import db
    from mailadmin.models import User
    from tests import factories

    campaign = factories.create_campaign(
        db.session.get(User, owner_id),
        [f"customer{i}@example.com" for i in range(count)],
        name=name,
        subject="{{ name }}, our autumn catalogue is here",
        body_text=CATALOGUE_TEXT,
        body_html=CATALOGUE_HTML,
        recipient_name=lambda i: f"Customer Nummer {i}",
        fields={"company": "Müller & Söhne"},
    )
    if db.engine.dialect.name == "postgresql":
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(sa.text("ANALYZE recipients"))
    return campaign.id


def baseline_rate(smtp_url: str, data: bytes, count: int) -> float:
    """Bare smtplib: one prebuilt message, one connection, `count` sends."""
    parts = urlsplit(smtp_url)
    client = smtplib.SMTP(parts.hostname, parts.port)
    try:
        for i in range(50):
            client.sendmail("news@shop.example.com", [f"warmup{i}@example.com"], data)
        started = time.perf_counter()
        for i in range(count):
            client.sendmail("news@shop.example.com", [f"customer{i}@example.com"], data)
        return count / (time.perf_counter() - started)
    finally:
        client.quit()


def sample_message(campaign_id: int) -> bytes:
    """The bytes our builder makes for one recipient: the baseline sends exactly this."""
    from mailadmin.extensions import db, get_settings
    from mailadmin.mail.message import MessageBuilder
    from mailadmin.mail.templates import CampaignTemplates, recipient_fields
    from mailadmin.mail.unsubscribe import unsubscribe_url_for
    from mailadmin.models import Campaign

    settings = get_settings()
    campaign = db.session.get(Campaign, campaign_id)
    builder = MessageBuilder(
        campaign.id,
        settings.mail_from,
        CampaignTemplates(campaign.subject, campaign.body_text, campaign.body_html),
        unsubscribe_url_for(settings, campaign.id),
        list_name=campaign.name,
    )
    fields = recipient_fields("customer0@example.com", "Customer Nummer 0", {"company": "Müller & Söhne"})
    return builder.build(1, "customer0@example.com", fields).data


@contextmanager
def delaying_relay(upstream_url: str, delay_ms: float):
    """(URL, pid) of `bench.relay` (its own process) in front of `upstream_url`, `delay_ms` each way."""
    upstream = urlsplit(upstream_url)
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.relay", "--upstream", f"{upstream.hostname}:{upstream.port}",
         "--delay-ms", str(delay_ms)],
        cwd=PROJECT_ROOT, stdout=subprocess.PIPE, text=True,
    )
    try:
        line = process.stdout.readline()
        if not line.startswith("listening "):
            raise RuntimeError("the delaying relay did not start")
        yield f"smtp://127.0.0.1:{int(line.split()[1])}", process.pid
    finally:
        process.terminate()
        process.wait(10)


@contextmanager
def chunking_sink():
    """(url, pid) of `bench.chunking_sink` (its own process): a sink offering PIPELINING and CHUNKING."""
    process = subprocess.Popen([sys.executable, "-m", "bench.chunking_sink"], cwd=PROJECT_ROOT,
                               stdout=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline()
        if not line.startswith("listening "):
            raise RuntimeError("the chunking sink did not start")
        yield f"smtp://127.0.0.1:{int(line.split()[1])}"
    finally:
        process.terminate()
        process.wait(10)


# The sinks behind the relay: what each offers, and the round trips per message assumed for a client
# that does not count them (the code before the counters: 2 pipelined, 4 in lock-step).
RELAY_SINKS = {
    "smtp-sink": ("postfix smtp-sink: PIPELINING", 2),
    "smtp-sink -p": ("postfix smtp-sink -p: no PIPELINING", 4),
    "chunking": ("bench.chunking_sink: PIPELINING and CHUNKING", 2),
}


def relay_variant(env: dict[str, str], owner, relay: dict, *, sink: str, workers: int, connections: int,
                  messages: int) -> dict:
    """One send-path run through the delaying relay: msg/s, CPU per message, the round trips the client
    really used (counted by its transports) and the physical limit they allow."""
    url, relay_pid = relay["urls"][sink]
    env = {**env, "SMTP_URL": url, "MAILER_SMTP_CONNECTIONS": str(connections),
           "MAILER_SEND_PARALLEL_SLICES": str(workers)}
    campaign_id = create_campaign(owner.id, messages, f"relay {sink} {workers}x{connections}")
    relay_cpu = process_cpu(relay_pid)
    with tempfile.TemporaryDirectory(prefix="mailadmin-bench-logs-") as log_dir:
        run = run_campaign_with_workers(env, campaign_id, owner, workers, log_dir=Path(log_dir))
    # The proxy is bench tooling, not the product: its CPU is reported apart from the total.
    relay_cpu_ms = round((process_cpu(relay_pid) - relay_cpu) * 1000 / run.sent, 3)
    sink_name, assumed = RELAY_SINKS[sink]
    counted = run.round_trips_per_message
    round_trips = counted if counted is not None else assumed
    rtt = relay["rtt_ms"] / 1000
    limit = workers * connections / (round_trips * rtt)
    one_trip_limit = workers * connections / rtt
    result = {
        "bench": "send_loop_relay",
        "sink": sink_name,
        "workers": workers,
        "connections": connections,
        "messages": messages,
        "send_rate": round(run.rate, 1),
        "rtt_ms": relay["rtt_ms"],
        "round_trips_per_message": round(round_trips, 3),
        "round_trips_counted": counted is not None,
        "physical_limit": round(limit, 1),
        "share_of_limit": round(run.rate / limit, 2),
        "one_round_trip_limit": round(one_trip_limit, 1),
        "share_of_one_round_trip_limit": round(run.rate / one_trip_limit, 2),
        # Without the slice's start and the campaign's end (see bench/measure.py).
        "steady_rate": round(run.steady_rate, 1) if run.steady_rate else None,
        "steady_share_of_one_round_trip_limit": round(run.steady_rate / one_trip_limit, 2) if run.steady_rate else None,
        "cpu_ms_per_message": run.cpu_ms_per_message(),
        "relay_proxy_cpu_ms_per_message": relay_cpu_ms,
        "baseline_rate": relay["baseline_rate"],
        "ratio": round(run.rate / relay["baseline_rate"], 1),
        "baseline": "smtplib, one connection, same relay",
    }
    log(f"relay, {sink_name}, {workers} worker(s) x {connections} connection(s): {run.rate:.0f} msg/s, "
        f"{round_trips:.2f} round trips per message ({'counted' if counted is not None else 'assumed'}): "
        f"{result['share_of_limit']:.0%} of {limit:.0f}, {result['share_of_one_round_trip_limit']:.0%} of the "
        f"one-round-trip limit {one_trip_limit:.0f} (steady: {result['steady_rate']} msg/s, "
        f"{result['steady_share_of_one_round_trip_limit']}); {result['cpu_ms_per_message']}; "
        f"proxy {relay_cpu_ms} ms CPU/message")
    return result


def relay_benchmarks(stack: ExitStack, env: dict[str, str], owner, data: bytes, args) -> list[dict]:
    """The relay variants: 1 worker × each of `--relay-connections` on each sink, smtp-sink without
    PIPELINING and 2 workers at the largest count."""
    from bench.relay import measure_round_trip_ms

    upstreams = {
        "smtp-sink": stack.enter_context(smtp_sink())[0],
        "smtp-sink -p": stack.enter_context(smtp_sink(pipelining=False))[0],
        "chunking": stack.enter_context(chunking_sink()),
    }
    relay = {"urls": {name: stack.enter_context(delaying_relay(url, args.relay_delay_ms))
                      for name, url in upstreams.items()}}
    parts = urlsplit(relay["urls"]["smtp-sink"][0])
    relay["rtt_ms"] = round(measure_round_trip_ms(parts.hostname, parts.port), 2)
    relay["baseline_rate"] = round(
        baseline_rate(relay["urls"]["smtp-sink"][0], data, max(20, args.relay_messages // 20)), 1)
    log(f"relay: {relay['rtt_ms']} ms round trip; smtplib over one connection: {relay['baseline_rate']} msg/s")
    counts = [int(count) for count in args.relay_connections.split(",")]
    wanted = set(args.relay_sinks.split(","))
    variants = [
        *(("smtp-sink", 1, count) for count in counts),
        ("smtp-sink -p", 1, max(counts)),
        ("smtp-sink", 2, max(counts)),
        *(("chunking", 1, count) for count in counts),
    ]
    lines = [
        relay_variant(env, owner, relay, sink=sink, workers=workers, connections=count,
                      messages=max(200, args.relay_messages * workers * count // 10))
        for sink, workers, count in variants
        if sink in wanted
    ]
    if "smtp-sink" in wanted and args.post_office_messages:
        lines.append(post_office_line(stack, relay, lines, args))
    return lines


def post_office_line(stack: ExitStack, relay: dict, lines: list[dict], args) -> dict:
    """django-post-office with 5 threads through the same relay to the same smtp-sink, next to the
    send loop's 1 worker × 5 connections of this run (`bench/post_office_baseline.py`)."""
    from bench.post_office_baseline import run_in_subprocess

    database, _ = stack.enter_context(database_url())  # a scratch database of its own
    result = run_in_subprocess(relay["urls"]["smtp-sink"][0], database, args.post_office_messages, 5)
    ours = next((line["send_rate"] for line in lines if line["sink"] == RELAY_SINKS["smtp-sink"][0]
                 and line["workers"] == 1 and line["connections"] == 5), None)
    line = {
        "bench": "post_office_relay", "sink": RELAY_SINKS["smtp-sink"][0], "threads": result["threads"],
        "messages": result["sent"], "send_rate": result["send_rate"], "rtt_ms": relay["rtt_ms"],
        "send_loop_rate_1x5": ours, "ratio": round(ours / result["send_rate"], 2) if ours else None, "goal_ratio": 3.5,
    }
    log(f"relay, django-post-office, 5 threads: {result['send_rate']:.0f} msg/s; the send loop, 1 worker x 5 "
        f"connections: {ours} msg/s ({line['ratio']} x)")
    return line


def start_request_ms(owner, count: int) -> float:
    """Time of start_campaign() (throttle included) for a campaign of `count` recipients."""
    from mailadmin.extensions import db
    from mailadmin.models import Campaign
    from mailadmin.services.campaigns import cancel_campaign, start_campaign

    campaign_id = create_campaign(owner.id, count, f"start {count}")
    campaign = db.session.get(Campaign, campaign_id)
    started = time.perf_counter()
    start_campaign(campaign, owner)
    elapsed = (time.perf_counter() - started) * 1000
    cancel_campaign(db.session.get(Campaign, campaign_id), owner)  # measured, not to be sent
    return elapsed


def worker_peak_rss_mb(env: dict[str, str], owner_id: int, count: int) -> float:
    """Peak RSS (MB) of `python worker.py --burst` and its work horses sending a `count`-recipient campaign."""
    from mailadmin.extensions import db, get_redis
    from mailadmin.models import Campaign, User
    from mailadmin.services.campaigns import start_campaign

    campaign_id = create_campaign(owner_id, count, f"memory {count}")
    start_campaign(db.session.get(Campaign, campaign_id), db.session.get(User, owner_id), enforce_throttle=False)
    get_redis().delete("mailadmin:ratelimit:smtp")
    # The worker logs as in production: JSON at INFO (development would add a DEBUG line per message).
    environ = {**os.environ, **env, "APP_ENV": "production"}
    with open(os.devnull, "wb") as devnull:
        # A fresh process: RUSAGE_CHILDREN is the max over everything waited for so far,
        # so each measurement runs in its own child that reports its children's peak.
        script = (
            "import resource, subprocess, sys;"
            "subprocess.run([sys.executable, 'worker.py', '--burst'], check=True,"
            " stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL);"
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
        )
        output = subprocess.run(
            [sys.executable, "-c", script], cwd=PROJECT_ROOT, env=environ, check=True,
            stdout=subprocess.PIPE, stderr=devnull,
        ).stdout
    db.session.expire_all()
    campaign = db.session.get(Campaign, campaign_id)
    if campaign.status != "finished":
        raise RuntimeError(f"memory campaign ended {campaign.status}")
    return int(output.strip()) / 1024


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="send loop benchmark")
    parser.add_argument("--messages", type=int, default=5000, help="0 skips the loopback line")
    parser.add_argument("--memory-recipients", type=int, default=100_000, help="0 skips the memory run")
    parser.add_argument("--start-recipients", type=int, default=10_000)
    parser.add_argument("--relay-messages", type=int, default=3000, help="0 skips the relay variants")
    parser.add_argument("--relay-delay-ms", type=float, default=10.0, help="delay the relay adds each way")
    parser.add_argument("--relay-connections", default="1,5,10", help="connection counts, comma-separated")
    parser.add_argument("--post-office-messages", type=int, default=600,
                        help="django-post-office through the relay (0 skips it)")
    parser.add_argument("--relay-sinks", default=",".join(RELAY_SINKS),
                        help=f"which relay sinks, comma-separated: {', '.join(RELAY_SINKS)}")
    return parser.parse_args(argv)


def memory_figures(env: dict[str, str], owner_id: int, recipients: int) -> tuple[float | None, float | None]:
    """Worker peak RSS (MB) for 1,000 recipients and for `recipients` (0: not measured)."""
    if not recipients:
        return None, None
    small = worker_peak_rss_mb(env, owner_id, 1000)
    log(f"worker peak RSS, 1,000 recipients: {small:.0f} MB")
    peak = worker_peak_rss_mb(env, owner_id, recipients)
    log(f"worker peak RSS, {recipients:,} recipients: {peak:.0f} MB")
    return small, peak


def loopback_line(env: dict[str, str], owner, campaign_id: int, smtp: str, data: bytes, args, sink_name: str,
                  db_label: str) -> dict:
    """The send path on loopback against bare smtplib into the same sink; start request; worker memory."""
    from flask import current_app

    settings = current_app.config["SETTINGS"]
    # The baseline runs before and after the send path and the faster run counts: on a shared
    # machine this keeps a momentary slowdown from flattering the ratio.
    before = baseline_rate(smtp, data, args.messages)
    run = run_campaign_with_workers(env, campaign_id, owner, 1)
    rate = run.rate
    after = baseline_rate(smtp, data, args.messages)
    base = max(before, after)
    log(f"baseline: {before:.0f} / {after:.0f} msg/s (before / after); send path: {rate:.0f} msg/s, "
        f"CPU ms per message: {run.cpu_ms_per_message()}")
    start_ms = start_request_ms(owner, args.start_recipients) if args.start_recipients else None
    if start_ms is not None:
        log(f"start request ({args.start_recipients} recipients): {start_ms:.1f} ms")
    small, peak = memory_figures(env, owner.id, args.memory_recipients)
    return {
        "bench": "send_loop",
        "messages": args.messages,
        "send_rate": round(rate, 1),
        "baseline_rate": round(base, 1),
        "ratio": round(rate / base, 2),
        "sink": sink_name,
        "database": db_label,
        "batch_size": settings.send_batch_size,
        "connections": settings.smtp_connections,
        "cpu_ms_per_message": run.cpu_ms_per_message(),
        "start_request_ms": round(start_ms, 1) if start_ms is not None else None,
        "start_recipients": args.start_recipients,
        "worker_peak_rss_mb": round(peak, 1) if peak is not None else None,
        "worker_peak_rss_mb_small": round(small, 1) if small is not None else None,
        "memory_recipients": args.memory_recipients,
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    from mailadmin import create_app
    from mailadmin.extensions import db
    from mailadmin.logging import reset_logging, setup_logging
    from tests.factories import create_user

    with ExitStack() as stack:
        smtp, sink_name = stack.enter_context(smtp_sink())
        redis = stack.enter_context(redis_url())
        db_url, db_label = stack.enter_context(database_url())
        env = bench_env(db_url, redis, smtp)
        log(f"sink: {sink_name}; database: {db_label}; redis: {redis}")
        app = create_app({**env, "SETUP_LOGGING": False})
        devnull = stack.enter_context(open(os.devnull, "w"))
        # Production-like logging: one JSON "Email sent successfully" record per message.
        setup_logging(app.config["SETTINGS"], sink=devnull, level="INFO")
        stack.callback(reset_logging)  # before devnull closes (ExitStack unwinds in reverse)
        stack.enter_context(app.app_context())
        db.create_all()
        owner = create_user("bench@example.com", "manager", "bench-password-123")

        campaign_id = create_campaign(owner.id, args.messages or 1, "send loop")
        data = sample_message(campaign_id)
        lines = [loopback_line(env, owner, campaign_id, smtp, data, args, sink_name, db_label)] if args.messages else []
        lines += relay_benchmarks(stack, env, owner, data, args) if args.relay_messages else []
        db.session.remove()
        db.engine.dispose()
    for line in lines:
        print(json.dumps(line), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
