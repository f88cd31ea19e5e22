"""The loguru set-up: JSON line shape, stdlib interception, the PII policy on every record,
exceptions and tracebacks, context binding and per-request fields."""

from __future__ import annotations

import io
import json
import logging
import re
import uuid
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from enum import Enum

import pytest
from flask import Flask
from flask_login import LoginManager, UserMixin, login_required, login_user
from loguru import logger

from mailadmin.logging import bind_context, init_request_logging, reset_logging, setup_logging
from mailadmin.logging.policy import mask_text_for_level
from mailadmin.logging.stdlib import InterceptHandler
from mailadmin.pii import email_hash, get_active_policy, get_pii_log_fields
from mailadmin.settings import load_settings

ADDRESS = "john.doe@company.com"
SALT = "test-salt-for-logging"
ISO_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}\+00:00$")
PRODUCTION = {"APP_ENV": "production", "SECRET_KEY": "s" * 40, "MAILER_LOG_HASH_SALT": SALT,
              "PUBLIC_URL": "https://mail.example.com"}


@pytest.fixture(autouse=True)
def _fresh_logging() -> Iterator[None]:
    reset_logging()
    yield
    reset_logging()


def configure(level: str = "DEBUG", **env: str) -> io.StringIO:
    """Set up JSON logging (unless LOG_FORMAT says otherwise) into a buffer."""
    sink = io.StringIO()
    setup_logging(load_settings({"LOG_FORMAT": "json", "MAILER_LOG_HASH_SALT": SALT, **env}), sink=sink, level=level)
    return sink


def records(sink: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in sink.getvalue().splitlines()]


def only_record(sink: io.StringIO) -> dict:
    lines = records(sink)
    assert len(lines) == 1, lines
    return lines[0]


# --- JSON shape ------------------------------------------------------------------------------


def test_json_record_has_core_keys_and_extra_fields_at_top_level():
    sink = configure()
    logger.bind(campaign_id=7, queue_id=3, totals={"sent": 9, "failed": 1, "total": 10}).info("Campaign finished")

    record = only_record(sink)
    assert list(record)[:4] == ["timestamp", "level", "logger", "message"]
    assert record["level"] == "INFO"
    assert record["logger"] == __name__
    assert record["message"] == "Campaign finished"
    assert record["campaign_id"] == 7 and record["queue_id"] == 3
    assert record["totals"] == {"sent": 9, "failed": 1, "total": 10}
    assert "extra" not in record and "record" not in record and "exception" not in record


def test_timestamp_is_iso_8601_utc_with_microseconds():
    sink = configure()
    before = datetime.now(UTC)
    logger.info("tick")

    stamp = only_record(sink)["timestamp"]
    assert ISO_UTC.match(stamp), stamp
    parsed = datetime.fromisoformat(stamp)
    assert parsed.utcoffset() == timedelta(0)
    assert abs(parsed - before) < timedelta(seconds=5)


def test_every_line_is_one_valid_json_object_whatever_the_message():
    sink = configure()
    logger.info('multi\nline "quoted" {braces} \\ back')
    logger.info("ünïcødé 用户")
    logger.bind(weird="tab\there").warning("third")

    lines = sink.getvalue().splitlines()
    assert len(lines) == 3
    assert [json.loads(line)["message"] for line in lines][:2] == [
        'multi\nline "quoted" {braces} \\ back',
        "ünïcødé 用户",
    ]


class Colour(Enum):
    RED = "red"


@dataclass
class Opaque:
    name: str

    def __str__(self) -> str:
        return f"Opaque({self.name})"


def test_non_json_values_are_made_json_safe():
    sink = configure()
    when = datetime(2026, 11, 22, 10, 0, 0, 123456, tzinfo=UTC)
    ident = uuid.UUID("12345678-1234-5678-1234-567812345678")
    logger.bind(
        deferred_until=when,
        amount=Decimal("1.50"),
        ident=ident,
        colour=Colour.RED,
        tags={"a"},
        pair=(1, 2),
        blob=b"bytes",
        thing=Opaque("x"),
        ratio=float("nan"),
    ).info("values")

    record = only_record(sink)
    assert record["deferred_until"] == "2026-11-22T10:00:00.123456+00:00"
    assert record["amount"] == "1.50"
    assert record["ident"] == str(ident)
    assert record["colour"] == "red"
    assert record["tags"] == ["a"] and record["pair"] == [1, 2]
    assert record["blob"] == "bytes"
    assert record["thing"] == "Opaque(x)"
    assert record["ratio"] == "nan"


