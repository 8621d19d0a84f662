"""The sink: an SMTP server (aiosmtpd) in its own process that accepts everything and counts.

It stands for the receiving mail server. It keeps only what the benchmarks need: how many
messages and recipients arrived, when each arrived (``time.monotonic()``, which on Linux is one
clock for every process, so a sender can compare it with its own timestamps), the ``X-Bench-Seq``
header of each message, how many SMTP connections were opened, and how many were open at once
(``peak_open``: the most concurrent SMTP conversations; ``conversation_seconds``: the time all
connections were open, summed, so that divided by a wall it gives the conversations open on
average; ``spans``: each connection's opening and closing moment), and with a delay, how much
later than the delay its replies went (``reply_lag``, summed over ``delayed_replies``).

Variants: plain SMTP; STARTTLS with AUTH required (certificate from a throw-away CA); and a delay
before every reply, standing for the round trip to a remote server (``delay=0.02`` makes each
SMTP command cost 20 ms, as a server 20 ms away would). Every reply the server gives (the
greeting, EHLO, MAIL, RCPT, DATA's 354, the 250 after the final dot, RSET, NOOP and QUIT alike)
reaches the client ``delay`` after the command it answers, as over a network: commands a client
sends together (PIPELINING) wait one round trip together, not one each.

Like Postfix, Exchange Online and Gmail, the sink offers PIPELINING (RFC 2920); ``pipelining=False``
(``BENCH_PIPELINING=0`` for ``make bench``) makes it a server that does not.

``Sink(...).start()`` returns once it listens. Any process can then ask it for its figures through
a control port on loopback (``SinkClient``, authenticated with a random key).
"""

import asyncio
import multiprocessing
import os
import socket
import threading
import time
from collections import deque
from multiprocessing.connection import Client, Listener
from pathlib import Path

SEQ_HEADER = b"\r\nX-Bench-Seq: "
USER = "bench@sink.example"
PASSWORD = "sink-password"


def _serve(conn, security, delay, cert_dir, authkey, pipelining):
    """The sink process: start aiosmtpd, then answer requests on its control port."""
    import logging

    # aiosmtpd logs a warning about its own deprecated attribute on every AUTH
    logging.getLogger("mail.log").setLevel(logging.ERROR)
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

    lock = threading.Condition()
    state = {}

    def reset(open_now=0):
        # a connection open at the reset counts toward the new peak; its span is not kept
        state.update(
            messages=0,
            recipients=0,
            connections=0,
            arrivals=[],
            bytes=0,
            open=open_now,
            peak_open=open_now,
            conversation_seconds=0.0,
            spans=[],
            delayed_replies=0,
            reply_lag=0.0,
            reply_lag_max=0.0,
        )

    reset()

    class Handler:
        async def handle_EHLO(self, server, session, envelope, hostname, responses):
            session.host_name = hostname
            if pipelining:
                responses.insert(-1, "250-PIPELINING")
            return responses

        async def handle_DATA(self, server, session, envelope):
            data = envelope.original_content or envelope.content
            seq = -1
            start = data.find(SEQ_HEADER)
            if start >= 0:
                start += len(SEQ_HEADER)
                seq = int(data[start : data.index(b"\r\n", start)])
            with lock:
                state["messages"] += 1
                state["recipients"] += len(envelope.rcpt_tos)
                state["bytes"] += len(data)
                state["arrivals"].append((time.monotonic(), seq))
                lock.notify_all()
            return "250 2.0.0 Accepted"

    class DelayedSMTP(SMTP):
        """Every reply reaches the client ``delay`` after its command arrived, in order."""

        async def push(self, status):
            if not delay:
                return await super().push(status)
            text = status if isinstance(status, str) else status.decode()
            due = time.monotonic() + delay
            if text.startswith(("220 Ready", "221")):
                # TLS starts, or the connection closes, right after this reply: it goes first.
                await asyncio.sleep(delay)
                self._write_late(due, text)
                return None
            if not self._late:  # else a write of an earlier reply is already scheduled
                asyncio.get_running_loop().call_later(delay, self._write_due)
            self._late.append((due, text))
            return None

        def _write_due(self):
            while self._late and self._late[0][0] <= time.monotonic() + 0.0001:
                self._write_late(*self._late.popleft())
            if self._late:
                wait = max(self._late[0][0] - time.monotonic(), 0)
                asyncio.get_running_loop().call_later(wait, self._write_due)

        def _write_late(self, due, text):
            if self.transport is None or self.transport.is_closing():
                return
            self.transport.write(text.encode("utf-8") + b"\r\n")
            if text[3:4] != "-":
                # how much later than the delay the reply went: the sink's own lag (a busy loop
                # or machine), which the senders must not be blamed for
                lag = max(time.monotonic() - due, 0.0)
                with lock:
                    state["delayed_replies"] += 1
                    state["reply_lag"] += lag
                    state["reply_lag_max"] = max(state["reply_lag_max"], lag)

        def opened(self):
            """Called once per accepted connection (by the controller's factory)."""
            self._opened_at = time.monotonic()
            self._counted = True
            self._late = deque()  # (due, reply) not yet written, in order
            with lock:
                state["connections"] += 1
                state["open"] += 1
                state["peak_open"] = max(state["peak_open"], state["open"])

        def connection_lost(self, error):
            if getattr(self, "_counted", False):
                self._counted = False
                closed = time.monotonic()
                with lock:
                    state["open"] = max(state["open"] - 1, 0)
                    state["conversation_seconds"] += closed - self._opened_at
                    state["spans"].append((self._opened_at, closed))
            super().connection_lost(error)

    def authenticate(server, session, envelope, mechanism, auth_data):
        if (
            isinstance(auth_data, LoginPassword)
            and auth_data.login.decode() == USER
            and auth_data.password.decode() == PASSWORD
        ):
            return AuthResult(success=True, auth_data=auth_data.login)
        return AuthResult(success=False, handled=False, message="535 5.7.8 Bad credentials")

    kwargs = {"ident": "bench sink"}
    if security == "starttls":
        import ssl

        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(Path(cert_dir) / "cert.pem", Path(cert_dir) / "key.pem")
        kwargs.update(
            tls_context=context,
            require_starttls=True,
            authenticator=authenticate,
            auth_required=True,
            auth_require_tls=True,
        )

    class SinkController(Controller):
        def factory(self):
            # asyncio calls the protocol factory once per accepted connection
            protocol = DelayedSMTP(self.handler, **self.SMTP_kwargs)
            protocol.opened()
            return protocol

    controller = SinkController(
        Handler(),
        hostname="127.0.0.1",
        port=_free_port(),
        server_hostname="sink.localhost",
        ready_timeout=10,
        **kwargs,
    )
    controller.start()
    stopped = threading.Event()

    def answer(client):
        with client:
            while not stopped.is_set():
                try:
                    request, *args = client.recv()
                except (EOFError, OSError):
                    return
                if request == "stop":
                    stopped.set()
                    client.send(True)
                    return
                if request == "reset":
                    with lock:
                        reset(state["open"])
                    client.send(True)
                elif request == "stats":
                    with lock:
                        client.send(
                            {
                                **state,
                                "arrivals": list(state["arrivals"]),
                                "spans": list(state["spans"]),
                            }
                        )
                elif request == "wait":
                    count, timeout = args
                    deadline = time.monotonic() + timeout
                    with lock:
                        while state["messages"] < count and time.monotonic() < deadline:
                            lock.wait(min(0.5, max(deadline - time.monotonic(), 0.001)))
                        client.send((state["messages"], time.monotonic()))

    def accept(listener):
        while not stopped.is_set():
            try:
                client = listener.accept()
            except (OSError, EOFError):
                continue
            threading.Thread(target=answer, args=(client,), daemon=True).start()

    listener = Listener(("127.0.0.1", 0), authkey=authkey)
    threading.Thread(target=accept, args=(listener,), daemon=True).start()
    conn.send((controller.port, listener.address[1], os.getpid()))
    conn.close()
    stopped.wait()
    controller.stop()


