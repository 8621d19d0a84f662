"""mailbox.py against a hostile IMAP server on loopback: deadlines, caps, nothing lost twice.

The normal case, a real mailbox, is Dovecot's (tests/test_bounce_reading.py).
"""

import time
import tracemalloc

import pytest

from tests.conftest import SMTP_PASSWORD, SMTP_USER
from tests.hostile_imap import HostileImap
from wagtail_own_smtp.mailbox import Mailbox, MailboxFailure, MailboxParams

TIMEOUT = 2


def params(server, **changes):
    values = dict(
        host="localhost",
        port=server.port,
        security="ssl",
        username=SMTP_USER,
        password=SMTP_PASSWORD,
    )
    values.update(changes)
    return MailboxParams(**values)


def messages(count, size=300):
    return {uid: b"Subject: m%d\r\n\r\n" % uid + b"x" * size for uid in range(1, count + 1)}


def test_a_dripping_greeting_is_cut_off_at_the_deadline(certificates):
    with HostileImap(certificates, drip_greeting=True) as server:
        started = time.monotonic()
        with pytest.raises(MailboxFailure):
            Mailbox(params(server), timeout=TIMEOUT).open()
        elapsed = time.monotonic() - started

    assert elapsed < TIMEOUT + 1.5


def test_an_endless_literal_ends_the_reading_at_the_deadline_keeping_what_was_read(certificates):
    with HostileImap(certificates, messages(3), endless_literal={2}) as server:
        started = time.monotonic()
        with Mailbox(params(server), timeout=TIMEOUT) as box:
            fetched = box.fetch_new(0, 0, limit=10)
        elapsed = time.monotonic() - started

    assert elapsed < TIMEOUT * 2 + 1.5  # SELECT, SEARCH and one message each had TIMEOUT
    assert [uid for uid, _raw in fetched.messages] == [1]
    assert fetched.last_uid == 1  # message 2 is tried again next time, nothing skipped
    assert fetched.failure is not None


def test_a_50_mb_message_announced_small_is_left_alone_within_the_memory_cap(
    certificates, settings
):
    settings.WAGTAIL_OWN_SMTP_MAX_REPORT_SIZE = 1024 * 1024
    mail = messages(3)
    mail[2] = b"Subject: big\r\n\r\n" + b"y" * (50 * 1024 * 1024)
    with HostileImap(certificates, mail, lie_about_size={2}) as server:
        tracemalloc.start()
        with Mailbox(params(server), timeout=TIMEOUT) as box:
            fetched = box.fetch_new(0, 0, limit=10)
        _current, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()

    assert peak < 8 * 1024 * 1024
    assert [uid for uid, _raw in fetched.messages] == [1]
    assert (fetched.too_large, fetched.last_uid) == ([2], 2)  # counted, and never read again


def test_a_large_message_is_counted_and_never_fetched(certificates, settings):
    settings.WAGTAIL_OWN_SMTP_MAX_REPORT_SIZE = 1000
    with HostileImap(certificates, {1: b"a" * 500, 2: b"b" * 5000, 3: b"c" * 500}) as server:
        with Mailbox(params(server), timeout=TIMEOUT) as box:
            fetched = box.fetch_new(0, 0, limit=10)

    assert [uid for uid, _raw in fetched.messages] == [1, 3]
    assert fetched.too_large == [2]
    assert not any("2 (BODY.PEEK[])" in command for command in server.commands)


def test_a_flood_of_untagged_lines_is_cut_off(certificates):
    with HostileImap(certificates, messages(1), flood_untagged=True) as server:
        tracemalloc.start()
        started = time.monotonic()
        with Mailbox(params(server), timeout=TIMEOUT) as box, pytest.raises(MailboxFailure):
            box.fetch_new(0, 0, limit=10)
        elapsed = time.monotonic() - started
        _current, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()

    assert elapsed < TIMEOUT + 1.5
    assert peak < 64 * 1024 * 1024


def test_new_messages_only_and_all_again_when_uidvalidity_changes(certificates):
    with HostileImap(certificates, messages(5), uidvalidity=7) as server:
        with Mailbox(params(server), timeout=TIMEOUT) as box:
            first = box.fetch_new(7, 3, limit=10)
        server.uidvalidity = 8
        with Mailbox(params(server), timeout=TIMEOUT) as box:
            renumbered = box.fetch_new(7, 5, limit=10)

    assert [uid for uid, _raw in first.messages] == [4, 5]
    assert [uid for uid, _raw in renumbered.messages] == [1, 2, 3, 4, 5]
    assert renumbered.uidvalidity == 8


def test_reading_leaves_messages_unread_and_files_only_what_it_is_told(certificates):
    with HostileImap(certificates, messages(2)) as server:
        with Mailbox(params(server, move_to="Bounces"), timeout=TIMEOUT) as box:
            box.fetch_new(0, 0, limit=10)
            box.file_report(2)

    assert all("BODY.PEEK[]" in c for c in server.commands if "FETCH" in c and "SIZE" not in c)
    assert server.moved == [2] and server.flags == {}


def test_the_password_is_in_no_failure(certificates):
    with HostileImap(certificates, drip_greeting=True) as server:
        with pytest.raises(MailboxFailure) as failure:
            Mailbox(params(server), timeout=1).open()

    assert SMTP_PASSWORD not in str(failure.value) and SMTP_PASSWORD not in repr(params(server))
