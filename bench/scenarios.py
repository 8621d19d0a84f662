"""One measurement in a fresh process: ``python -m bench.scenarios '<json config>'``.

bench/run.py starts one process per measurement, so every figure (CPU, peak RSS) belongs to that
sender alone, and no sender inherits another's warm caches or database connection. The process
prints one line ``BENCH-RESULT <json>``.

Timing: ``time.perf_counter`` for walls inside a process; ``time.monotonic`` where a moment is
compared with the sink's arrival times (one clock for all processes on Linux). CPU is this
process's user + system time (``getrusage``); with a cluster, the CPU of every process of the
cluster is added (psutil). The sink's CPU is never counted: it stands for the remote server.
"""

import json
import os
import random
import resource
import signal
import smtplib
import ssl
import statistics
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
FROM = "invitations@survey.example"

# ~1.9 KB of text: with the headers a message is about 2.2 KB on the wire.
BODY = (
    (
        "Dear participant {seq},\n\n"
        "you are invited to take part in our survey on how people in your region travel to work, "
        "school and leisure. Answering takes about ten minutes. Your answers are stored without "
        "your name and are evaluated only in summary form; nobody will be able to tell what you "
        "answered. You can stop at any time and continue later with the same link.\n\n"
        "Your personal link: https://survey.example/t/{seq:08d}-5f2c9a1be0d74c31\n\n"
    )
    + (
        "Why we ask: the regional transport association plans its timetables for the next years "
        "and wants to know where connections are missing, which lines are too full, and what "
        "would make you leave the car at home more often. Every answer helps, including the "
        "answers of those who never take the bus or the train.\n\n"
    )
    * 3
    + (
        "If you have questions about the survey, reply to this message or call us on weekdays "
        "between 9 am and 4 pm.\n\nKind regards,\nThe survey team\n\n"
        "You receive this message because you signed up for the citizens' panel. To stop "
        "receiving invitations, use https://survey.example/unsubscribe/{seq:08d}.\n"
    )
)


# -- measuring ---------------------------------------------------------------------------------


def cpu_seconds():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def peak_rss_mb(pid=None):
    """Peak resident set size (VmHWM) of a process, in MB."""
    if pid is None:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


class Phase:
    """Wall, CPU and monotonic start/end of a block; ``extra_cpu`` adds other processes' CPU."""

    def __init__(self, extra_cpu=None):
        self.extra_cpu = extra_cpu
        self.end = None

    def __enter__(self):
        self.start = time.monotonic()
        self._wall = time.perf_counter()
        self._cpu = cpu_seconds() + (self.extra_cpu() if self.extra_cpu else 0.0)
        return self

    def __exit__(self, *exc):
        self.stop()

    def stop(self, end=None):
        """Close the phase (at ``end``, a monotonic moment, e.g. the sink's last arrival)."""
        now = time.monotonic()
        self.wall = (time.perf_counter() - self._wall) - (now - end if end is not None else 0.0)
        self.end = end if end is not None else now
        self.cpu = cpu_seconds() + (self.extra_cpu() if self.extra_cpu else 0.0) - self._cpu

    def as_dict(self):
        return {"wall": self.wall, "cpu": self.cpu, "start": self.start, "end": self.end}


# -- what is sent ------------------------------------------------------------------------------


def messages(count, first_seq=0, recipients=1, connection=None):
    """Survey invitations as Django builds them, each with an ``X-Bench-Seq`` header."""
    from django.core.mail import EmailMessage

    counts = recipients if callable(recipients) else (lambda _seq: recipients)
    return [
        EmailMessage(
            subject=f"Invitation to our mobility survey ({seq})",
            body=BODY.format(seq=seq),
            from_email=FROM,
            to=[f"participant{seq}.{r}@panel.example.org" for r in range(counts(seq))],
            headers={"X-Bench-Seq": str(seq)},
            connection=connection,
        )
        for seq in range(first_seq, first_seq + count)
    ]


def sink_client(config):
    from bench.sink import client_for

    return client_for(config["sink"])


def smtp_credentials(sink):
    if sink["security"] == "starttls":
        from bench.sink import PASSWORD, USER

        return USER, PASSWORD
    return "", ""


# -- the app's side: a verified site, a clean queue, a cluster ---------------------------------