def test_an_extra_field_named_like_a_core_key_does_not_replace_it():
    sink = configure()
    logger.bind(message="bound", level="bound", logger="bound").info("real message")

    record = only_record(sink)
    assert record["message"] == "real message" and record["level"] == "INFO" and record["logger"] == __name__
    assert record["extra_message"] == "bound" and record["extra_level"] == "bound"


def test_a_callable_sink_gets_one_line_per_record():
    lines: list[str] = []
    setup_logging(load_settings({"LOG_FORMAT": "json"}), sink=lines.append)
    logger.info("one")
    logger.warning("two")

    assert [json.loads(line)["message"] for line in lines] == ["one", "two"]
    assert not any(line.endswith("\n") for line in lines)


def test_records_below_the_configured_level_are_not_written():
    sink = configure(level="INFO")
    logger.debug("hidden")
    logger.info("shown")
    assert [r["message"] for r in records(sink)] == ["shown"]


# --- the PII policy on records ---------------------------------------------------------------


def test_info_record_carries_domain_masked_and_hash_but_no_address():
    sink = configure()
    logger.bind(campaign_id=1, **get_pii_log_fields(ADDRESS, "INFO")).info(f"Email sent successfully to {ADDRESS}")

    record = only_record(sink)
    assert ADDRESS not in sink.getvalue()
    assert record["email_domain"] == "company.com"
    assert record["email_hash"] == email_hash(ADDRESS, SALT)
    assert record["email_masked"] == "jo***@company.com"
    # Default MAILER_LOG_PII_LEVEL=ERROR: a stray address in free text below ERROR keeps only its domain.
    assert record["message"] == "Email sent successfully to ***@company.com"


def test_pii_level_info_lets_info_records_carry_the_masked_address():
    sink = configure(MAILER_LOG_PII_LEVEL="INFO")
    logger.bind(**get_pii_log_fields(ADDRESS, "INFO")).info(f"Email sent successfully to {ADDRESS}")

    record = only_record(sink)
    assert record["email_masked"] == "jo***@company.com"
    assert record["email_hash"] == email_hash(ADDRESS, SALT)
    assert record["message"] == "Email sent successfully to jo***@company.com"
    assert ADDRESS not in sink.getvalue()


@pytest.mark.parametrize("method", ["warning", "error", "critical"])
def test_warning_and_above_never_carry_the_hash(method):
    sink = configure(MAILER_LOG_PII_LEVEL="INFO")
    fields = get_pii_log_fields(ADDRESS, "INFO")  # computed for the wrong level on purpose
    assert "email_hash" in fields
    getattr(logger.bind(**fields), method)("Failed to send email")

    record = only_record(sink)
    assert "email_hash" not in record
    assert record["email_masked"] == "jo***@company.com" and record["email_domain"] == "company.com"


def test_a_full_address_passed_as_the_masked_field_is_masked_anyway():
    sink = configure()
    logger.bind(email_masked=ADDRESS, email_domain="company.com").info("sent")
    record = only_record(sink)
    assert ADDRESS not in sink.getvalue() and record["email_domain"] == "company.com"


def test_a_warning_carries_the_masked_address_and_the_domain_only():
    sink = configure()  # MAILER_LOG_PII_LEVEL=ERROR
    logger.bind(**get_pii_log_fields(ADDRESS, "WARNING"), smtp_code=451).warning(f"Retrying {ADDRESS}")

    record = only_record(sink)
    assert {k for k in record if k.startswith("email")} == {"email_domain", "email_masked"}
    assert record["email_masked"] == "jo***@company.com"
    assert record["message"] == "Retrying ***@company.com"


