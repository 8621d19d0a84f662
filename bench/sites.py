"""Many sites' servers at once (target 7): ``python -m bench.sites '<json config>'``.

N sites, each with its own verified server settings, all pointing at ONE sink that answers every
SMTP command after D ms (a server D ms away); M messages per site; PostgreSQL. Two senders, each
measured in a fresh process as in bench/scenarios.py:

- ``sites_raw``: the reference, raw ``smtplib`` with one thread and one connection per site,
  sending the site's M messages as bytes built beforehand; from the moment all threads start to
  the sink's last acceptance.
- ``sites_cluster``: this app end to end through ``manage.py qcluster`` (2 workers unless told),
  with ``WAGTAIL_OWN_SMTP_CONNECTIONS`` as configured: from ``send_messages()`` of every site's
  mail (one call per site, as each site's editors would send) to the sink's last acceptance.
  CPU: this process plus every cluster process, as ``app_cluster`` counts it.

Besides the figures, the result tells what the dispatch runs did (django-q2's task rows: when
each ran, on which worker, how much it sent) and the sink's connection spans, so a run that
misses its target shows where the time went.
"""

import os
import signal
import smtplib
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime

from bench.scenarios import (
    FROM,
    Cluster,
    Phase,
    bench_site,
    main,
    messages,
    reset_tables,
    sink_client,
    warm_up,
)


def _sites(config):
    """The sites (index 0: the default site), each verified against the sink."""
    return [bench_site(config["sink"], index=index) for index in range(config["sites"])]


def _mail_of(index, per_site):
    return messages(per_site, first_seq=index * per_site)


def sites_raw(config):
    """Raw smtplib: one thread and one connection per site, prebuilt bytes."""
    from wagtail_own_smtp.message import raw_message

    port, per_site, sites = config["sink"]["port"], config["per_site"], config["sites"]
    prepared = [
        [(m.recipients(), raw_message(m)) for m in _mail_of(index, per_site)]
        for index in range(sites)
    ]
    sink = sink_client(config)
    start = threading.Barrier(sites + 1)
    errors = []

    def conversation(batch):
        start.wait()
        try:
            connection = smtplib.SMTP("127.0.0.1", port, timeout=30)
            for recipients, raw in batch:
                connection.sendmail(FROM, recipients, raw)
            connection.quit()
        except (smtplib.SMTPException, OSError) as error:
            errors.append(repr(error))

    threads = [threading.Thread(target=conversation, args=(batch,)) for batch in prepared]
    for thread in threads:
        thread.start()
    sink.reset()
    with Phase() as send:
        start.wait()
        for thread in threads:
            thread.join()
        _arrived, last_arrival = sink.wait_for(sites * per_site, 60)
        send.stop(end=_last(sink, last_arrival))
    return {"phases": {"send": send.as_dict()}, "errors": errors, **_sink_figures(sink, send)}


def sites_cluster(config):
    """This app end to end through qcluster: every site's send_messages() → the last acceptance."""
    from django.core.mail import get_connection

    from wagtail_own_smtp import using_site

    per_site, total = config["per_site"], config["sites"] * config["per_site"]
    sink = sink_client(config)
    reset_tables()
    sites = _sites(config)
    mail = [_mail_of(index, per_site) for index in range(len(sites))]
    env = {}
    if config.get("connections"):
        env["BENCH_OWN_SMTP_CONNECTIONS"] = str(config["connections"])
    cluster = Cluster(config["cluster_log"], workers=config.get("workers", 2), env=env).start()
    try:
        warm_up(sink, sites[0])
        time.sleep(1.0)  # the warm-up's dispatch run has returned; the cluster idles
        sink.reset()
        started_at = datetime.now(UTC)
        database = _database_counters()
        spy = _py_spy(cluster, config.get("profile"))
        with Phase(extra_cpu=cluster.cpu) as e2e:
            with Phase() as enqueue, _one_transaction(config.get("enqueue_atomic")):
                for site, batch in zip(sites, mail, strict=True):
                    with using_site(site):
                        get_connection().send_messages(batch)
            arrived, last_arrival = sink.wait_for(total, config.get("timeout", 600))
            e2e.stop(end=_last(sink, last_arrival))
        cluster_rss = cluster.peak_rss_mb()
        processes = len(cluster.processes())
        _stop_py_spy(spy)
        runs = _dispatch_runs(started_at, total)
        database = _database_counters(database, total)
    finally:
        cluster.stop()
    return {
        "phases": {"enqueue": enqueue.as_dict(), "e2e": e2e.as_dict()},
        "sent": arrived,
        "connections_setting": config.get("connections"),
        "cluster_peak_rss_mb": cluster_rss,
        "cluster_processes": processes,
        "dispatch_runs": runs,
        "database_per_message": database,
        "profile": config.get("profile"),
        **_sink_figures(sink, e2e),
    }