def reset_tables():
    """Empty every queue the senders use (untimed, before a measurement)."""
    from django.apps import apps
    from django_q.models import OrmQ, Task

    from wagtail_own_smtp.models import (
        DispatchRequest,
        OutboundMessage,
        SendRecord,
        SiteSendState,
    )

    for model in (OutboundMessage, SendRecord, SiteSendState, DispatchRequest, OrmQ, Task):
        model.objects.all().delete()
    if apps.is_installed("post_office"):
        from post_office.models import Email

        Email.objects.all().delete()
    if apps.is_installed("mailer"):
        from mailer.models import Message, MessageLog

        Message.objects.all().delete()
        MessageLog.objects.all().delete()


def bench_site(sink, index=0, **limits):
    """Site ``index`` (0: the default site) sends through the sink, verified, with ``limits``."""
    from wagtail.models import Page, Site

    from wagtail_own_smtp.models import SmtpSettings

    if index == 0:
        site = Site.objects.get(is_default_site=True)
    else:
        root = Page.objects.filter(depth=2).first()
        site, _created = Site.objects.get_or_create(
            hostname=f"site{index}.bench.example", port=80, defaults={"root_page": root}
        )
    smtp_settings = SmtpSettings.objects.filter(site=site).first() or SmtpSettings(site=site)
    verified_settings(smtp_settings, sink, **limits).save()
    return site


def verified_settings(smtp_settings, sink, **limits):
    """Fill an SmtpSettings as if an editor had saved it and confirmed the link (unsaved)."""
    username, password = smtp_credentials(sink)
    smtp_settings.delivery_mode = "own"
    smtp_settings.host = "127.0.0.1"
    smtp_settings.port = sink["port"]
    smtp_settings.security = sink["security"]
    smtp_settings.from_email = FROM
    smtp_settings.username = username
    smtp_settings.set_password(password)
    smtp_settings.min_interval = limits.get("min_interval", Decimal(0))
    smtp_settings.max_per_hour = limits.get("max_per_hour")
    smtp_settings.max_per_day = limits.get("max_per_day")
    # What confirming the link does (verification.py): the dispatcher sends through these.
    smtp_settings.verification_status = "verified"
    smtp_settings.sending_paused = False
    smtp_settings.verified_at = smtp_settings.verified_at or _now()
    smtp_settings.verified_host = smtp_settings.host
    smtp_settings.verified_port = smtp_settings.port
    smtp_settings.verified_security = smtp_settings.security
    smtp_settings.verified_from_email = smtp_settings.from_email
    smtp_settings.verified_username = smtp_settings.username
    smtp_settings.verified_password_ciphertext = smtp_settings.password_ciphertext
    return smtp_settings


def _now():
    from django.utils import timezone

    return timezone.now()


def drop_broker_tasks():
    """The enqueue's on-commit dispatch task, when no cluster runs: not to leak into later runs
    (nor its request, which would keep the next run's mail from queueing one)."""
    from django_q.models import OrmQ

    from wagtail_own_smtp.models import DispatchRequest

    OrmQ.objects.all().delete()
    DispatchRequest.clear()