class SinkClient:
    """Talks to a running sink from any process (the benchmark, a sender, a worker)."""

    def __init__(self, control_port, authkey):
        self.control_port = control_port
        self.authkey = authkey
        self._conn = None

    def _ask(self, *request):
        if self._conn is None:
            self._conn = Client(("127.0.0.1", self.control_port), authkey=self.authkey)
        self._conn.send(request)
        return self._conn.recv()

    def reset(self):
        return self._ask("reset")

    def stats(self):
        return self._ask("stats")

    def wait_for(self, count, timeout):
        """Block until ``count`` messages arrived; ``(arrived, sink monotonic time)``."""
        return self._ask("wait", count, timeout)

    def close(self):
        if self._conn is not None:
            self._conn.close()
            self._conn = None


class Sink(SinkClient):
    """Starts and stops a sink process; ``describe()`` tells other processes how to reach it."""

    def __init__(self, security="none", delay=0.0, cert_dir=None, name=None):
        super().__init__(None, os.urandom(16))
        self.security = security
        self.delay = delay
        self.pipelining = os.environ.get("BENCH_PIPELINING", "1") != "0"
        self.cert_dir = str(cert_dir) if cert_dir else None
        self.name = name or (security if not delay else f"{security}+{round(delay * 1000)}ms")
        self.port = None
        self.pid = None
        self._process = None

    def start(self):
        context = multiprocessing.get_context("spawn")
        parent, child = context.Pipe()
        self._process = context.Process(
            target=_serve,
            args=(child, self.security, self.delay, self.cert_dir, self.authkey, self.pipelining),
            name=f"bench-sink-{self.name}",
            daemon=True,
        )
        self._process.start()
        deadline = time.monotonic() + 30
        while not parent.poll(0.1):
            if not self._process.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the sink {self.name} did not start")
        self.port, self.control_port, self.pid = parent.recv()
        parent.close()
        return self

    def describe(self):
        """What a sender process needs: JSON-safe."""
        return {
            "name": self.name,
            "security": self.security,
            "delay": self.delay,
            "pipelining": self.pipelining,
            "port": self.port,
            "control_port": self.control_port,
            "authkey": self.authkey.hex(),
            "cert_dir": self.cert_dir,
        }

    def stop(self):
        if self._process is None:
            return
        try:
            self._ask("stop")
        except (OSError, EOFError):
            pass
        self.close()
        self._process.join(10)
        if self._process.is_alive():
            self._process.terminate()
            self._process.join(5)
        self._process = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def client_for(description):
    """A SinkClient from ``Sink.describe()``."""
    return SinkClient(description["control_port"], bytes.fromhex(description["authkey"]))
