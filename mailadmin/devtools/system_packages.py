"""`make system-packages` (a step of `make test` and of CI): the system packages some tests need,
installed with apt-get when this machine allows it (root, apt-get present), else named on one line.

    python3 mailadmin/devtools/system_packages.py [--dry-run]

Standard library only: it runs before the virtualenv exists. The install starts no daemon (a
policy-rc.d that refuses every start, removed afterwards unless it was there before) and postfix
is preselected "No configuration": only the binaries are wanted. When the packages cannot be
installed, make test goes on and the tests that need them skip — or fail where
MAILADMIN_REQUIRE_SYSTEM_PACKAGES is set (CI), as this step then does too.

Environment: MAILADMIN_INSTALL_SYSTEM_PACKAGES=0 only reports; MAILADMIN_SYSTEM_PATH replaces
where the programs are looked for (default: PATH and the sbin directories).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

SBIN_DIRS = ("/usr/sbin", "/sbin", "/usr/lib/postfix/sbin")
POLICY_RC_D = Path("/usr/sbin/policy-rc.d")
NO_DAEMON_STARTS = "#!/bin/sh\nexit 101\n"  # invoke-rc.d: "action forbidden by policy"
POSTFIX_PRESELECTION = "postfix postfix/main_mailer_type select No configuration\n"


@dataclass(frozen=True)
class SystemPackage:
    """A Debian package, the programs that show it is installed, and what needs it."""

    name: str
    programs: tuple[str, ...]
    needed_by: str


PACKAGES = (
    SystemPackage("chromium", ("chromium",), "the browser tests (Playwright drives /usr/bin/chromium)"),
    SystemPackage("jq", ("jq",), "the playbook's log filters, run against real log lines"),
    SystemPackage("dovecot-imapd", ("dovecot",), "the bounce-mailbox tests' IMAP server"),
    SystemPackage("postfix", ("smtp-sink",), "smtp-sink, the pipelining tests' and benchmarks' SMTP sink"),
    SystemPackage("gettext", ("msgfmt",), "msgfmt --check: the Russian catalogue complete, no fuzzy entry"),
    SystemPackage("prometheus", ("prometheus", "promtool"), "the metrics tests (a real Prometheus scrapes /metrics)"),
)


def search_path() -> str:
    """Where the packages' programs are looked for."""
    explicit = os.environ.get("MAILADMIN_SYSTEM_PATH")
    if explicit is not None:
        return explicit
    return os.pathsep.join([os.environ.get("PATH", ""), *SBIN_DIRS])


def missing_packages() -> list[SystemPackage]:
    """The packages with a program not found."""
    path = search_path()
    return [package for package in PACKAGES if any(shutil.which(program, path=path) is None
                                                   for program in package.programs)]


def why_not_installable() -> str | None:
    """Why this process cannot install packages, or None when it can."""
    if os.environ.get("MAILADMIN_INSTALL_SYSTEM_PACKAGES") == "0":
        return "MAILADMIN_INSTALL_SYSTEM_PACKAGES=0"
    if shutil.which("apt-get") is None:
        return "apt-get is not available here"
    if os.geteuid() != 0:
        return "this needs root"
    return None


def cannot_install_line(packages: list[SystemPackage], reason: str) -> str:
    """The one line that says exactly what to install, and why make test did not."""
    names = " ".join(package.name for package in packages)
    needed = "; ".join(f"{package.name}: {package.needed_by}" for package in packages)
    outcome = "fail (MAILADMIN_REQUIRE_SYSTEM_PACKAGES)" if required() else "skip meanwhile"
    return (f"system packages: install {names} (apt-get install -y {names}) — make test could not: {reason}. "
            f"Their tests {outcome} ({needed}).")


def required() -> bool:
    """Must every package be there (CI)? Then a missing one fails this step and its tests."""
    return bool(os.environ.get("MAILADMIN_REQUIRE_SYSTEM_PACKAGES"))


@contextlib.contextmanager
def no_daemon_started(dry_run: bool) -> Iterator[None]:
    """A policy-rc.d refusing every service start while packages install (unless one exists)."""
    if POLICY_RC_D.exists():
        yield
        return
    print(f"+ write {POLICY_RC_D} (exit 101: no service starts during the install)")
    if not dry_run:
        POLICY_RC_D.write_text(NO_DAEMON_STARTS)
        POLICY_RC_D.chmod(0o755)
    try:
        yield
    finally:
        print(f"+ remove {POLICY_RC_D}")
        if not dry_run:
            POLICY_RC_D.unlink(missing_ok=True)


def _run(command: list[str], dry_run: bool, stdin: str | None = None) -> int:
    print("+ " + " ".join(command) + (f" <<< {stdin.strip()!r}" if stdin else ""), flush=True)
    if dry_run:
        return 0
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    return subprocess.run(command, input=stdin, text=True, env=env, stdout=subprocess.DEVNULL).returncode


def install(packages: list[SystemPackage], dry_run: bool) -> str | None:
    """apt-get install `packages`; None when it worked, else what failed."""
    names = [package.name for package in packages]
    if "postfix" in names:
        _run(["debconf-set-selections"], dry_run, stdin=POSTFIX_PRESELECTION)
    with no_daemon_started(dry_run):
        for command in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", *names]):
            code = _run(command, dry_run)
            if code != 0:
                return f"{' '.join(command[:2])} failed (exit {code})"
    return None


def main(argv: list[str] | None = None) -> int:
    """Install what is missing when possible; 0 unless MAILADMIN_REQUIRE_SYSTEM_PACKAGES and still missing."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="print the commands instead of running them")
    dry_run = parser.parse_args(argv).dry_run
    missing = missing_packages()
    if not missing:
        print("system packages: " + ", ".join(package.name for package in PACKAGES) + " are installed")
        return 0
    reason = why_not_installable()
    if reason is None:
        print("system packages: installing " + " ".join(package.name for package in missing) + " with apt-get",
              flush=True)
        reason = install(missing, dry_run)
        missing = [] if dry_run else missing_packages()
        if missing and reason is None:
            reason = "apt-get installed them, yet their programs are not found"
    if missing:
        print(cannot_install_line(missing, reason), flush=True)
        return 1 if required() else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
