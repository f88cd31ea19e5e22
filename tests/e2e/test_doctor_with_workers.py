"""`flask doctor` against real worker and scheduler processes: healthy, a SIGKILLed worker, a second live one,
and the settings in effect: the workers' limits, not the doctor's shell's, judge the quota."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from mailadmin import ops
from mailadmin.cli.doctor import EXIT_CRITICAL, EXIT_OK, EXIT_WARNING
from mailadmin.extensions import SEND_QUEUE, get_redis
from mailadmin.limits.send_pace import reserve_send_tokens
from mailadmin.ops import CRITICAL, OK, WARNING
from mailadmin.settings import PROJECT_ROOT
from mailadmin.settings_in_effect import read_publications
from tests.support.doctor import doctor, status_of
from tests.support.waiting import wait_until


def test_doctor_is_healthy_with_a_worker_and_a_scheduler_running(app, app_env, runner, engine_processes):
    engine_processes.worker()
    engine_processes.scheduler()
    wait_until(lambda: ops.list_scheduler_instances(get_redis()), message="the scheduler to register")

    code, output = doctor(runner)

    assert code == EXIT_OK, output
    assert all(status_of(output, key) == OK for key in ops.CHECK_KEYS), output
    assert "1 live worker" in output
    assert output.rstrip().endswith("Verdict: OK")

    # The real command line, as on-call types it, agrees (exit code included).
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    env.update(app_env)
    process = subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", "doctor", "--json"], cwd=PROJECT_ROOT,
                             env=env, capture_output=True, text=True, timeout=60)
    assert process.returncode == EXIT_OK, process.stdout + process.stderr
    report = json.loads(process.stdout.strip().splitlines()[-1])
    assert report["status"] == OK
    assert [c["key"] for c in report["checks"]] == list(ops.CHECK_KEYS)


def test_doctor_reports_a_worker_killed_with_sigkill_as_dead(app, runner, engine_processes):
    worker = engine_processes.worker()
    engine_processes.scheduler()
    code, output = doctor(runner, "--check", "workers")
    assert code == EXIT_OK and status_of(output, "workers") == OK, output

    worker.kill_hard()
    # RQ keeps the registration until its TTL expires: the doctor must not count it as alive.
    assert any(w.name == worker.name for w in ops.list_workers(get_redis()))

    code, output = doctor(runner)
    assert code == EXIT_CRITICAL, output
    assert status_of(output, "workers") == CRITICAL
    assert f"no live worker on {SEND_QUEUE}" in output
    assert worker.name in output and f"process {worker.pid} is gone" in output
    assert "playbook/ONCALL.md#worker-dead" in output


def test_a_second_live_worker_turns_a_dead_one_into_a_warning(app, runner, engine_processes):
    first = engine_processes.worker()
    engine_processes.worker()
    first.kill_hard()

    code, output = doctor(runner, "--check", "workers")

    assert status_of(output, "workers") == WARNING, output
    assert code == EXIT_OK
    assert doctor(runner, "--check", "workers", "--strict")[0] == EXIT_WARNING


def _published_by(*workers) -> None:
    """Wait until each worker process has published its settings."""
    names = {worker.name for worker in workers}
    wait_until(lambda: names <= {p.name for p in read_publications(get_redis())},
               message="the workers to publish their settings")


def test_the_doctor_judges_the_quota_by_the_workers_limit_and_shows_what_they_run_with(app, runner, engine_processes):
    # The on-call shell (this app) has the defaults; the workers run with the production values.
    assert app.config["SETTINGS"].smtp_max_per_hour == 100
    worker = engine_processes.worker(MAILER_SMTP_MAX_PER_HOUR="60", MAILER_CIRCUIT_BREAKER_THRESHOLD="3",
                                     MAILER_TRANSIENT_RETRY_DELAY_MINUTES="1")
    _published_by(worker)
    assert reserve_send_tokens(get_redis(), 60, 60).granted == 60  # the workers' quota used up

    code, output = doctor(runner)

    # 60 of the workers' 60 are used: not "OK 60/100".
    assert status_of(output, "rate_limit") == WARNING, output
    assert "quota used up (60/60 in the rolling hour) by the workers' MAILER_SMTP_MAX_PER_HOUR" in output
    # The settings in effect, and the disagreement with this shell, named with both values.
    assert status_of(output, "settings") == WARNING
    assert "this shell differs from the processes (1 worker)" in output
    assert "MAILER_SMTP_MAX_PER_HOUR 60 in the processes, 100 in this shell" in output
    assert "MAILER_SMTP_MAX_PER_HOUR: worker 60 · this shell 100 · default 100" in output
    assert "MAILER_CIRCUIT_BREAKER_THRESHOLD: worker 3 · this shell 10 · default 10" in output
    assert "MAILER_TRANSIENT_RETRY_DELAY_MINUTES: worker 1 · this shell 5 · default 5" in output
    assert "playbook/ONCALL.md#12-settings-in-effect" not in output  # a warning points to its symptom entry
    assert "playbook/ONCALL.md#processes-run-with-different-settings" in output

    report = json.loads(runner.invoke(args=["doctor", "--json"]).output.strip().splitlines()[-1])
    checks = {c["key"]: c for c in report["checks"]}
    assert checks["rate_limit"]["details"]["max"] == 60
    assert "MAILER_SMTP_MAX_PER_HOUR" in checks["settings"]["details"]["shell_differs"]


def test_two_workers_running_with_different_limits_are_a_warning_naming_both_values(app, runner, engine_processes):
    first = engine_processes.worker(MAILER_SMTP_MAX_PER_HOUR="60")
    second = engine_processes.worker(MAILER_SMTP_MAX_PER_HOUR="100")
    _published_by(first, second)

    code, output = doctor(runner, "--check", "settings", "--check", "rate_limit")

    assert status_of(output, "settings") == WARNING, output
    assert "the processes disagree (2 workers)" in output
    assert f"MAILER_SMTP_MAX_PER_HOUR worker 60 ({first.name}), 100 ({second.name})" in output
    # The strictest value bites first: the quota is judged by it.
    assert "0/60 in the rolling hour by the workers' MAILER_SMTP_MAX_PER_HOUR" in output
    assert code == EXIT_OK and doctor(runner, "--check", "settings", "--strict")[0] == EXIT_WARNING

    # Once the odd one is gone (stopped cleanly: it withdraws its settings), they agree again.
    first.terminate()
    assert first.wait(20) is not None
    code, output = doctor(runner, "--check", "settings")
    assert status_of(output, "settings") == OK, output
    assert "1 worker agree with this shell" in output


def test_processes_agreeing_with_each_other_and_the_shell_are_ok(app, runner, engine_processes):
    workers = [engine_processes.worker(), engine_processes.worker()]
    engine_processes.scheduler()
    _published_by(*workers)
    wait_until(lambda: any(p.kind == "scheduler" for p in read_publications(get_redis())),
               message="the scheduler to publish its settings")

    code, output = doctor(runner, "--check", "settings")

    assert status_of(output, "settings") == OK, output
    assert "2 workers, 1 scheduler agree with this shell" in output
