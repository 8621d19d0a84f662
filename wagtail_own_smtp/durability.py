"""How a dispatch run's commits reach the disk: without a flush at each, where that is safe."""

from contextlib import contextmanager

from django.db import DatabaseError, connection


@contextmanager
def outcomes_without_flush():
    """A run's commits return without waiting for the disk, where the database allows it safely.

    Each outcome is committed on its own, right after the server accepted the message (see the
    module's docstring), and so are the run's claims and leases: waiting for the disk at every
    commit would cost more than talking SMTP. Not waiting changes nothing when a WORKER dies: the
    committed rows are with the database server (PostgreSQL) or in the operating system's cache
    (SQLite), and survive. Only when the database server or the machine itself goes down can the
    commits of the last moment (well under a second) be lost: those messages then go again, like
    the one in flight, and a lost claim or lease only frees what every dispatcher lost anyway.

    PostgreSQL: ``synchronous_commit`` off for the run's connection (when not inside a
    transaction of the caller; ``record_sent`` sets it for its own transaction in any case).
    SQLite: only a database in WAL mode is safe without a flush at each commit; for the run its
    connection uses ``PRAGMA synchronous=NORMAL``. A database in the default rollback-journal
    mode is left alone: it waits for the disk. The host's setting is restored afterwards.
    """
    restore = None
    if not connection.in_atomic_block:
        restore = _commit_without_flush()
    try:
        yield
    finally:
        if restore is not None and connection.connection is not None:
            try:
                with connection.cursor() as cursor:
                    cursor.execute(*restore)
            except DatabaseError:
                pass  # a broken connection: its next one starts with the host's setting


def _commit_without_flush():
    """Turn off the flush at commit for this connection; the statement that restores it."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SHOW synchronous_commit")
            (level,) = cursor.fetchone()
            if level != "off":
                cursor.execute("SELECT set_config('synchronous_commit', 'off', false)")
                return "SELECT set_config('synchronous_commit', %s, false)", [level]
        elif connection.vendor == "sqlite":
            cursor.execute("PRAGMA journal_mode")
            (journal,) = cursor.fetchone()
            cursor.execute("PRAGMA synchronous")
            (level,) = cursor.fetchone()
            if journal.lower() == "wal" and level > 1:
                cursor.execute("PRAGMA synchronous=NORMAL")
                return f"PRAGMA synchronous={int(level)}", []
    return None
