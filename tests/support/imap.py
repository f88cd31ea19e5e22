"""A real IMAP server for the bounce-mailbox tests: Debian's dovecot, started by the test with its own
configuration (loopback, a free port, plaintext auth, one passwd-file user, a maildir under tmp_path).

As root, dovecot refuses to open mail as uid 0; the maildir then lives in a chroot under tmp_path
owned by `nobody`, entered by dovecot as root (so the root-only parents of tmp_path need no change).
Without the binary the tests skip — except where MAILADMIN_REQUIRE_SYSTEM_PACKAGES (CI) or
MAILADMIN_REQUIRE_DOVECOT is set, where they fail.
"""

from __future__ import annotations

import imaplib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.system_packages import missing_system_package
from tests.support.waiting import wait_until

DOVECOT = "/usr/sbin/dovecot"
USER, PASSWORD = "bounces", "imap-test-password"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _config(root: Path, port: int, run_dir: Path) -> str:
    if os.geteuid() == 0:
        nobody = pwd.getpwnam("nobody")
        jail = root / "jail"
        (jail / "mail" / USER).mkdir(parents=True)
        os.chmod(root, 0o755)
        os.chmod(jail, 0o755)
        for path in (jail / "mail", jail / "mail" / USER):
            os.chown(path, nobody.pw_uid, nobody.pw_gid)
        mail = (f"valid_chroot_dirs = {root}\nmail_chroot = {jail}\nmail_location = maildir:/mail/%u\n"
                f"first_valid_uid = 1\n")
        userdb = f"uid={nobody.pw_uid} gid={nobody.pw_gid} home=/mail/%u"
        # The passwd file sits under tmp_path, whose parents only root may enter.
        users = "service auth {\n  user = root\n}\nservice auth-worker {\n  user = root\n}\n"
    else:
        me = pwd.getpwuid(os.getuid())
        (root / "mail" / USER).mkdir(parents=True)
        mail = f"mail_location = maildir:{root}/mail/%u\nfirst_valid_uid = {me.pw_uid}\n"
        userdb = f"uid={me.pw_uid} gid={me.pw_gid} home={root}/mail/%u"
        users = f"default_login_user = {me.pw_name}\ndefault_internal_user = {me.pw_name}\n"
    (root / "passwd").write_text(f"{USER}:{{PLAIN}}{PASSWORD}\n")
    return f"""protocols = imap
listen = 127.0.0.1
base_dir = {run_dir}
state_dir = {root}/state
log_path = {root}/dovecot.log
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
{mail}{users}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/passwd
}}
userdb {{
  driver = static
  args = {userdb}
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service pop3-login {{
  inet_listener pop3 {{
    port = 0
  }}
}}
"""


@dataclass
class DovecotServer:
    """A running dovecot; `url()` is what MAILER_BOUNCE_IMAP_URL gets."""

    port: int
    process: subprocess.Popen
    log: Path

    def url(self, query: str = "") -> str:
        return f"imap://{USER}:{PASSWORD}@127.0.0.1:{self.port}/INBOX" + (f"?{query}" if query else "")

    def client(self) -> imaplib.IMAP4:
        imap = imaplib.IMAP4("127.0.0.1", self.port, timeout=10)
        imap.login(USER, PASSWORD)
        return imap

    def deliver(self, raw: bytes, mailbox: str = "INBOX") -> None:
        """Put a message in the mailbox, as the MTA would (IMAP APPEND)."""
        imap = self.client()
        try:
            status, _ = imap.append(mailbox, None, None, raw)
            assert status == "OK", self.log.read_text()
        finally:
            imap.logout()

    def flags(self) -> list[str]:
        """The flags of every message in INBOX, in order."""
        imap = self.client()
        try:
            _, count = imap.select("INBOX", readonly=True)
            if count == [b"0"]:
                return []
            _, data = imap.fetch("1:*", "(FLAGS)")
            return [item.decode() for item in data if isinstance(item, bytes)]
        finally:
            imap.logout()


def _accepts_logins(port: int) -> bool:
    try:
        imap = imaplib.IMAP4("127.0.0.1", port, timeout=2)
    except OSError:
        return False
    try:
        imap.login(USER, PASSWORD)
    finally:
        imap.shutdown()
    return True


@pytest.fixture
def dovecot(tmp_path) -> Iterator[DovecotServer]:
    """A dovecot of this test's own, stopped (by its pid) at the end."""
    if not os.path.exists(DOVECOT):
        if os.environ.get("MAILADMIN_REQUIRE_DOVECOT"):
            pytest.fail("dovecot-imapd is not installed (apt-get install dovecot-imapd)")
        missing_system_package("dovecot-imapd", DOVECOT)
    root = tmp_path / "dovecot"
    root.mkdir()
    # Its sockets live in a short directory: a unix socket path may not exceed 107 bytes, and
    # tmp_path (under pytest-xdist especially) plus dovecot's own names would.
    run_dir = Path(tempfile.mkdtemp(prefix="dovecot-"))
    port = _free_port()
    config = root / "dovecot.conf"
    config.write_text(_config(root, port, run_dir))
    process = subprocess.Popen([DOVECOT, "-F", "-c", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    server = DovecotServer(port, process, root / "dovecot.log")
    try:
        wait_until(lambda: process.poll() is not None or _accepts_logins(port), timeout=20,
                   message="dovecot accepting logins")
        if process.poll() is not None:
            pytest.fail(f"dovecot did not start: {process.stderr.read().decode()}")
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        shutil.rmtree(root, ignore_errors=True)
        shutil.rmtree(run_dir, ignore_errors=True)
