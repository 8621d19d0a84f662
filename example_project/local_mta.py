"""Debian's real Postfix and Dovecot on loopback: private instances for the tests and the demo.

Each instance keeps everything in a temporary directory of its own (configuration, queue, log,
sockets, mailboxes), listens on free ports of 127.0.0.1 and delivers nowhere but into its own
mailboxes, so two test runs can run side by side and the system's mail services are not touched.

``LocalDovecot`` holds the users' Maildirs, serves them over IMAP (STARTTLS and implicit TLS) and
answers Postfix's SASL questions. ``LocalPostfix`` receives on a port-25 style listener and on
submission ports (STARTTLS or implicit TLS, AUTH against Dovecot, ``reject_sender_login_mismatch``),
delivers to the Dovecot mailboxes with its ``virtual`` agent, sends real DSNs for unknown users and
logs to a file the tests read. Both need root (Postfix's master starts as root and drops to the
``postfix`` user) and the Debian packages postfix, dovecot-core and dovecot-imapd.
"""

import atexit
import ctypes
import grp
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from email import message_from_bytes, policy
from pathlib import Path

from example_project.local_smtp import make_certificates

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
_running = set()
atexit.register(lambda: [server.stop() for server in list(_running)])


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


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _private_directory(prefix):
    """A fresh directory the servers' unprivileged users can enter (pytest's are 0700)."""
    directory = Path(tempfile.mkdtemp(prefix=prefix))
    directory.chmod(0o755)
    return directory


def _die_with_parent():
    """In the child before exec: end when the test process ends, even if it is killed."""
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _wait_until(condition, timeout, what):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} within {timeout} s")
        time.sleep(0.02)


