"""`flask doctor` against real worker and scheduler processes: healthy, a SIGKILLed worker, a second live one."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from mailadmin import ops
from mailadmin.cli.doctor import EXIT_CRITICAL, EXIT_OK, EXIT_WARNING
from mailadmin.extensions import SEND_QUEUE, get_redis
from mailadmin.ops import CRITICAL, OK, WARNING
from mailadmin.settings import PROJECT_ROOT
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