def test_an_error_record_carries_the_masked_address_and_the_domain():
    sink = configure()
    logger.bind(campaign_id=2, smtp_code=550, error_class="permanent", **get_pii_log_fields(ADDRESS, "ERROR")).error(
        "Failed to send email"
    )

    record = only_record(sink)
    assert record["email_masked"] == "jo***@company.com"
    assert record["email_domain"] == "company.com"
    assert "email_hash" not in record and "email" not in record


@pytest.mark.parametrize(("full_emails", "shown"), [("true", ADDRESS), ("false", "***@company.com")])
def test_debug_keeps_the_full_address_only_when_full_emails_are_allowed(full_emails, shown):
    sink = configure(MAILER_LOG_FULL_EMAILS=full_emails)
    logger.bind(**get_pii_log_fields(ADDRESS, "DEBUG")).debug(f"Claimed {ADDRESS}")

    record = only_record(sink)
    assert record["message"] == f"Claimed {shown}"
    assert ("email" in record) is (full_emails == "true")
    if full_emails == "true":
        assert record["email"] == ADDRESS and record["email_masked"] == "jo***@company.com"
    else:
        assert ADDRESS not in sink.getvalue()


def test_full_emails_flag_never_reaches_info_records():
    sink = configure(MAILER_LOG_FULL_EMAILS="true", MAILER_LOG_PII_LEVEL="DEBUG")
    logger.bind(email=ADDRESS).info(f"Email sent successfully to {ADDRESS}")

    record = only_record(sink)
    assert ADDRESS not in sink.getvalue()
    assert "email" not in record
    assert record["email_masked"] == "jo***@company.com"


@pytest.mark.parametrize("field", ["email", "recipient_email", "to"])
def test_a_field_holding_a_full_address_is_replaced_by_the_allowed_pii_fields(field):
    sink = configure()
    logger.bind(**{field: ADDRESS}, recipient_id=5).info("Email sent successfully")

    record = only_record(sink)
    assert field not in record
    assert record["email_domain"] == "company.com"
    assert record["email_hash"] == email_hash(ADDRESS, SALT)
    assert record["recipient_id"] == 5


def test_a_legitimate_to_field_without_an_address_is_kept():
    sink = configure()
    logger.bind(to="queue-3").info("handed over")
    assert only_record(sink)["to"] == "queue-3"


def test_addresses_are_masked_in_nested_extra_values_and_keys():
    sink = configure()
    logger.bind(
        batch={"to": [ADDRESS, ("jane@example.org",)], "by_address": {"bob@example.net": 1}},
        note=f"cc {ADDRESS}",
    ).error("batch")

    record = only_record(sink)
    assert record["batch"] == {
        "to": ["jo***@company.com", ["ja***@example.org"]],
        "by_address": {"bo***@example.net": 1},
    }
    assert record["note"] == "cc jo***@company.com"
    for address in (ADDRESS, "jane@example.org", "bob@example.net"):
        assert address not in sink.getvalue()


def test_an_object_whose_str_shows_an_address_is_masked():
    sink = configure()
    logger.bind(recipient=Opaque(ADDRESS)).error("odd")
    assert only_record(sink)["recipient"] == "Opaque(jo***@company.com)"


@pytest.mark.parametrize("odd", ["user@bücher.de", "用户@例子.广告", '"john doe"@example.com', "JOHN+TAG@Company.COM"])
def test_odd_addresses_in_messages_are_masked(odd):
    sink = configure()
    logger.error(f"Failed to send email to {odd}.")
    assert odd not in sink.getvalue()
    assert "***@" in only_record(sink)["message"]


def test_text_without_addresses_is_left_alone():
    sink = configure()
    logger.bind(note="foo@ @bar").error("decorated with @property; 50% @ noon")
    record = only_record(sink)
    assert record["message"] == "decorated with @property; 50% @ noon"
    assert record["note"] == "foo@ @bar"


def test_mask_text_for_level_follows_the_active_policy():
    configure(MAILER_LOG_FULL_EMAILS="true")
    assert mask_text_for_level(f"to {ADDRESS}", "DEBUG") == f"to {ADDRESS}"
    assert mask_text_for_level(f"to {ADDRESS}", "INFO") == "to ***@company.com"
    assert mask_text_for_level(f"to {ADDRESS}", "ERROR") == "to jo***@company.com"


