"""Debian's Postfix and Dovecot as child processes of the tests: what they need (the packages,
root), free ports on loopback, private directories, and ending a server with all its processes."""

import atexit
import ctypes
import os
import signal
import socket
import tempfile
import time
from pathlib import Path

INSTALL_HINT = "apt-get install postfix dovecot-core dovecot-imapd"
POSTFIX = "/usr/sbin/postfix"
DOVECOT = "/usr/sbin/dovecot"
REQUIRED_FILES = (POSTFIX, "/usr/lib/postfix/sbin/master", DOVECOT, "/usr/lib/dovecot/imap-login")
# Delivered mail belongs to Debian's "mail" user, which Postfix's virtual agent and Dovecot share.
MAIL_USER = "mail"


class MailServerUnavailable(RuntimeError):
    """Postfix or Dovecot cannot run here (not installed, not root)."""


# Instances still running when the interpreter exits (a test run interrupted between a start and
# its fixture's teardown) are stopped then.
running = set()
atexit.register(lambda: [server.stop() for server in list(running)])


def require_mail_servers():
    """Raise MailServerUnavailable saying what to install when a binary is missing."""
    missing = [path for path in REQUIRED_FILES if not os.path.exists(path)]
    if missing:
        raise MailServerUnavailable(
            f"Debian's Postfix and Dovecot are needed ({', '.join(missing)} missing): "
            f"{INSTALL_HINT}"
        )
    if os.geteuid() != 0:
        raise MailServerUnavailable("Postfix and Dovecot must be started as root here")


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def private_directory(prefix):
    """A fresh directory the servers' unprivileged users can enter (pytest's are 0700)."""
    directory = Path(tempfile.mkdtemp(prefix=prefix))
    directory.chmod(0o755)
    return directory


def die_with_parent():
    """In the child before exec: end when the test process ends, even if it is killed."""
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def wait_until(condition, timeout, what):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} within {timeout} s")
        time.sleep(0.02)


def listening(pid, port):
    """Whether process ``pid`` listens on 127.0.0.1:port (read from /proc: a probe is logged)."""
    wanted = f"0100007F:{port:04X}"
    inodes = {
        fields[9]
        for fields in (line.split() for line in Path("/proc/net/tcp").read_text().splitlines()[1:])
        if fields[1] == wanted and fields[3] == "0A"  # 0A: LISTEN
    }
    try:
        fds = list(Path(f"/proc/{pid}/fd").iterdir())
    except OSError:
        return False
    for fd in fds:
        try:
            if os.readlink(fd) in {f"socket:[{inode}]" for inode in inodes}:
                return True
        except OSError:
            continue
    return False


def process_group(pgid):
    """The live (not zombie) processes of a process group: a server's master and its children."""
    members = []
    for entry in Path("/proc").iterdir():
        try:
            state, _ppid, pgrp = (entry / "stat").read_text().rsplit(") ", 1)[1].split()[:3]
        except (OSError, IndexError, ValueError):
            continue
        if int(pgrp) == pgid and state != "Z":
            members.append(int(entry.name))
    return members


def end_process_group(pgid, timeout=5.0):
    """SIGTERM the group's leader (it ends its children), SIGKILL what outlives the timeout."""
    try:
        os.kill(pgid, signal.SIGTERM)
    except ProcessLookupError:
        try:
            os.killpg(pgid, signal.SIGTERM)  # the leader is gone: tell the rest
        except ProcessLookupError:
            return
    try:
        wait_until(lambda: not process_group(pgid), timeout, "the server ended")
    except TimeoutError:
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass
