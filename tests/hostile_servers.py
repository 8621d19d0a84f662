"""A raw SMTP server on loopback that answers what a test scripts, the way a hostile one would.

aiosmtpd cannot drip a greeting, send one without end or answer AUTH with a NUL byte: this server
speaks SMTP by hand, one thread per connection, and counts what it sent.
"""

import socket
import threading
import time

OK = b"250 2.0.0 OK\r\n"


class HostileServer:
    """``replies``: verb ("EHLO", "MAIL", "RCPT", "DATA", "AUTH", "." for the end of data) →
    the reply bytes. ``drip``: seconds between the bytes of the greeting. ``endless``: the
    greeting is "220-" lines without end. Everything else is answered like a willing server."""

    def __init__(self, replies=None, drip=0.0, endless=False, greeting=b"220 hostile ESMTP\r\n"):
        self.replies = {
            "EHLO": b"250-hostile\r\n250-AUTH PLAIN LOGIN\r\n250 8BITMIME\r\n",
            "AUTH": b"235 2.7.0 Authentication successful\r\n",
            "QUIT": b"221 2.0.0 Bye\r\n",
            "DATA": b"354 go ahead\r\n",
            ".": OK,
            **(replies or {}),
        }
        self.drip = drip
        self.endless = endless
        self.greeting = greeting
        self.sent_bytes = 0
        self.commands = []
        self.data_lines = []  # per message: the lines of its data (without the final dot)
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.security = "none"
        self.credentials = ("mailer@customer.example", "x")
        self._stopped = threading.Event()
        self._threads = []

    def start(self):
        thread = threading.Thread(target=self._accept, daemon=True)
        thread.start()
        self._threads.append(thread)
        return self

    def stop(self):
        self._stopped.set()
        self.sock.close()
        for thread in self._threads:
            thread.join(5)

    def _accept(self):
        self.sock.settimeout(0.2)
        while not self._stopped.is_set():
            try:
                conn, _address = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            thread.start()
            self._threads.append(thread)

    def _send(self, conn, data):
        conn.sendall(data)
        self.sent_bytes += len(data)

    def _serve(self, conn):
        try:
            with conn:
                conn.settimeout(30)
                self._greet(conn)
                self._dialogue(conn)
        except OSError:
            pass  # the client hung up: what these tests want

    def _greet(self, conn):
        if self.endless:
            line = b"220-" + b"x" * 1000 + b"\r\n"
            while not self._stopped.is_set():
                self._send(conn, line * 64)
        elif self.drip:
            for byte in self.greeting:
                if self._stopped.is_set():
                    return
                self._send(conn, bytes([byte]))
                time.sleep(self.drip)
        else:
            self._send(conn, self.greeting)

    def _dialogue(self, conn):
        reader = conn.makefile("rb")
        in_data = False
        for line in reader:
            if in_data:
                if line.rstrip(b"\r\n") == b".":
                    in_data = False
                    self._send(conn, self.replies["."])
                else:
                    self.data_lines[-1].append(line)
                continue
            verb = (
                line.split(b" ", 1)[0].split(b":", 1)[0].strip().upper().decode("ascii", "replace")
            )
            self.commands.append(verb)
            reply = self.replies.get(verb, OK)
            self._send(conn, reply)
            if verb == "DATA" and reply.startswith(b"354"):
                in_data = True
                self.data_lines.append([])
            if verb == "QUIT":
                return