# --- exceptions and tracebacks ---------------------------------------------------------------


class SendError(Exception):
    pass


def deliver(address: str) -> None:
    raise SendError(f"550 mailbox unavailable: {address}")


def test_a_logged_exception_is_masked_in_its_value_and_traceback():
    sink = configure()
    try:
        deliver(ADDRESS)
    except SendError:
        logger.exception(f"Send crashed for {ADDRESS}")

    record = only_record(sink)
    assert ADDRESS not in sink.getvalue()
    assert record["level"] == "ERROR"
    exception = record["exception"]
    assert exception["type"] == f"{__name__}.SendError"
    assert exception["value"] == "550 mailbox unavailable: jo***@company.com"
    assert exception["traceback"].startswith("Traceback (most recent call last):")
    assert "in deliver" in exception["traceback"]
    assert "jo***@company.com" in exception["traceback"]


def test_a_chained_exception_is_masked_too():
    sink = configure()
    try:
        try:
            deliver(ADDRESS)
        except SendError as exc:
            raise RuntimeError("job failed") from exc
    except RuntimeError:
        logger.exception("Job crashed")

    traceback_text = only_record(sink)["exception"]["traceback"]
    assert "direct cause" in traceback_text
    assert ADDRESS not in sink.getvalue()


def checkout(count: int) -> None:
    api_token = "tok-" + "9f8e7d6c"
    recipient = "jane.roe@" + "example.org"
    raise RuntimeError(count + len(api_token) + len(recipient))


def log_checkout_failure() -> None:
    try:
        checkout(1)
    except RuntimeError:
        logger.exception("Checkout failed")


def test_production_writes_json_without_local_variables_in_tracebacks():
    settings = load_settings(PRODUCTION)
    assert settings.log_format == "json"
    sink = io.StringIO()
    setup_logging(settings, sink=sink)

    log_checkout_failure()

    record = only_record(sink)
    assert "in checkout" in record["exception"]["traceback"]
    assert "tok-9f8e7d6c" not in sink.getvalue()
    assert "jane.roe" not in sink.getvalue()


def test_production_text_logs_do_not_diagnose_local_variables_either():
    sink = io.StringIO()
    setup_logging(load_settings({**PRODUCTION, "LOG_FORMAT": "pretty"}), sink=sink)

    log_checkout_failure()

    text = sink.getvalue()
    assert "in checkout" in text and "RuntimeError" in text
    assert "tok-9f8e7d6c" not in text
    assert "ja***@example.org" not in text


def test_development_diagnose_shows_local_variables_with_addresses_masked():
    sink = io.StringIO()
    setup_logging(load_settings({"APP_ENV": "development", "LOG_FORMAT": "pretty"}), sink=sink)

    log_checkout_failure()

    text = sink.getvalue()
    assert "tok-9f8e7d6c" in text  # diagnose is on: local values are printed ...
    assert "ja***@example.org" in text  # ... and addresses among them masked (ERROR >= PII level)
    assert "jane.roe@example.org" not in text


# --- stdlib logging --------------------------------------------------------------------------


def test_stdlib_records_come_out_as_json_with_the_stdlib_logger_name_and_masked():
    sink = configure()
    logging.getLogger("rq.worker").warning("job for a@b.com")
    logging.getLogger("werkzeug").info('"%s %s HTTP/1.1" %s -', "GET", "/u?email=john%40example.com", 200)

    worker, werkzeug = records(sink)
    assert worker["logger"] == "rq.worker" and worker["level"] == "WARNING"
    assert worker["message"] == "job for ***@b.com"
    assert werkzeug["logger"] == "werkzeug"
    assert werkzeug["message"] == '"GET /u?email=***%40example.com HTTP/1.1" 200 -'


def test_stdlib_error_records_are_masked_per_their_level():
    sink = configure()
    logging.getLogger("rq_scheduler.scheduler").error("could not enqueue for a@b.com")
    record = only_record(sink)
    assert record["logger"] == "rq_scheduler.scheduler" and record["level"] == "ERROR"
    assert record["message"] == "could not enqueue for a***@b.com"