def _one_transaction(atomic):
    """A diagnosis, not the scenario: with ``enqueue_atomic`` every site's mail commits at once,
    so the first dispatch run finds every site due (how much of the wall is the pickup)."""
    from contextlib import nullcontext

    from django.db import transaction

    return transaction.atomic() if atomic else nullcontext()


def _last(sink, fallback):
    """The sink's moment of its last acceptance (``wait_for`` answers when it returns)."""
    arrivals = [at for at, _seq in sink.stats()["arrivals"]]
    return max(arrivals, default=fallback)


def _sink_figures(sink, phase):
    """Concurrency as the sink saw it: the peak, the average over the phase, the spans."""
    stats = sink.stats()
    spans = [(opened - phase.start, closed - phase.start) for opened, closed in stats["spans"]]
    return {
        "peak_open": stats["peak_open"],
        "open_on_average": stats["conversation_seconds"] / phase.wall if phase.wall else None,
        "first_arrival_after": min((at for at, _s in stats["arrivals"]), default=phase.start)
        - phase.start,
        "spans": sorted(spans),
        # the sink's own lateness per reply beyond the delay (its loop or the machine was busy)
        "sink_reply_lag_ms": stats["reply_lag"] / stats["delayed_replies"] * 1000
        if stats["delayed_replies"]
        else None,
        "sink_reply_lag_max_ms": stats["reply_lag_max"] * 1000,
        # how long a conversation took per message, on average over the connections
        "ms_per_message_in_conversation": stats["conversation_seconds"]
        / max(stats["messages"], 1)
        * 1000,
    }


def _dispatch_runs(since, total, timeout=20):
    """django-q2's rows of the dispatch runs queued since ``since`` (its ``started`` is when a run
    was queued), once they have all ended: when queued and ended, and what each sent."""
    from django_q.models import OrmQ, Task

    from wagtail_own_smtp.mailqueue import DISPATCH_TASK

    tasks = Task.objects.filter(func=DISPATCH_TASK, started__gte=since)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sent = sum((t.result or {}).get("sent", 0) for t in tasks if isinstance(t.result, dict))
        if sent >= total and not OrmQ.objects.exists():
            break
        time.sleep(0.25)
    runs = []
    for task in tasks.order_by("started"):
        result = task.result if isinstance(task.result, dict) else {}
        runs.append(
            {
                "started": (task.started - since).total_seconds(),
                "stopped": (task.stopped - since).total_seconds(),
                "sent": result.get("sent"),
                "success": task.success,
            }
        )
    return runs


def _database_counters(before=None, total=None):
    """PostgreSQL's own counters of this database (commits; rows inserted, updated, deleted and
    fetched per table); with ``before``: the difference per message. The server reports them
    within a second, so the difference waits for that."""
    from django.db import connection

    if connection.vendor != "postgresql":
        return None
    if before is not None:
        time.sleep(1.0)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"
        )
        counters = {"commits": cursor.fetchone()[0]}
        cursor.execute(
            "SELECT relname, n_tup_ins, n_tup_upd, n_tup_del, seq_scan, idx_scan "
            "FROM pg_stat_user_tables"
        )
        for name, *values in cursor.fetchall():
            for kind, value in zip(("ins", "upd", "del", "seq", "idx"), values, strict=True):
                counters[f"{name}.{kind}"] = value or 0
    if before is None:
        return counters
    return {
        key: round((value - before.get(key, 0)) / total, 3)
        for key, value in sorted(counters.items())
        if value != before.get(key, 0)
    }


def _py_spy(cluster, path):
    """With ``profile``: py-spy samples every cluster process, threads apart: only a thread that
    is running (its count over the wall and rate tells how busy it was), or with
    ``PROFILE_IDLE=1`` waiting threads too (the share of a function: the share of the wall)."""
    if not path:
        return None
    spy = os.path.join(os.path.dirname(sys.executable), "py-spy")
    return subprocess.Popen(
        [spy, "record", "--pid", str(cluster.process.pid), "--subprocesses", "--threads"]
        + (["--idle"] if os.environ.get("PROFILE_IDLE") else [])
        + ["--rate", "250", "--format", "raw", "--output", path, "--nonblocking"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _stop_py_spy(spy):
    if spy is not None:
        spy.send_signal(signal.SIGINT)
        try:
            spy.wait(30)
        except subprocess.TimeoutExpired:
            spy.kill()


SCENARIOS = {"sites_raw": sites_raw, "sites_cluster": sites_cluster}


if __name__ == "__main__":
    main(SCENARIOS)
