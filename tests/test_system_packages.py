"""`make test` on a new machine: its first step installs the system packages some tests need when it
can (root and apt-get; no daemon started, postfix unconfigured), and when it cannot, one line names
exactly the packages to install and `make test` goes on. The machine's packages are never touched:
a directory of stand-in programs plays the installed ones, PATH hides apt-get, `--dry-run` plans."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mailadmin.devtools.system_packages import PACKAGES, POLICY_RC_D
from mailadmin.settings import PROJECT_ROOT

SCRIPT = PROJECT_ROOT / "mailadmin" / "devtools" / "system_packages.py"


def _installed_except(tmp_path: Path, *missing: str) -> Path:
    """A directory holding every package's programs but those of `missing` (stand-ins)."""
    directory = tmp_path / "installed"
    directory.mkdir()
    for package in PACKAGES:
        if package.name not in missing:
            for program in package.programs:
                (directory / program).symlink_to("/bin/true")
    return directory


def _run_step(installed: Path, path: str, *args: str, **env: str) -> subprocess.CompletedProcess:
    environ = {key: value for key, value in os.environ.items() if not key.startswith("MAILADMIN_")}
    environ.update(PATH=path, MAILADMIN_SYSTEM_PATH=str(installed), **env)
    return subprocess.run([sys.executable, str(SCRIPT), *args], env=environ, capture_output=True, text=True,
                          timeout=60)


def test_without_apt_get_one_line_names_exactly_the_missing_packages_and_make_test_goes_on(tmp_path):
    installed = _installed_except(tmp_path, "chromium", "prometheus")

    result = _run_step(installed, path=str(tmp_path / "no-apt-here"))

    assert result.returncode == 0
    lines = result.stdout.splitlines()
    assert len(lines) == 1, result.stdout
    assert lines[0].startswith("system packages: install chromium prometheus (apt-get install -y chromium prometheus)")
    assert "apt-get is not available here" in lines[0]
    assert "skip meanwhile" in lines[0]


def test_in_ci_a_package_that_cannot_be_installed_fails_the_step(tmp_path):
    installed = _installed_except(tmp_path, "dovecot-imapd")

    result = _run_step(installed, path=str(tmp_path / "no-apt-here"), MAILADMIN_REQUIRE_SYSTEM_PACKAGES="1")

    assert result.returncode == 1
    assert "install dovecot-imapd (apt-get install -y dovecot-imapd)" in result.stdout
    assert "Their tests fail (MAILADMIN_REQUIRE_SYSTEM_PACKAGES)" in result.stdout


def test_with_every_package_installed_the_step_only_says_so(tmp_path):
    result = _run_step(_installed_except(tmp_path), path=str(tmp_path / "no-apt-here"))

    assert (result.returncode, result.stdout) == (
        0, "system packages: chromium, jq, dovecot-imapd, postfix, gettext, prometheus are installed\n"
    )


@pytest.mark.skipif(os.geteuid() != 0, reason="installing is planned only as root")
def test_as_root_with_apt_get_only_the_missing_packages_install_with_no_daemon_started(tmp_path):
    installed = _installed_except(tmp_path, "chromium", "postfix")
    apt = tmp_path / "apt"
    apt.mkdir()
    (apt / "apt-get").symlink_to("/bin/false")  # on PATH; the dry run never calls it

    result = _run_step(installed, str(apt), "--dry-run")

    assert result.returncode == 0, result.stdout + result.stderr
    plan = result.stdout.splitlines()
    assert plan[0] == "system packages: installing chromium postfix with apt-get"
    assert plan[1] == "+ debconf-set-selections <<< 'postfix postfix/main_mailer_type select No configuration'"
    apt_steps = ["+ apt-get update -qq", "+ apt-get install -y -qq chromium postfix"]
    if POLICY_RC_D.exists():  # someone's own policy stays as it is
        assert plan[2:] == apt_steps
    else:
        assert plan[2:] == [f"+ write {POLICY_RC_D} (exit 101: no service starts during the install)", *apt_steps,
                            f"+ remove {POLICY_RC_D}"]


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_test_installs_the_system_packages_first_then_spreads_the_suite_over_the_cores():
    result = subprocess.run(["make", "--no-print-directory", "-n", "test"], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60,
                            env={k: v for k, v in os.environ.items() if k not in ("PYTEST_ARGS", "MAKEFLAGS", "MAKELEVEL", "MFLAGS")})

    commands = result.stdout.splitlines()
    assert commands[0] == "python3 mailadmin/devtools/system_packages.py"
    pytest_runs = [line for line in commands if "-m pytest" in line]
    assert pytest_runs == [
        '.venv/bin/python -m pytest -n auto -m "not engine_timed" || status=$?; \\',
        ".venv/bin/python -m pytest -n 2 -m engine_timed || status=$?; \\",
    ]


def test_ci_installs_through_the_same_step():
    ci = (PROJECT_ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "make system-packages" in ci
    assert "apt-get install" not in ci and "policy-rc.d" not in ci  # no copy of the install step of its own