def test_stdlib_exception_tracebacks_are_masked():
    sink = configure()
    try:
        deliver(ADDRESS)
    except SendError:
        logging.getLogger("rq.worker").exception("Job failed for %s", ADDRESS)

    record = only_record(sink)
    assert record["logger"] == "rq.worker"
    assert record["message"] == "Job failed for jo***@company.com"
    assert record["exception"]["type"].endswith("SendError")
    assert ADDRESS not in sink.getvalue()


def test_a_non_propagating_stdlib_logger_with_its_own_handler_is_routed_through_loguru():
    # gunicorn sets up gunicorn.error this way before the app (and setup_logging) loads.
    stray = io.StringIO()
    gunicorn_error = logging.getLogger("gunicorn.error")
    gunicorn_error.addHandler(logging.StreamHandler(stray))
    gunicorn_error.propagate = False
    sink = configure()

    gunicorn_error.error("Worker for a@b.com failed")

    assert stray.getvalue() == ""
    assert only_record(sink)["logger"] == "gunicorn.error"


def test_stdlib_arguments_that_cannot_be_formatted_do_not_leak_to_stderr(capsys):
    sink = configure()
    # Called directly: pytest's own capture handler on the root logger would raise on this record.
    record = logging.LogRecord("rq.worker", logging.WARNING, __file__, 1, "job %d for a@b.com", ("x",), None)
    InterceptHandler().handle(record)

    written = only_record(sink)
    assert written["logger"] == "rq.worker"
    assert written["message"] == "job %d for ***@b.com (log arguments could not be formatted)"
    assert "a@b.com" not in capsys.readouterr().err


def test_sqlalchemy_info_chatter_is_not_routed_but_its_warnings_are():
    sink = configure()
    logging.getLogger("sqlalchemy.engine").info("SELECT 1")
    logging.getLogger("sqlalchemy.engine").warning("pool overflow")
    assert [r["message"] for r in records(sink)] == ["pool overflow"]


def test_python_warnings_such_as_sqlalchemy_ones_are_logged_masked():
    sink = configure()
    warnings.warn("relationship conflicts for a@b.com", UserWarning, stacklevel=1)

    record = only_record(sink)
    assert record["logger"] == "py.warnings" and record["level"] == "WARNING"
    assert "relationship conflicts for ***@b.com" in record["message"]


# --- set-up lifecycle ------------------------------------------------------------------------


def test_setup_logging_is_idempotent_and_keeps_one_sink_and_one_bridge():
    first = configure()
    second = configure()
    logger.info("once")
    logging.getLogger("rq.worker").info("also once")

    assert first.getvalue() == ""
    assert [r["message"] for r in records(second)] == ["once", "also once"]
    assert sum(isinstance(h, InterceptHandler) for h in logging.getLogger().handlers) == 1


def test_setup_logging_installs_the_settings_policy_for_get_pii_log_fields():
    configure(MAILER_LOG_PII_LEVEL="INFO")
    policy = get_active_policy()
    assert (policy.pii_level, policy.full_emails, policy.hash_salt) == ("INFO", False, SALT)
    assert get_pii_log_fields(ADDRESS)["email_hash"] == email_hash(ADDRESS, SALT)


def test_reset_logging_removes_the_sink_the_bridge_and_the_policy():
    sink = configure(MAILER_LOG_PII_LEVEL="INFO")
    reset_logging()
    logger.info("after reset")
    logging.getLogger("rq.worker").warning("after reset")

    assert sink.getvalue() == ""
    assert not any(isinstance(h, InterceptHandler) for h in logging.getLogger().handlers)
    assert get_active_policy().pii_level == "ERROR"


def test_pretty_text_appends_extras_as_key_value_and_masks():
    sink = io.StringIO()
    setup_logging(load_settings({"LOG_FORMAT": "pretty"}), sink=sink)
    logger.bind(campaign_id=3, defer_reason="rate_limit", to=ADDRESS).error(f"Campaign deferred for {ADDRESS}")

    line = sink.getvalue()
    assert "ERROR" in line and "Campaign deferred for jo***@company.com" in line
    assert "campaign_id=3" in line and "defer_reason=rate_limit" in line
    assert 'email_masked="jo***@company.com"' in line
    assert ADDRESS not in line
    assert "\x1b[" not in line  # not a terminal: no colours


