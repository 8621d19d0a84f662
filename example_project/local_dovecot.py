"""Debian's Dovecot on loopback, a private instance: the users' Maildirs, IMAP with STARTTLS and
implicit TLS (a certificate from a throw-away CA), and the SASL socket Postfix asks
(example_project/local_mta.py)."""

import os
import pwd
import shutil
import subprocess
import time
from email import message_from_bytes, policy
from pathlib import Path

from example_project.local_smtp import make_certificates
from example_project.mail_processes import (
    DOVECOT,
    MAIL_USER,
    die_with_parent,
    end_process_group,
    free_port,
    listening,
    private_directory,
    process_group,
    require_mail_servers,
    running,
    wait_until,
)


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
        self.directory = private_directory("own-smtp-dovecot-")
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
            self.imap_port, self.imaps_port = free_port(), free_port()
            self._write_config()
            with (self.directory / "dovecot.stderr").open("wb") as stderr:
                self.process = subprocess.Popen(
                    [DOVECOT, "-F", "-c", str(self.directory / "dovecot.conf")],
                    stdout=subprocess.DEVNULL,
                    stderr=stderr,
                    start_new_session=True,
                    preexec_fn=die_with_parent,
                )
            running.add(self)
            try:
                wait_until(self._ready, 10, "Dovecot did not listen")
                return self
            except TimeoutError:
                self._end()
                error = (self.directory / "dovecot.stderr").read_text(errors="replace")
                error += self.log_text()
                if "Address already in use" not in error:
                    self.stop()
                    raise RuntimeError(f"Dovecot did not start: {error}") from None
        self.stop()
        raise RuntimeError("Dovecot found no free ports")

    def _ready(self):
        if self.process.pid not in process_group(self.process.pid):  # ended (not reaped yet)
            raise TimeoutError("Dovecot ended")
        return (
            self.auth_socket.exists()
            and listening(self.process.pid, self.imap_port)
            and listening(self.process.pid, self.imaps_port)
        )

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
        for _attempt in range(5):
            try:
                files = [
                    (file.stat().st_mtime, file.name, file.read_bytes())
                    for sub in ("new", "cur")
                    if (path / sub).exists()
                    for file in (path / sub).iterdir()
                ]
            except FileNotFoundError:
                continue  # an IMAP session moved a message from new/ to cur/: look again
            return [message_from_bytes(raw, policy=policy.default) for *_, raw in sorted(files)]
        raise RuntimeError(f"the Maildir of {address} kept changing")

    def wait_for_messages(self, address, count=1, timeout=10.0, matching=None):
        """Wait until the inbox holds ``count`` messages (those ``matching(message)`` if given)."""
        found = []

        def arrived():
            found[:] = [m for m in self.messages(address) if matching is None or matching(m)]
            return len(found) >= count

        wait_until(arrived, timeout, f"{count} message(s) did not arrive for {address}")
        return found

    def log_text(self):
        return self.log_file.read_text(errors="replace") if self.log_file.exists() else ""

    def _end(self):
        if self.process is not None:
            end_process_group(self.process.pid)
            self.process.wait()
            self.process = None  # its pid may be reused from now on

    def stop(self):
        running.discard(self)
        self._end()
        if self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