def _accepts(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
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


def _end_process_group(pgid, timeout=5.0):
    """SIGTERM the group's leader (it ends its children), SIGKILL what outlives the timeout."""
    try:
        os.kill(pgid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    try:
        _wait_until(lambda: not process_group(pgid), timeout, "the server ended")
    except TimeoutError:
        os.killpg(pgid, signal.SIGKILL)


class LocalDovecot:
    """Dovecot with the given users, their Maildirs, IMAP on loopback and a SASL socket.

    ``users`` maps addresses (``editor@example.test``) to passwords (no ``:`` or newline).
    ``certificates`` are make_certificates() paths for "localhost"; a fresh CA is made if omitted.
    """

    def __init__(self, users, certificates=None):
        self.users = dict(users)
        self.certificates = certificates
        self.directory = None
        self.process = None

    def start(self):
        require_mail_servers()
        self.directory = _private_directory("own-smtp-dovecot-")
        if self.certificates is None:
            self.certificates = make_certificates(self.directory / "certs")
        mail = pwd.getpwnam(MAIL_USER)
        self.mail_uid, self.mail_gid = mail.pw_uid, mail.pw_gid
        self.mail_root = self.directory / "mail"
        self.mail_root.mkdir()
        os.chown(self.mail_root, self.mail_uid, self.mail_gid)
        self.auth_socket = self.directory / "auth-postfix"
        self.log_file = self.directory / "dovecot.log"
        self._write_users()
        for _attempt in range(3):
            self.imap_port, self.imaps_port = _free_port(), _free_port()
            self._write_config()
            self.process = subprocess.Popen(
                [DOVECOT, "-F", "-c", str(self.directory / "dovecot.conf")],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
            _running.add(self)
            try:
                _wait_until(self._ready, 10, "Dovecot did not listen")
                return self
            except TimeoutError:
                self._end()
                error = self.process.stderr.read().decode(errors="replace") + self.log_text()
                if "Address already in use" not in error:
                    self.stop()
                    raise RuntimeError(f"Dovecot did not start: {error}") from None
        self.stop()
        raise RuntimeError("Dovecot found no free ports")

    def _ready(self):
        if self.process.poll() is not None:
            raise TimeoutError("Dovecot ended")
        return self.auth_socket.exists() and _accepts(self.imap_port) and _accepts(self.imaps_port)

    def set_password(self, address, password):
        """Change a user's password; it counts from the next login on (this takes up to 1 s)."""
        self.users[address] = password
        self._write_users()
        # Dovecot looks at the file's mtime at most once per second: let that second pass.
        time.sleep(1.01 - time.time() % 1)

    def _write_users(self):
        users = self.directory / "users"
        # Dovecot re-reads the file when its mtime (in seconds) or size changed.
        stamp = max(time.time(), users.stat().st_mtime + 1) if users.exists() else time.time()
        lines = [f"{address}:{{PLAIN}}{password}\n" for address, password in self.users.items()]
        users.write_text("".join(lines))
        os.utime(users, (stamp, stamp))

    def _write_config(self):
        name = self.directory.name
        dh = Path("/usr/share/dovecot/dh.pem")
        (self.directory / "dovecot.conf").write_text(
            f"""\
instance_name = {name}
base_dir = {self.directory}/run
state_dir = {self.directory}/state
log_path = {self.log_file}
protocols = imap
listen = 127.0.0.1
default_login_user = dovenull
default_internal_user = dovecot
first_valid_uid = {self.mail_uid}
ssl = yes
ssl_cert = <{self.certificates["cert"]}
ssl_key = <{self.certificates["key"]}
{f"ssl_dh = <{dh}" if dh.exists() else ""}
auth_mechanisms = plain login
# No tarpit after a wrong password, no growing penalty per IP: tests try them on purpose.
auth_failure_delay = 0
service anvil {{
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
mail_location = maildir:{self.mail_root}/%d/%n/Maildir
passdb {{
  driver = passwd-file
  args = scheme=PLAIN {self.directory}/users
}}
userdb {{
  driver = static
  args = uid={self.mail_uid} gid={self.mail_gid} home={self.mail_root}/%d/%n
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {self.imap_port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {self.imaps_port}
    ssl = yes
  }}
}}
service auth {{
  unix_listener {self.auth_socket} {{
    mode = 0660
    user = postfix
    group = postfix
  }}
}}
"""
        )

    @property
    def ca_file(self):
        return str(self.certificates["ca"])

    def maildir(self, address):
        local, domain = address.lower().rsplit("@", 1)
        return self.mail_root / domain / local / "Maildir"

    def messages(self, address):
        """The messages in the address's inbox, read from its Maildir, oldest first."""
        path = self.maildir(address)
        files = [
            file
            for sub in ("new", "cur")
            if (path / sub).exists()
            for file in (path / sub).iterdir()
        ]
        files.sort(key=lambda file: (file.stat().st_mtime, file.name))
        return [message_from_bytes(file.read_bytes(), policy=policy.default) for file in files]

    def wait_for_messages(self, address, count=1, timeout=10.0, matching=None):
        """Wait until the inbox holds ``count`` messages (those ``matching(message)`` if given)."""
        found = []

        def arrived():
            found[:] = [m for m in self.messages(address) if matching is None or matching(m)]
            return len(found) >= count

        _wait_until(arrived, timeout, f"{count} message(s) did not arrive for {address}")
        return found

    def log_text(self):
        return self.log_file.read_text(errors="replace") if self.log_file.exists() else ""

    def _end(self):
        if self.process is not None:
            _end_process_group(self.process.pid)
            self.process.wait()

    def stop(self):
        _running.discard(self)
        self._end()
        if self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


# Every Postfix service the instance needs, none chrooted (the chroot would need copies of
# /etc files); the listeners are added in front.
_MASTER_SERVICES = """\
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
virtual   unix  -       n       n       -       -       virtual
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""

_QUEUE_DIRECTORIES = (
    "active bounce corrupt defer deferred flush hold incoming private saved trace".split()
)

# What makes the submission listeners submission ports (as in Debian's master.cf template).
SUBMISSION_CF = {
    "smtpd_tls_security_level": "encrypt",
    "smtpd_sasl_auth_enable": "yes",
    "smtpd_tls_auth_only": "yes",
    "smtpd_client_restrictions": "permit_sasl_authenticated,reject",
    "smtpd_sender_restrictions": "reject_sender_login_mismatch",
    "smtpd_relay_restrictions": "permit_sasl_authenticated,reject",
}


class LocalPostfix:
    """Postfix on loopback, authenticating against and delivering into a running LocalDovecot.

    Ports: ``smtp_port`` (port-25 style: no AUTH, STARTTLS offered, mail for the test domains
    only), ``submission_port`` (STARTTLS required, then AUTH; ``reject_sender_login_mismatch``)
    and ``submissions_port`` (the same with implicit TLS). Mail for a Dovecot user is delivered to
    their Maildir. Mail for an unknown user of ``domain`` is refused at RCPT TO (550 5.1.1); mail
    for an unknown user of ``remote_domain`` is accepted like mail for another provider's domain
    and bounced later with a real DSN to the envelope sender.

    ``main_cf`` overrides main.cf parameters (e.g. ``smtpd_client_message_rate_limit="5"``),
    ``submission_cf`` the submission listeners' ``-o`` options (SUBMISSION_CF).
    ``sender_logins`` maps sender addresses to the logins that may use them, in addition to every
    user owning their own address.
    """

    def __init__(
        self,
        dovecot,
        *,
        domain="example.test",
        remote_domain="remote.test",
        main_cf=None,
        submission_cf=None,
        sender_logins=None,
    ):
        self.dovecot = dovecot
        self.domain = domain
        self.remote_domain = remote_domain
        self.main_cf = dict(main_cf or {})
        self.submission_cf = {**SUBMISSION_CF, **(submission_cf or {})}
        self.sender_logins = dict(sender_logins or {})
        self.directory = None
        self.master_pid = None

    def start(self):
        require_mail_servers()
        self.directory = _private_directory("own-smtp-postfix-")
        self.config = self.directory / "etc"  # apart from the queue, which "postfix check" walks
        self.config.mkdir()
        self._make_queue()
        self.log_file = self.directory / "postfix.log"
        self._write_maps()
        for _attempt in range(3):
            self.smtp_port, self.submission_port, self.submissions_port = (
                _free_port(),
                _free_port(),
                _free_port(),
            )
            self._write_config()
            self._age_config()
            started = self._postfix("start")
            if started.returncode == 0:
                _running.add(self)
                self.master_pid = int((self.queue / "pid" / "master.pid").read_text().split()[0])
                _wait_until(self._ready, 10, "Postfix did not listen")
                return self
            if "Address already in use" not in started.stderr + self.log_text():
                error = started.stderr + self.log_text()
                self.stop()
                raise RuntimeError(f"Postfix did not start: {error}")
        self.stop()
        raise RuntimeError("Postfix found no free ports")

    def _make_queue(self):
        """Postfix's queue layout (what "postfix start" would make), and skip its checks.

        The checks of "postfix start" (post-install create-missing, postfix check) take seconds;
        the layout they make is this, owned by mail_owner and setgid_group.
        """
        postfix, postdrop = pwd.getpwnam("postfix").pw_uid, grp.getgrnam("postdrop").gr_gid
        self.queue.mkdir()
        (self.queue / "pid").mkdir()
        for name in _QUEUE_DIRECTORIES:
            (self.queue / name).mkdir()
            os.chown(self.queue / name, postfix, 0)
            (self.queue / name).chmod(0o700)
        for name, mode in (("public", 0o710), ("maildrop", 0o730)):
            (self.queue / name).mkdir()
            os.chown(self.queue / name, postfix, postdrop)
            (self.queue / name).chmod(mode)
        (self.directory / "data").mkdir(mode=0o700)
        os.chown(self.directory / "data", postfix, 0)
        (self.queue / "quick-start").touch()

    @property
    def queue(self):
        return self.directory / "spool"

    def _ready(self):
        return all(
            _accepts(port) for port in (self.smtp_port, self.submission_port, self.submissions_port)
        )

    def _postfix(self, command):
        return subprocess.run(
            [POSTFIX, "-c", str(self.config), command],
            capture_output=True,
            text=True,
        )

    def reconfigure(self, *, main_cf=None, submission_cf=None, sender_logins=None):
        """Change the configuration while running, as an admin would ("postfix reload").

        ``main_cf`` and ``submission_cf`` are merged into the current settings; ``sender_logins``
        replaces the extra owners (e.g. ``{}`` takes an alias away from the login).
        """
        self.main_cf.update(main_cf or {})
        self.submission_cf.update(submission_cf or {})
        if sender_logins is not None:
            self.sender_logins = dict(sender_logins)
        self._write_maps()
        self._write_config()
        self._age_config()
        old_processes = set(process_group(self.master_pid)) - {self.master_pid}
        reloaded = self._postfix("reload")
        if reloaded.returncode != 0:
            raise RuntimeError(f"Postfix did not reload: {reloaded.stderr}{self.log_text()}")
        # Idle processes of the old configuration end at once; one still in a session ends
        # with it (it keeps the old configuration until then, as on any Postfix).
        try:
            _wait_until(
                lambda: not old_processes & set(process_group(self.master_pid)), 5, "reloaded"
            )
        except TimeoutError:
            pass

    def _write_maps(self):
        """The mailboxes, the domains' transport and who may send as whom (texthash: no postmap)."""
        users = [address.lower() for address in self.dovecot.users]
        mailboxes = [f"{a} {a.split('@')[1]}/{a.split('@')[0]}/Maildir/\n" for a in users]
        (self.config / "mailboxes").write_text("".join(mailboxes))
        (self.config / "transport").write_text(f"{self.remote_domain} virtual:\n")
        owners = {address: [address] for address in users}
        for address, logins in self.sender_logins.items():
            owners.setdefault(address.lower(), []).extend(logins)
        lines = [f"{address} {','.join(logins)}\n" for address, logins in owners.items()]
        (self.config / "sender_logins").write_text("".join(lines))

    def _write_config(self):
        d, etc = self.directory, self.config
        certificates = self.dovecot.certificates
        main_cf = {
            "compatibility_level": "3.6",
            "queue_directory": str(self.queue),
            "data_directory": f"{d}/data",
            "mail_owner": "postfix",
            "setgid_group": "postdrop",
            "maillog_file": str(self.log_file),
            "maillog_file_prefixes": str(d),
            "myhostname": f"mail.{self.domain}",
            "mydomain": self.domain,
            "mydestination": "",
            "inet_interfaces": "127.0.0.1",
            "inet_protocols": "ipv4",
            "mynetworks": "127.0.0.1/32",
            # Loopback is where the tests come from: rate limits apply to it too.
            "smtpd_client_event_limit_exceptions": "",
            "alias_maps": "",
            "alias_database": "",
            "biff": "no",
            # Nothing leaves the machine: whatever is not for the test domains bounces at once.
            "default_transport": "error:5.7.1 this test server delivers to its own domains only",
            "relay_transport": "error:5.7.1 this test server delivers to its own domains only",
            "smtp_dns_support_level": "disabled",
            "virtual_mailbox_domains": self.domain,
            "virtual_mailbox_base": str(self.dovecot.mail_root),
            "virtual_mailbox_maps": f"texthash:{etc}/mailboxes",
            "virtual_uid_maps": f"static:{self.dovecot.mail_uid}",
            "virtual_gid_maps": f"static:{self.dovecot.mail_gid}",
            "virtual_minimum_uid": str(self.dovecot.mail_uid),
            "relay_domains": self.remote_domain,
            "transport_maps": f"texthash:{etc}/transport",
            "smtpd_relay_restrictions": "permit_sasl_authenticated,reject_unauth_destination",
            "smtpd_tls_cert_file": str(certificates["cert"]),
            "smtpd_tls_key_file": str(certificates["key"]),
            "smtpd_tls_security_level": "may",
            "smtpd_sasl_type": "dovecot",
            "smtpd_sasl_path": str(self.dovecot.auth_socket),
            "smtpd_sender_login_maps": f"texthash:{etc}/sender_logins",
            **self.main_cf,
        }
        (etc / "main.cf").write_text("".join(f"{k} = {v}\n" for k, v in main_cf.items()))
        submission = "".join(f"  -o {{ {k} = {v} }}\n" for k, v in self.submission_cf.items())
        listeners = (
            f"127.0.0.1:{self.smtp_port} inet n - n - - smtpd\n"
            f"127.0.0.1:{self.submission_port} inet n - n - - smtpd\n"
            f"  -o syslog_name=postfix/submission\n{submission}"
            f"127.0.0.1:{self.submissions_port} inet n - n - - smtpd\n"
            f"  -o syslog_name=postfix/submissions\n  -o smtpd_tls_wrappermode=yes\n{submission}"
        )
        (etc / "master.cf").write_text(listeners + _MASTER_SERVICES)

    def _age_config(self):
        """Date the configuration back: Postfix re-reads a file changed this second, slowly."""
        earlier = time.time() - 10
        for path in self.config.iterdir():
            os.utime(path, (earlier, earlier))

    def log_text(self, since=0):
        """Postfix's log from byte offset ``since`` (a log_mark() taken earlier) on."""
        if not self.log_file.exists():
            return ""
        with self.log_file.open("rb") as log:
            log.seek(since)
            return log.read().decode(errors="replace")

    def log_mark(self):
        """Where the log ends now: pass it to log_text() or wait_for_log() to read what follows."""
        return self.log_file.stat().st_size if self.log_file.exists() else 0

    def wait_for_log(self, pattern, timeout=10.0, since=0):
        """Wait until a log line after ``since`` matches the regular expression; return it."""
        found = []
        _wait_until(
            lambda: (
                found.append(re.search(pattern, self.log_text(since), re.MULTILINE)) or found[-1]
            ),
            timeout,
            f"Postfix logged no line matching {pattern!r}",
        )
        return found[-1]

    def disconnects(self, since=0):
        """The command counts Postfix logged as each SMTP session ended after ``since``, e.g.
        "ehlo=2 starttls=1 auth=1 mail=1 rcpt=1 data=1 quit=1 commands=8" (no quit=: no QUIT)."""
        return re.findall(r"disconnect from \S+ (.*)$", self.log_text(since), re.MULTILINE)

    def stop(self):
        _running.discard(self)
        if self.master_pid is not None:
            _end_process_group(self.master_pid)
            self.master_pid = None
        if self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