class Cluster:
    """``manage.py qcluster`` in its own process group, with its CPU and peak RSS."""

    def __init__(self, log_path, workers=None, env=None):
        self.log_path = log_path
        self.workers = workers
        self.env = env or {}
        self.process = None

    def start(self):
        import psutil

        env = {**os.environ, **self.env}
        if self.workers:
            env["BENCH_Q_WORKERS"] = str(self.workers)
        self.log = open(self.log_path, "ab")  # noqa: SIM115 (closed in stop)
        self.process = subprocess.Popen(
            [sys.executable, str(BENCH_DIR / "manage.py"), "qcluster"],
            cwd=REPO,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.root = psutil.Process(self.process.pid)
        return self

    def processes(self):
        import psutil

        try:
            return [self.root, *self.root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def cpu(self):
        """CPU seconds used so far by the cluster's processes that are alive."""
        import psutil

        total = 0.0
        for process in self.processes():
            try:
                times = process.cpu_times()
            except psutil.NoSuchProcess:
                continue
            total += times.user + times.system
        return total

    def peak_rss_mb(self):
        """The largest peak RSS of one cluster process (the worker that ran dispatch)."""
        return max((peak_rss_mb(p.pid) for p in self.processes()), default=0.0)

    def stop(self):
        if self.process is None:
            return
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(5)
        self.log.close()
        self.process = None


def warm_up(sink, site, timeout=90):
    """One message through the whole path: the cluster is up and its workers have imported all."""
    from django.core.mail import get_connection

    from wagtail_own_smtp import using_site

    before = sink.stats()["messages"]
    with using_site(site):
        get_connection().send_messages(messages(1, first_seq=10**9))
    arrived, _at = sink.wait_for(before + 1, timeout)
    if arrived < before + 1:
        raise RuntimeError("the cluster did not deliver the warm-up message")


# -- scenarios ---------------------------------------------------------------------------------


def raw_smtplib(config):
    """The physical limit for Python here: prebuilt bytes through smtplib on one connection."""
    from wagtail_own_smtp.message import raw_message

    sink = config["sink"]
    prepared = [(m.recipients(), raw_message(m)) for m in messages(config["n"])]
    username, password = smtp_credentials(sink)
    with Phase() as send:
        connection = smtplib.SMTP("127.0.0.1", sink["port"], timeout=15)
        if sink["security"] == "starttls":
            context = ssl.create_default_context(cafile=config["ca_file"])
            connection.starttls(context=context)
            connection.login(username, password)
        for recipients, raw in prepared:
            connection.sendmail(FROM, recipients, raw)
        connection.quit()
    return {"phases": {"send": send.as_dict()}}


def django_smtp(config):
    """Django's own SMTP backend, sending directly: build the messages, one connection."""
    from django.core.mail.backends.smtp import EmailBackend

    sink = config["sink"]
    username, password = smtp_credentials(sink)
    backend = EmailBackend(
        host="127.0.0.1",
        port=sink["port"],
        username=username,
        password=password,
        use_tls=sink["security"] == "starttls",
        timeout=15,
    )
    with Phase() as send:
        sent = backend.send_messages(messages(config["n"]))
    return {"phases": {"send": send.as_dict()}, "sent": sent}


def app_inprocess(config):
    """This app: enqueue through the backend, then drain through the dispatcher, in this process."""
    from wagtail_own_smtp import dispatch
    from wagtail_own_smtp.backends import EmailBackend

    reset_tables()
    site = bench_site(config["sink"])
    backend = EmailBackend(site=site)
    with Phase() as enqueue:
        queued = backend.send_messages(messages(config["n"]))
    drop_broker_tasks()
    profiler = _profiler(config)
    with Phase() as drain:
        report = dispatch.dispatch(until_empty=True)
    _save_profile(profiler, config)
    return {
        "phases": {"enqueue": enqueue.as_dict(), "drain": drain.as_dict()},
        "queued": queued,
        "sent": report.sent,
        "report": report.as_dict(),
    }


def app_cluster(config):
    """This app end to end: send → queue → ``manage.py qcluster`` → accepted by the server."""
    from django.core.mail import get_connection

    from wagtail_own_smtp import using_site

    n = config["n"]
    sink = sink_client(config)
    reset_tables()
    site = bench_site(config["sink"])
    cluster = Cluster(config["cluster_log"]).start()
    try:
        warm_up(sink, site)
        time.sleep(1.0)  # the warm-up's dispatch run has returned; the cluster idles
        sink.reset()
        with Phase(extra_cpu=cluster.cpu) as e2e:
            with Phase() as enqueue, using_site(site):
                get_connection().send_messages(messages(n))
            arrived, last_arrival = sink.wait_for(n, config.get("timeout", 600))
            e2e.stop(end=last_arrival)
        cluster_rss = cluster.peak_rss_mb()
    finally:
        cluster.stop()
    return {
        "phases": {"enqueue": enqueue.as_dict(), "e2e": e2e.as_dict()},
        "sent": arrived,
        "cluster_peak_rss_mb": cluster_rss,
    }


def post_office(config):
    """django-post_office: its backend queues, ``send_queued_mail`` drains (one process)."""
    from post_office.backends import EmailBackend
    from post_office.mail import send_queued_mail_until_done

    reset_tables()
    with Phase() as enqueue:
        queued = EmailBackend().send_messages(messages(config["n"]))
    with Phase() as drain:
        send_queued_mail_until_done(
            lockfile=str(Path(config["results_dir"]) / "post_office"), processes=1
        )
    return {"phases": {"enqueue": enqueue.as_dict(), "drain": drain.as_dict()}, "queued": queued}


def mailer(config):
    """django-mailer: its DbBackend queues, ``send_mail`` (engine.send_all) drains."""
    from mailer.backend import DbBackend
    from mailer.engine import send_all

    reset_tables()
    with Phase() as enqueue:
        queued = DbBackend().send_messages(messages(config["n"]))
    with Phase() as drain:
        send_all()
    return {"phases": {"enqueue": enqueue.as_dict(), "drain": drain.as_dict()}, "queued": queued}


def throttle(config):
    """Target 3: the minimum interval as the server sees it, and the hourly cap, exactly."""
    from wagtail_own_smtp import dispatch
    from wagtail_own_smtp.backends import EmailBackend
    from wagtail_own_smtp.models import OutboundMessage

    sink = sink_client(config)
    interval = config.get("interval", 0.25)
    count = config.get("interval_messages", 40)
    reset_tables()
    site = bench_site(config["sink"], min_interval=Decimal(str(interval)))
    EmailBackend(site=site).send_messages(messages(count))
    drop_broker_tasks()
    sink.reset()
    with Phase() as drain:
        report = dispatch.dispatch(until_empty=True)
    arrivals = sorted(at for at, _seq in sink.stats()["arrivals"])
    gaps = [b - a for a, b in zip(arrivals, arrivals[1:], strict=False)]

    # The hourly cap counts recipients: messages of 1, 2, 3, 1, 2, 3 … recipients.
    cap = config.get("cap", 12)
    capped = config.get("cap_messages", 20)
    reset_tables()
    site = bench_site(config["sink"], max_per_hour=cap)
    EmailBackend(site=site).send_messages(
        messages(capped, first_seq=1000, recipients=lambda seq: seq % 3 + 1)
    )
    drop_broker_tasks()
    sink.reset()
    first = dispatch.dispatch(until_empty=True)
    second = dispatch.dispatch(until_empty=True)
    stats = sink.stats()
    waiting = OutboundMessage.objects.filter(status__in=["queued", "deferred"]).count()
    next_in = (first.next_slot - _now()).total_seconds() if first.next_slot else None
    return {
        "interval": {
            "min_interval": interval,
            "messages": count,
            "sent": report.sent,
            "arrived": len(arrivals),
            "gaps": gaps,
            "min_gap": min(gaps) if gaps else None,
            "median_gap": statistics.median(gaps) if gaps else None,
            "max_gap": max(gaps) if gaps else None,
            "wall": drain.wall,
        },
        "cap": {
            "max_per_hour": cap,
            "messages": capped,
            "recipients_sent": stats["recipients"],
            "messages_sent": stats["messages"],
            "second_run_sent": second.sent,
            "messages_waiting": waiting,
            "waiting_for": first.waiting_for,
            "next_slot_in_seconds": next_in,
        },
    }


def latency(config):
    """Target 4: ``send_mail`` → accepted by the server, one message at a time, idle cluster."""
    from django.core.mail import get_connection

    from wagtail_own_smtp import using_site

    sink = sink_client(config)
    count = config.get("messages", 20)
    rng = random.Random(config.get("seed", 1))
    reset_tables()
    site = bench_site(config["sink"])
    cluster = Cluster(config["cluster_log"]).start()
    sent_at = {}
    try:
        warm_up(sink, site)
        time.sleep(config.get("idle", 3.0))  # idle: no dispatch run in progress
        sink.reset()
        for seq in range(count):
            [message] = messages(1, first_seq=seq)
            sent_at[seq] = time.monotonic()
            with using_site(site):
                get_connection().send_messages([message])
            time.sleep(rng.uniform(*config.get("spacing", (1.0, 1.6))))
        sink.wait_for(count, 60)
        cluster_rss = cluster.peak_rss_mb()
    finally:
        cluster.stop()
    arrivals = {seq: at for at, seq in sink.stats()["arrivals"]}
    latencies = sorted(arrivals[seq] - sent_at[seq] for seq in sent_at if seq in arrivals)
    return {
        "messages": count,
        "arrived": len(latencies),
        "latencies": latencies,
        "p50": _percentile(latencies, 50),
        "p95": _percentile(latencies, 95),
        "max": max(latencies) if latencies else None,
        "cluster_peak_rss_mb": cluster_rss,
    }


def _percentile(values, pct):
    if not values:
        return None
    values = sorted(values)
    rank = (len(values) - 1) * pct / 100
    low = int(rank)
    high = min(low + 1, len(values) - 1)
    return values[low] + (values[high] - values[low]) * (rank - low)


def _dispatcher_process(ready, go, results):
    """A dispatcher worker for the parallel-sites scenario (a spawned process)."""
    import django

    django.setup()
    from django.db import connection

    from wagtail_own_smtp import dispatch

    connection.ensure_connection()
    ready.put(os.getpid())
    go.wait()
    started, cpu = time.monotonic(), cpu_seconds()
    report = dispatch.dispatch(until_empty=True)
    results.put(
        {
            "pid": os.getpid(),
            "sent": report.sent,
            "wall": time.monotonic() - started,
            "cpu": cpu_seconds() - cpu,
            "waiting_for": report.waiting_for,
            "peak_rss_mb": peak_rss_mb(),
        }
    )


def parallel(config):
    """Target 6: sites drained by 1 and by W dispatcher processes (PostgreSQL, delayed sink),
    each keeping ONE conversation (``connections``, default 1): whether the sites spread over
    the processes. With the default ``CONNECTIONS`` one process already keeps every site going
    (target 7 measures that)."""
    import multiprocessing

    from wagtail_own_smtp.backends import EmailBackend

    # read by bench/settings.py in the spawned dispatcher processes
    os.environ["BENCH_OWN_SMTP_CONNECTIONS"] = str(config.get("connections", 1))
    sink = sink_client(config)
    sites = config.get("sites", 8)
    per_site = config.get("per_site", 25)
    total = sites * per_site
    runs = {}
    for workers in config.get("workers", [1, 4]):
        reset_tables()
        for index in range(sites):
            site = bench_site(config["sink"], index=index)
            EmailBackend(site=site).send_messages(messages(per_site, first_seq=index * per_site))
        drop_broker_tasks()
        sink.reset()
        context = multiprocessing.get_context("spawn")
        ready, results, go = context.Queue(), context.Queue(), context.Event()
        processes = [
            context.Process(target=_dispatcher_process, args=(ready, go, results))
            for _ in range(workers)
        ]
        for process in processes:
            process.start()
        for _ in processes:
            ready.get(timeout=120)
        started = time.monotonic()
        go.set()
        arrived, last_arrival = sink.wait_for(total, config.get("timeout", 600))
        reports = [results.get(timeout=120) for _ in processes]
        for process in processes:
            process.join(30)
        stats = sink.stats()
        runs[str(workers)] = {
            "workers": workers,
            "messages": total,
            "arrived": arrived,
            "wall": last_arrival - started,
            "msgs_per_s": arrived / (last_arrival - started),
            "connections": stats["connections"],
            "per_worker": reports,
            "cpu": sum(r["cpu"] for r in reports),
        }
    return {"sites": sites, "per_site": per_site, "delay": config["sink"]["delay"], "runs": runs}


# -- scale (target 5) ----------------------------------------------------------------------


def scale_fill(config):
    """Setup, untimed for the targets: ``sites`` verified sites with ``per_site`` queued each.

    Rows are written with bulk_create from one rendered message (building 100,000 messages
    through the backend would take minutes and is measured elsewhere).
    """
    from django.db import connection, transaction
    from wagtail.models import Page, Site

    from wagtail_own_smtp.message import envelope_address, raw_message
    from wagtail_own_smtp.models import OutboundMessage, SmtpSettings

    sites, per_site = config["sites"], config["per_site"]
    started = time.perf_counter()
    reset_tables()
    Site.objects.filter(is_default_site=False).delete()
    SmtpSettings.objects.all().delete()
    root = Page.objects.filter(depth=2).first()
    Site.objects.bulk_create(
        [Site(hostname=f"s{i}.scale.example", port=80, root_page=root) for i in range(1, sites)]
    )
    site_ids = list(Site.objects.order_by("pk").values_list("pk", flat=True))[:sites]
    SmtpSettings.objects.bulk_create(
        [verified_settings(SmtpSettings(site_id=pk), config["sink"]) for pk in site_ids]
    )
    [template] = messages(1, first_seq=123456789)
    raw = raw_message(template)
    recipient = envelope_address(template.to[0])
    now = _now()
    batch, seq = [], 0
    for _round in range(per_site):
        for site_id in site_ids:
            body = raw.replace(b"123456789", str(seq).encode())
            batch.append(
                OutboundMessage(
                    site_id=site_id,
                    subject=template.subject,
                    envelope_from=FROM,
                    recipients=[recipient],
                    recipient_count=1,
                    raw_message=body,
                    size=len(body),
                    next_attempt_at=now,
                )
            )
            seq += 1
            if len(batch) >= 2000:
                with transaction.atomic():
                    OutboundMessage.objects.bulk_create(batch)
                batch = []
    if batch:
        OutboundMessage.objects.bulk_create(batch)
    if connection.vendor == "postgresql":
        # what autovacuum does to a table that grew this much (PostgreSQL 13+ vacuums after
        # inserts too): statistics for the planner, the visibility map for index-only scans
        with connection.cursor() as cursor:
            cursor.execute(f"VACUUM ANALYZE {OutboundMessage._meta.db_table}")
    return {"sites": len(site_ids), "messages": seq, "wall": time.perf_counter() - started}


def scale_dispatch(config):
    """One dispatch run with a time budget, as a django-q2 worker runs it."""
    from wagtail_own_smtp import dispatch

    sink = sink_client(config)
    sink.reset()
    profiler = _profiler(config)
    with Phase() as run:
        report = dispatch.dispatch(budget_seconds=config["budget"])
    _save_profile(profiler, config)
    stats = sink.stats()
    return {
        "phases": {"dispatch": run.as_dict()},
        "sent": report.sent,
        "report": report.as_dict(),
        "connections": stats["connections"],
        "ms_per_msg": run.wall / report.sent * 1000 if report.sent else None,
        "cpu_ms_per_msg": run.cpu / report.sent * 1000 if report.sent else None,
    }


def scale_status(config):
    """How long ``own_smtp_status`` and the admin pages take with the queue as it is."""
    import io

    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.test import Client
    from django.urls import NoReverseMatch, reverse
    from wagtail.models import Site

    status_walls = []
    for _ in range(3):  # the median of three, like the pages
        with Phase() as status:
            call_command("own_smtp_status", stdout=io.StringIO())
        status_walls.append(status.wall)
    if config.get("profile"):
        profiler = _profiler(config)
        call_command("own_smtp_status", stdout=io.StringIO())
        _save_profile(profiler, config)
    with count_queries() as queries:
        call_command("own_smtp_status", stdout=io.StringIO())
    # read now: the test client's requests below reset Django's query log
    status_queries = len(queries.captured_queries)
    status_sql = [query["sql"] for query in queries.captured_queries]
    outbox_sql = []
    user_model = get_user_model()
    user = user_model.objects.filter(username="bench-admin").first()
    if user is None:
        user = user_model.objects.create_superuser("bench-admin", "admin@bench.example", "x")
    client = Client()
    client.force_login(user)
    pages = {}
    site = Site.objects.get(is_default_site=True)
    candidates = {
        "settings page": ("wagtailsettings:edit", ["wagtail_own_smtp", "smtpsettings", site.pk]),
        "outbox page": ("wagtail_own_smtp_admin:outbox", []),
    }
    for label, (name, args) in candidates.items():
        try:
            url = reverse(name, args=args)
        except NoReverseMatch:
            pages[label] = None
            continue
        client.get(url)  # warm: templates, first queries
        walls = []
        for _ in range(3):  # the median of three: one request is at the mercy of the machine
            started = time.perf_counter()
            response = client.get(url)
            walls.append(time.perf_counter() - started)
        if label == "outbox page":
            with count_queries() as queries:
                client.get(url)
            outbox_sql = [query["sql"] for query in queries.captured_queries]
            if config.get("profile"):
                page_profile = {"profile": config["profile"].replace("status", "outbox")}
                profiler = _profiler(page_profile)
                client.get(url)
                _save_profile(profiler, page_profile)
        pages[label] = {
            "url": url,
            "status": response.status_code,
            "seconds": statistics.median(walls),
            "all_seconds": walls,
        }
    if config.get("plans"):
        _write_plans(config["plans"], status_sql, outbox_sql)
    return {
        "own_smtp_status_seconds": statistics.median(status_walls),
        "own_smtp_status_all_seconds": status_walls,
        "own_smtp_status_queries": status_queries,
        "pages": pages,
    }


def _dispatcher_sql():
    """The dispatcher's look for due sites and one site's claim, as SQL with parameters."""
    from django.utils import timezone

    from wagtail_own_smtp import due_sites, mailqueue
    from wagtail_own_smtp.models import OutboundMessage

    now = timezone.now()
    queries = [("due sites", due_sites.sites_with_due_mail(now))]
    site_id = OutboundMessage.objects.values_list("site_id", flat=True).first()
    names = ("queued", "deferred", "abandoned")
    parts = mailqueue.messages().filter(site_id=site_id).due_parts(now)
    for name, part in zip(names, parts, strict=True):
        claim = part.order_by("next_attempt_at", "pk").values_list("next_attempt_at", "pk", "size")
        queries.append((f"claim ({name})", claim[:100]))
    return [(name, *query.query.sql_with_params()) for name, query in queries]


def _write_plans(path, status_sql, outbox_sql):
    """EXPLAIN ANALYZE of the status command's, the outbox page's and the dispatcher's queries."""
    from django.db import connection

    seen, parts = set(), []
    named = [("own_smtp_status", sql, None) for sql in status_sql]
    named += [("outbox page", sql, None) for sql in outbox_sql]
    named += _dispatcher_sql()
    with connection.cursor() as cursor:
        for name, sql, params in named:
            if not sql.startswith("SELECT") or sql in seen:
                continue
            seen.add(sql)
            prefix = "EXPLAIN (ANALYZE, BUFFERS) " if connection.vendor == "postgresql" else ""
            cursor.execute(prefix + sql if prefix else "EXPLAIN QUERY PLAN " + sql, params)
            plan = "\n".join(str(row[-1] if len(row) > 1 else row[0]) for row in cursor.fetchall())
            parts.append(f"-- {name}\n{sql}\n{plan}\n")
    Path(path).write_text("\n".join(parts))


# -- profiling ---------------------------------------------------------------------------------


def count_queries():
    from collections import deque

    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    # Django keeps the last 9,000 queries only; a drain of thousands of messages makes more.
    connection.queries_log = deque(connection.queries_log, maxlen=1_000_000)
    return CaptureQueriesContext(connection)


def _profiler(config):
    """With ``profile`` set: pyinstrument, and the SQL queries counted by kind."""
    if not config.get("profile"):
        return None
    from pyinstrument import Profiler

    profiler = Profiler(interval=0.0005)
    profiler.queries = count_queries()
    profiler.queries.__enter__()
    profiler.start()
    return profiler


def _save_profile(profiler, config):
    if profiler is None:
        return
    profiler.stop()
    profiler.queries.__exit__(None, None, None)
    kinds = {}
    for query in profiler.queries.captured_queries:
        words = query["sql"].split()
        kind = " ".join(words[:3]) if words and words[0] in ("UPDATE", "INSERT") else words[0]
        if words and words[0] == "SELECT" and " FROM " in query["sql"]:
            kind = "SELECT FROM " + query["sql"].split(" FROM ", 1)[1].split()[0]
        kinds[kind] = kinds.get(kind, 0) + 1
    summary = "\n".join(
        f"{count:>8}  {kind}" for kind, count in sorted(kinds.items(), key=lambda kv: -kv[1])
    )
    path = Path(config["profile"])
    path.write_text(
        profiler.output_text(unicode=True, color=False, show_all=False)
        + f"\nSQL queries during the profiled run: {len(profiler.queries.captured_queries)}\n"
        + summary
        + "\n"
    )
    if os.environ.get("PROFILE_HTML"):  # tens of MB: only on request
        path.with_suffix(".html").write_text(profiler.output_html())


SCENARIOS = {
    "raw_smtplib": raw_smtplib,
    "django_smtp": django_smtp,
    "app_inprocess": app_inprocess,
    "app_cluster": app_cluster,
    "post_office": post_office,
    "mailer": mailer,
    "throttle": throttle,
    "latency": latency,
    "parallel": parallel,
    "scale_fill": scale_fill,
    "scale_dispatch": scale_dispatch,
    "scale_status": scale_status,
}


def main(scenarios=SCENARIOS):
    config = json.loads(sys.argv[1])
    sys.path.insert(0, str(REPO))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings")
    import django

    django.setup()
    result = scenarios[config["scenario"]](config)
    result["scenario"] = config["scenario"]
    result["n"] = config.get("n")
    result["peak_rss_mb"] = peak_rss_mb()
    print("BENCH-RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
