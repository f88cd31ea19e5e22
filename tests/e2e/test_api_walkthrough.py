"""The README's curl walk-through of the REST API runs as written: its shell block, taken from the
README itself, against a live server with a real worker, as the demo manager of `make run`."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

from mailadmin.models import Campaign
from tests import factories
from tests.support.system_packages import missing_system_package

ROOT = Path(__file__).resolve().parents[2]
MARKER = "<!-- api-walkthrough -->"


def readme_walkthrough() -> str:
    """The shell block that follows the walk-through marker in README.md."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    match = re.search(re.escape(MARKER) + r"\s*```bash\n(.*?)```", text, re.DOTALL)
    assert match, "README.md lost its API walk-through block"
    return match.group(1)


def test_the_readme_walkthrough_runs_as_written(live_server, engine_processes, app_env, manager):
    if shutil.which("jq") is None:
        missing_system_package("jq", "jq")
    engine_processes.worker()
    environ = {**{k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}, **app_env,
               "BASE": live_server.url}
    result = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", readme_walkthrough()], cwd=ROOT, env=environ,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert json.loads(lines[0]) == {"created": 2, "updated": 0, "rejected": 0}
    assert json.loads(lines[1])["recipients"] == 2
    assert json.loads(lines[-1]) == {"status": "finished", "sent": 2, "failed": 0, "pending": 0}
    assert factories.fresh_campaign(Campaign.query.one().id).sent_count == 2