# --- context ---------------------------------------------------------------------------------


def test_bind_context_adds_fields_to_records_inside_the_block_only():
    sink = configure()
    with bind_context(campaign_id=4, queue_id=8, job_id="job-1"):
        logger.info("inside")
        logging.getLogger("rq.worker").info("stdlib inside")
    logger.info("outside")

    inside, stdlib_inside, outside = records(sink)
    assert (inside["campaign_id"], inside["queue_id"], inside["job_id"]) == (4, 8, "job-1")
    assert stdlib_inside["job_id"] == "job-1"
    assert "campaign_id" not in outside


def test_bind_context_values_are_masked_too():
    sink = configure()
    with bind_context(actor=ADDRESS):
        logger.warning("paused")
    assert only_record(sink)["actor"] == "***@company.com"


# --- Flask requests --------------------------------------------------------------------------


@dataclass
class User(UserMixin):
    id: int


@pytest.fixture
def request_app() -> Flask:
    app = Flask(__name__)
    app.secret_key = "request-logging-test"
    login_manager = LoginManager(app)
    login_manager.user_loader(lambda user_id: User(int(user_id)))
    init_request_logging(app)

    @app.get("/hello")
    def hello():
        logger.info("inside the view")
        return "hi"

    @app.post("/login/<int:user_id>")
    def login(user_id: int):
        login_user(User(user_id))
        return "ok"

    @app.get("/mine")
    @login_required
    def mine():
        logger.info("own page")
        return "mine"

    return app


def test_each_request_gets_one_access_line_with_request_id(request_app):
    sink = configure()
    response = request_app.test_client().get(f"/hello?email={ADDRESS}&page=2", headers={"X-Request-ID": "req-abc.123"})

    assert response.headers["X-Request-ID"] == "req-abc.123"
    view, access = records(sink)
    assert view["message"] == "inside the view" and view["request_id"] == "req-abc.123" and view["user_id"] is None
    assert access["message"] == "Request handled"
    assert access["logger"] == "mailadmin.request" and access["level"] == "INFO"
    assert access["method"] == "GET" and access["path"] == "/hello" and access["status"] == 200
    assert isinstance(access["took_ms"], float) and access["took_ms"] >= 0
    assert access["request_id"] == "req-abc.123" and access["user_id"] is None
    assert ADDRESS not in sink.getvalue()


@pytest.mark.parametrize("header", [None, "", "has spaces", "x" * 200, "evil\r\nInjected: 1"])
def test_a_missing_or_unsafe_request_id_is_replaced_by_a_generated_one(request_app, header):
    sink = configure()
    # Through the WSGI environ: werkzeug's test client refuses to build a header with a newline.
    environ = {} if header is None else {"HTTP_X_REQUEST_ID": header}
    response = request_app.test_client().get("/hello", environ_overrides=environ)

    generated = response.headers["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", generated)
    assert {r["request_id"] for r in records(sink)} == {generated}


def test_records_of_an_authenticated_request_carry_the_user_id(request_app):
    client = request_app.test_client()
    client.post("/login/42")
    sink = configure()

    client.get("/mine")

    view, access = records(sink)
    assert view["user_id"] == 42 and access["user_id"] == 42
    assert access["path"] == "/mine" and access["status"] == 200


def test_an_unauthorised_request_is_logged_with_its_status(request_app):
    sink = configure()
    request_app.test_client().get("/mine")
    assert only_record(sink)["status"] == 401


def test_records_outside_a_request_have_no_request_fields(request_app):
    sink = configure()
    with request_app.app_context():
        logger.info("job work")
    record = only_record(sink)
    assert "request_id" not in record and "user_id" not in record


def test_init_request_logging_twice_still_logs_one_line_per_request(request_app):
    init_request_logging(request_app)
    sink = configure()
    request_app.test_client().get("/hello")
    assert [r["message"] for r in records(sink)] == ["inside the view", "Request handled"]
