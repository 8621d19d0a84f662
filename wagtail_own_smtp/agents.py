"""The threads that hold a dispatcher's SMTP conversations, and the one inbox they report to.

A dispatcher keeps up to ``WAGTAIL_OWN_SMTP_CONNECTIONS`` conversations going at once, one per
site, as Postfix runs many delivery agents for one queue manager. Every SMTP exchange waits a
round trip, so the waiting happens in threads (sockets release the GIL; asyncio would need an
SMTP client of its own beside ``smtplib`` and the TLS and reply checks built on it).

Only the dispatcher's own thread touches the database: an agent thread talks SMTP and nothing
else, and what it needs from the database (an OAuth token) it asks of the dispatcher's thread
through the inbox (``Inbox.call``). So a dispatcher process holds one database connection whatever
``CONNECTIONS`` is, SQLite sees one writer per process, and a run inside a transaction (a test's)
sees its own rows.
"""

import queue
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from django.utils import translation

from . import conf
from .exceptions import OutcomeNotWritten


class Inbox:
    """What agents tell the dispatcher's thread: deliveries done, and calls to run there."""

    def __init__(self):
        self._events = queue.SimpleQueue()

    def post(self, event):
        self._events.put(event)

    def next(self, timeout):
        """The next event, or None after ``timeout`` seconds (None: wait for one)."""
        try:
            return self._events.get(timeout=timeout)
        except queue.Empty:
            return None

    def call(self, function, *args, **kwargs):
        """From an agent thread: run ``function`` on the dispatcher's thread, return its result
        (or raise what it raised)."""
        reply = _Reply()
        self.post(("call", lambda: function(*args, **kwargs), reply))
        return reply.wait()


class _Reply:
    def __init__(self):
        self._done = threading.Event()
        self._result = self._error = None

    def answer(self, call):
        try:
            self._result = call()
        except BaseException as error:  # handed to the waiting agent, raised there
            self._error = error
        self._done.set()

    def wait(self):
        self._done.wait()
        if self._error is not None:
            raise self._error
        return self._result


def answer(event):
    """Run a ``("call", call, reply)`` event on this (the dispatcher's) thread."""
    _kind, call, reply = event
    reply.answer(call)


def run_here(function, *args, **kwargs):
    """``Inbox.call`` for code already on the dispatcher's thread (a session used directly)."""
    return function(*args, **kwargs)


class TokenOnDispatcherThread:
    """An OAuth token source whose database work (the token cache) runs through ``ask``
    (``Inbox.call``), on the dispatcher's thread."""

    def __init__(self, source, ask):
        self.source, self.ask = source, ask

    @property
    def was_cached(self):
        return self.source.was_cached

    def __call__(self, refresh=False):
        return self.ask(self.source, refresh=refresh)


class Gate:
    """Opened once the previous message of the same connection has its outcome written.

    The next message's ``MAIL FROM``, ``RCPT TO`` and ``DATA`` may go out before that (the
    database and the server work at the same time); its data wait at the gate, so at most one
    message per connection is accepted by the server and not yet marked ``sent``: the one in
    flight.
    """

    def __init__(self):
        self._opened = threading.Event()
        self.written = False

    def open(self, written):
        self.written = written
        self._opened.set()

    def wait(self, timeout):
        if not self._opened.wait(timeout) or not self.written:
            raise OutcomeNotWritten


@dataclass
class Delivery:
    """One message handed to an agent thread: its recipients (the suppressed ones left out),
    the gate its data wait at (``agents.Gate``; None when nothing is left to write), and the
    delivery the agent may go on with once this one is sent (``offer``, ``take_follow``)."""

    message: object
    recipients: list
    gate: object = None
    follow: object = None
    _taken: bool = False
    _lock: object = field(default_factory=threading.Lock, repr=False)

    def wait_for_previous(self):
        if self.gate is not None:
            self.gate.wait(conf.get("TIMEOUT"))

    def offer(self, following):
        """From the dispatcher's thread: let the agent go on with ``following``; False when the
        agent is already done with this delivery."""
        with self._lock:
            if self._taken:
                return False
            self.follow = following
            return True

    def take_follow(self):
        """From the agent thread, once this delivery is done: what it may go on with (None:
        nothing); later offers are refused."""
        with self._lock:
            self._taken = True
            return self.follow


class Agents:
    """A pool of at most ``size`` threads; ``start`` runs ``work()`` on one and posts
    ``(kind, tag, result)`` to the inbox, in the language the dispatcher's thread had."""

    def __init__(self, size, inbox):
        self.inbox = inbox
        self._pool = ThreadPoolExecutor(max_workers=size, thread_name_prefix="own-smtp-agent")

    def start(self, tag, work, kind="done"):
        language = translation.get_language()

        def run():
            try:
                with translation.override(language):
                    result = work()
            except BaseException as error:  # work() reports its own failures; never lose a tag
                result = error
            self.inbox.post((kind, tag, result))

        self._pool.submit(run)

    def shutdown(self):
        self._pool.shutdown(wait=True)
