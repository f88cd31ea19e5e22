"""The `make run` supervisor stops everything it started: also a grandchild in a process group of
its own that ignores SIGINT and SIGTERM (as RQ's work horse does), whether its parent still runs
or died before the stop. Real processes; the supervisor gets SIGINT as from the terminal."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from mailadmin.settings import PROJECT_ROOT
from tests.support.processes import is_alive
from tests.support.waiting import wait_until

# A "worker" that forks a "horse" the way RQ does, once: own process group, deaf to SIGINT/SIGTERM.
WORKER = textwrap.dedent("""
    import os, signal, sys, time
    pid_file, parent_exits = sys.argv[1], sys.argv[2] == "yes"
    if not os.path.exists(pid_file):
        if os.fork() == 0:
            os.setpgrp()
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            with open(pid_file + ".tmp", "w") as f:
                f.write(str(os.getpid()))
            os.rename(pid_file + ".tmp", pid_file)
            while True:
                time.sleep(1)
        if parent_exits:
            os._exit(0)
    while True:
        time.sleep(1)
""")

SUPERVISOR = textwrap.dedent("""
    import os, sys
    from pathlib import Path
    from mailadmin.devtools import supervisor
    supervisor.STOP_GRACE_SECONDS = 1.0
    supervisor.Supervisor({"worker": sys.argv[1]}, dict(os.environ), Path.cwd()).run()
""")


@pytest.mark.parametrize("parent_exits", ["no", "yes"], ids=["worker-running", "worker-died-before"])
def test_ctrl_c_stops_a_horse_in_its_own_process_group_that_ignores_sigterm(tmp_path: Path, parent_exits: str):
    (tmp_path / "worker.py").write_text(WORKER)
    pid_file = tmp_path / "horse.pid"
    command = f"{sys.executable} {tmp_path / 'worker.py'} {pid_file} {parent_exits}"
    process = subprocess.Popen([sys.executable, "-c", SUPERVISOR, command], cwd=PROJECT_ROOT,
                               stdout=subprocess.DEVNULL, start_new_session=True)
    horse = None
    try:
        wait_until(pid_file.exists, 20, interval=0.1, message="the horse to start")
        horse = int(pid_file.read_text())
        os.killpg(process.pid, signal.SIGINT)  # Ctrl-C
        assert process.wait(timeout=10) == 0
        wait_until(lambda: not is_alive(horse), 5, interval=0.1, message="the horse to be stopped")
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        if horse and is_alive(horse):
            os.kill(horse, signal.SIGKILL)
