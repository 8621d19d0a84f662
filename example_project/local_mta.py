"""Debian's real Postfix and Dovecot on loopback: private instances for the tests and the demo.

Each instance keeps everything in a temporary directory of its own (configuration, queue, log,
sockets, mailboxes), listens on free ports of 127.0.0.1 and delivers nowhere but into its own
mailboxes, so two test runs can run side by side and the system's mail services are not touched.

``LocalDovecot`` (local_dovecot.py) holds the users' Maildirs, serves them over IMAP and answers
Postfix's SASL questions. ``LocalPostfix`` (here) receives on a port-25 style listener and on
submission ports (STARTTLS or implicit TLS, AUTH against Dovecot, ``reject_sender_login_mismatch``),
delivers to the Dovecot mailboxes with its ``virtual`` agent, sends real DSNs for unknown users and
logs to a file the tests read. Both need root (Postfix's master starts as root and drops to the
``postfix`` user) and the Debian packages postfix, dovecot-core and dovecot-imapd.
"""

import grp
import os
import pwd
import re
import shutil
import subprocess
import time

from example_project.local_dovecot import LocalDovecot
from example_project.mail_processes import (
    POSTFIX,
    MailServerUnavailable,
    end_process_group,
    free_port,
    listening,
    private_directory,
    process_group,
    require_mail_servers,
    running,
    wait_until,
)

# What the tests import from here.
__all__ = [
    "LocalDovecot",
    "LocalPostfix",
    "MailServerUnavailable",
    "process_group",
    "require_mail_servers",
]

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
        self.directory = private_directory("own-smtp-postfix-")
        self.config = self.directory / "etc"  # apart from the queue, which "postfix check" walks
        self.config.mkdir()
        self._make_queue()
        self.log_file = self.directory / "postfix.log"
        self._write_maps()
        for _attempt in range(3):
            self.smtp_port, self.submission_port, self.submissions_port = (
                free_port(),
                free_port(),
                free_port(),
            )
            self._write_config()
            self._age_config()
            started = self._postfix("start")
            if started.returncode == 0:
                running.add(self)
                self.master_pid = int((self.queue / "pid" / "master.pid").read_text().split()[0])
                try:
                    wait_until(self._ready, 10, "Postfix did not listen")
                except TimeoutError:
                    self.stop()
                    raise
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
            listening(self.master_pid, port)
            for port in (self.smtp_port, self.submission_port, self.submissions_port)
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
            wait_until(
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
        match = None

        def logged():
            nonlocal match
            match = re.search(pattern, self.log_text(since), re.MULTILINE)
            return match

        wait_until(logged, timeout, f"Postfix logged no line matching {pattern!r}")
        return match

    def disconnects(self, since=0):
        """The command counts Postfix logged as each SMTP session ended after ``since``, e.g.
        "ehlo=2 starttls=1 auth=1 mail=1 rcpt=1 data=1 quit=1 commands=8" (no quit=: no QUIT)."""
        return re.findall(r"disconnect from \S+ (.*)$", self.log_text(since), re.MULTILINE)

    def stop(self):
        running.discard(self)
        if self.master_pid is not None:
            end_process_group(self.master_pid)
            self.master_pid = None
        if self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
