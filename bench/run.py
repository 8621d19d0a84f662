"""The benchmark suite: ``make bench`` (or ``python -m bench.run`` in the bench virtualenv).

Knobs (environment, or make variables of the same name):

- ``QUICK=1``: a short run for development (small N, one round, short target runs).
- ``N``: messages per sender and round (default 2000; quick 300).
- ``K``: rounds; every sender runs once per round, every other round in reverse order (default 3;
  quick 1).
- ``PARTS``: comma list of ``throughput``, ``journal`` (targets 1 and 2 on SQLite in its default
  journal mode), ``tls``, ``throttle``, ``latency``, ``parallel``, ``sites`` (default: all).
- ``SITES``, ``PER_SITE``, ``DELAY_MS``: the sites part: sites behind one sink, messages per
  site, the sink's delay before every reply (defaults 50, 20, 30; quick 10, 5, 30);
  ``SITES_CONNECTIONS``: ``WAGTAIL_OWN_SMTP_CONNECTIONS`` of its second app run (default: the
  larger of 64 and ``SITES``).
- ``PEERS=0``: leave out django-post_office and django-mailer.
- ``BENCH_DB=postgres``: run the throughput part on PostgreSQL too (parallel always does).
- ``BENCH_SQLITE_JOURNAL``: the SQLite journal mode (default ``wal``, as the README recommends
  for a worker sharing the file with the site; ``delete`` is Django's default).
- ``PROFILE=1``: profile one in-process drain with pyinstrument (done anyway when the drain
  misses its target).
- ``KEEP_DB=1``: keep the run's SQLite database (deleted otherwise); ``PROFILE_HTML=1``: write
  pyinstrument's HTML view next to the text profile (tens of MB).

Writes bench/results/bench-<time>.json and .txt (and latest.json / latest.txt) and prints the
table and the targets.
"""

import json
import os
import shutil
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import psutil

from bench import report
from bench.sink import Sink

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
RESULTS = BENCH_DIR / "results"
PYTHON = sys.executable

# The senders a target compares stand side by side: raw smtplib next to the drain (1), Django's
# backend and post_office on either side of the end-to-end run (2a, 2b).
THROUGHPUT = ["raw_smtplib", "app_inprocess", "django_smtp", "app_cluster", "post_office", "mailer"]
PEER_SCENARIOS = {"post_office": "post_office", "mailer": "mailer"}
JOURNAL_DB = "bench-delete-journal.sqlite3"  # the journal part's SQLite file
# A throughput or sites measurement during which other processes (or the host, stealing time)
# used more cores than this is taken again, up to QUIET_TRIES times in all; the quietest counts.
NOISE_MAX = 0.15
QUIET_TRIES = 3


def env_int(name, default):
    value = os.environ.get(name, "")
    return int(value) if value.strip() else default


class Bench:
    def __init__(self):
        self.quick = os.environ.get("QUICK", "") not in ("", "0")
        self.n = env_int("N", 300 if self.quick else 2000)
        self.k = env_int("K", 1 if self.quick else 3)
        parts = os.environ.get("PARTS", "").strip()
        self.parts = (
            [p.strip() for p in parts.split(",") if p.strip()]
            if parts
            else ["throughput", "journal", "tls", "throttle", "latency", "parallel", "sites"]
        )
        self.sites = env_int("SITES", 10 if self.quick else 50)
        self.per_site = env_int("PER_SITE", 5 if self.quick else 20)
        self.delay_ms = env_int("DELAY_MS", 30)
        self.sites_connections = env_int("SITES_CONNECTIONS", max(64, self.sites))
        self.with_peers = os.environ.get("PEERS", "1") not in ("0", "")
        self.db = os.environ.get("BENCH_DB", "sqlite")
        self.profile = os.environ.get("PROFILE", "") not in ("", "0")
        self.stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        self.run_dir = RESULTS / f"run-{self.stamp}"
        self.sinks = {}
        self.db_env = {}
        self.notes = []
        self.pg_databases = []
        self.results = {
            "started": datetime.now().isoformat(timespec="seconds"),
            "machine": machine(),
            "settings": {
                "n": self.n,
                "k": self.k,
                "quick": self.quick,
                "db": self.db
                if self.db == "postgres"
                else f"sqlite ({os.environ.get('BENCH_SQLITE_JOURNAL', 'wal')} journal)",
                "parts": self.parts,
                "pipelining": os.environ.get("BENCH_PIPELINING", "1") != "0",
                "noise_max_cores": NOISE_MAX,
            },
            "rounds": [],
            "notes": self.notes,
        }

    # -- infrastructure ------------------------------------------------------------------------
    def log(self, text):
        print(f"[bench {time.strftime('%H:%M:%S')}] {text}", flush=True)

    def setup(self, sinks=("plain", "tls", "delay", "sites")):
        sys.path.insert(0, str(REPO))
        from example_project.local_smtp import make_certificates

        self.run_dir.mkdir(parents=True, exist_ok=True)
        certs = make_certificates(
            self.run_dir / "certs", hostnames=("127.0.0.1", "localhost"), ca_name="bench CA"
        )
        self.ca_file = str(certs["ca"])
        made = {
            "plain": lambda: Sink("none"),
            "tls": lambda: Sink("starttls", cert_dir=self.run_dir / "certs"),
            "delay": lambda: Sink("none", delay=0.02),
            "sites": lambda: Sink("none", delay=self.delay_ms / 1000),
        }
        for name in sinks:
            if name == "sites" and "sites" not in self.parts:
                continue
            self.sinks[name] = made[name]().start()
            sink = self.sinks[name]
            self.log(f"sink {sink.name} on 127.0.0.1:{sink.port} (pid {sink.pid})")

    def setup_databases(self):
        self.peers = self._available_peers() if self.with_peers else []
        if self.with_peers:
            for name in PEER_SCENARIOS:
                if name not in self.peers:
                    self.notes.append(
                        f"{name} is not installed in this virtualenv "
                        "(bench/requirements-peers.txt): skipped."
                    )
        if self.db == "postgres":
            self.db_env = self._database("main")
        else:
            sqlite_path = str(self.run_dir / "bench.sqlite3")
            self.db_env = {"BENCH_DB": "sqlite", "BENCH_SQLITE_PATH": sqlite_path}
            self._migrate(self.db_env)

    def _available_peers(self):
        probe = subprocess.run(
            [PYTHON, "-c", "import bench.settings as s; print(','.join(s.PEERS))"],
            cwd=REPO,
            capture_output=True,
            text=True,
        )
        return [p for p in probe.stdout.strip().split(",") if p]

    def _database(self, label):
        """A fresh PostgreSQL database for this run (dropped at the end), migrated."""
        import psycopg

        name = f"wagtail_own_smtp_bench_{label}_{os.getpid()}"
        with psycopg.connect(
            host="127.0.0.1", user="postgres", dbname="postgres", autocommit=True
        ) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
            conn.execute(f'CREATE DATABASE "{name}"')
        self.pg_databases.append(name)
        env = {"BENCH_DB": "postgres", "BENCH_PG_NAME": name}
        self._migrate(env)
        return env

    def _migrate(self, db_env):
        started = time.monotonic()
        subprocess.run(
            [PYTHON, str(BENCH_DIR / "manage.py"), "migrate", "--verbosity", "0"],
            cwd=REPO,
            env={**os.environ, **db_env},
            check=True,
        )
        self.log(
            f"migrated {db_env.get('BENCH_PG_NAME') or 'SQLite'} in "
            f"{time.monotonic() - started:.0f} s"
        )

    def teardown(self):
        for sink in self.sinks.values():
            sink.stop()
        # The SQLite database is scratch (tens of MB a run); KEEP_DB=1 keeps it for a look.
        if os.environ.get("KEEP_DB", "") in ("", "0"):
            for name in ("bench.sqlite3", JOURNAL_DB):
                Path(self.run_dir / name).unlink(missing_ok=True)
        if self.pg_databases:
            import psycopg

            with psycopg.connect(
                host="127.0.0.1", user="postgres", dbname="postgres", autocommit=True
            ) as conn:
                for name in self.pg_databases:
                    conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    # -- one measurement -----------------------------------------------------------------------
    def measure(
        self, scenario, sink="plain", db_env=None, timeout=900, module="bench.scenarios", **config
    ):
        sink = self.sinks[sink]
        config.update(
            scenario=scenario,
            n=config.get("n", self.n),
            sink=sink.describe(),
            ca_file=self.ca_file,
            results_dir=str(self.run_dir),
            cluster_log=str(self.run_dir / "qcluster.log"),
        )
        env = {
            **os.environ,
            **(db_env or self.db_env),
            "BENCH_SMTP_PORT": str(sink.port),
            "BENCH_SMTP_SECURITY": sink.security,
            "BENCH_CA_FILE": self.ca_file,
            "PYTHONUNBUFFERED": "1",
        }
        if sink.security == "starttls":
            env["SSL_CERT_FILE"] = self.ca_file  # Django's SMTP backend trusts the bench CA
        sink.reset()
        load = Load(sink.pid)
        process = subprocess.run(
            [PYTHON, "-m", module, json.dumps(config)],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        lines = [line for line in process.stdout.splitlines() if line.startswith("BENCH-RESULT ")]
        if process.returncode != 0 or not lines:
            tail = (process.stderr or process.stdout).strip().splitlines()[-15:]
            self.log(f"{scenario} failed:\n    " + "\n    ".join(tail))
            return {"scenario": scenario, "error": "\n".join(tail)}
        result = json.loads(lines[-1].removeprefix("BENCH-RESULT "))
        result["foreign_cpu"] = load.foreign()
        stats = sink.stats()
        arrivals = [at for at, _seq in stats["arrivals"]]
        result["sink"] = {
            "name": sink.name,
            "messages": stats["messages"],
            "recipients": stats["recipients"],
            "connections": stats["connections"],
            "first_arrival": min(arrivals, default=None),
            "last_arrival": max(arrivals, default=None),
        }
        return result

    def _quiet_measure(self, scenario, **config):
        """``measure``, again while other processes used more than ``NOISE_MAX`` cores (up to
        ``QUIET_TRIES`` in all); the quietest try counts, ``tries`` tells how many there were."""
        tries = []
        for _ in range(QUIET_TRIES):
            result = self.measure(scenario, **config)
            tries.append(result)
            if "error" in result or result["foreign_cpu"] <= NOISE_MAX:
                break
            self.log(
                f"  {scenario}: other processes used {result['foreign_cpu']:.2f} cores "
                "meanwhile, measuring again"
            )
        quietest = min(tries, key=lambda result: result.get("foreign_cpu", 0.0))
        quietest["tries"] = len(tries)
        return quietest

    # -- parts ---------------------------------------------------------------------------------
    def throughput(self):
        scenarios = [s for s in THROUGHPUT if s not in PEER_SCENARIOS or s in self.peers]
        self._rounds("rounds", scenarios, self.db_env)

    def journal(self):
        """Targets 1 and 2 again on SQLite in Django's default rollback journal, where every
        commit waits for the disk: the senders that touch the database, and the two references
        for the ratios (django-mailer left out for time)."""
        path = self.run_dir / JOURNAL_DB
        db_env = {"BENCH_DB": "sqlite", "BENCH_SQLITE_PATH": str(path)}
        db_env["BENCH_SQLITE_JOURNAL"] = "delete"
        self._migrate(db_env)
        scenarios = [
            s for s in THROUGHPUT if s != "mailer" and (s != "post_office" or s in self.peers)
        ]
        self.results["journal_rounds"] = []
        self._rounds("journal_rounds", scenarios, db_env, label="delete journal, ")

    def _rounds(self, key, scenarios, db_env, label=""):
        """K rounds of ``scenarios``, every other one in reverse order.

        This machine's speed drifts by more than the differences measured (a shared host: the
        same sender's rate varies up to 2x within a minute), so the two senders of a target's
        ratio run moments apart, side by side in ``THROUGHPUT``; reversing every other round
        lets neither always go first.
        """
        for round_index in range(self.k):
            order = scenarios if round_index % 2 == 0 else scenarios[::-1]
            self.log(f"round {round_index + 1}/{self.k}: {label}{', '.join(order)} (N={self.n})")
            round_results = {}
            for scenario in order:
                result = self._quiet_measure(scenario, db_env=db_env)
                round_results[scenario] = result
                self.log("  " + report.one_line(result, self.n))
            self.results[key].append(round_results)
            self._save()

    def tls(self):
        """Raw smtplib, Django and the app's drain over STARTTLS + AUTH (one round, N/4)."""
        n = max(self.n // 4, 50)
        self.log(f"STARTTLS + AUTH: raw_smtplib, django_smtp, app_inprocess (N={n})")
        self.results["tls"] = {
            scenario: self.measure(scenario, sink="tls", n=n)
            for scenario in ("raw_smtplib", "django_smtp", "app_inprocess")
        }
        for result in self.results["tls"].values():
            self.log("  " + report.one_line(result, n))
        self._save()

    def throttle(self):
        count = 16 if self.quick else 40
        self.log(f"throttle: min_interval 0.25 s over {count} messages; hourly cap 12")
        self.results["throttle"] = self.measure("throttle", n=count, interval_messages=count)
        self._save()

    def latency(self):
        count = 6 if self.quick else 20
        self.log(f"latency: {count} single messages to an idle cluster")
        self.results["latency"] = self.measure("latency", messages=count)
        self._save()

    def parallel(self):
        per_site = 8 if self.quick else 25
        self.log(f"parallel: 8 sites x {per_site} messages, sink 20 ms per command, PostgreSQL")
        db_env = self._database("parallel")
        self.results["parallel"] = self.measure(
            "parallel", sink="delay", db_env=db_env, per_site=per_site, sites=8, workers=[1, 4]
        )
        self._save()

    def sites_part(self):
        """Target 7: N sites behind one sink that answers every command after D ms (PostgreSQL):
        raw smtplib with a thread per site, then the app through qcluster with the default
        connections and with connections >= sites."""
        sites, per_site = self.sites, self.per_site
        self.log(
            f"sites: {sites} sites x {per_site} messages, sink {self.delay_ms} ms before every "
            "reply, PostgreSQL"
        )
        db_env = self._database("sites")
        common = {"sink": "sites", "db_env": db_env, "module": "bench.sites"}
        common.update(sites=sites, per_site=per_site, n=sites * per_site)
        results = {"sites": sites, "per_site": per_site, "delay": self.delay_ms / 1000}
        for key, scenario, extra in (
            ("raw", "sites_raw", {}),
            ("app_default", "sites_cluster", {"workers": 2}),
            ("app_wide", "sites_cluster", {"workers": 2, "connections": self.sites_connections}),
        ):
            results[key] = self._quiet_measure(scenario, **common, **extra)
            self.log("  " + report.one_line(results[key], sites * per_site))
            self.results["sites"] = results
            self._save()
        targets = (report.sites_summary(results) or {}).get("targets", {})
        if self.profile or any(t["met"] is False for t in targets.values()):
            # py-spy takes CPU of its own on this machine: a separate run, not the figures above
            profiles = {}
            for key, extra in (
                ("app_default", {}),
                ("app_wide", {"connections": self.sites_connections}),
            ):
                path = self.run_dir / f"profile-sites-{key}.txt"
                self.log(f"profiling sites {key} through qcluster (py-spy) -> {path}")
                result = self.measure(
                    "sites_cluster", **common, workers=2, profile=str(path), **extra
                )
                profiles[key] = {"path": str(path), "result": result}
            self.results["sites_profiles"] = profiles
            self._save()

    def profile_drain(self):
        path = self.run_dir / "profile-drain.txt"
        self.log(f"profiling one in-process drain (pyinstrument) -> {path}")
        result = self.measure("app_inprocess", profile=str(path))
        self.results["profile"] = {"path": str(path), "result": result}
        self._save()

    # -- output --------------------------------------------------------------------------------
    def _save(self):
        path = self.run_dir / "bench.json"
        path.write_text(json.dumps(self.results, indent=2, default=str))

    def finish(self):
        self.results["finished"] = datetime.now().isoformat(timespec="seconds")
        self.results["machine"]["loadavg_end"] = os.getloadavg()
        summary = report.summarise(self.results)
        self.results["summary"] = summary
        text = report.render(self.results, summary)
        self._save()
        (self.run_dir / "bench.txt").write_text(text)
        for suffix in ("json", "txt"):
            shutil.copyfile(self.run_dir / f"bench.{suffix}", RESULTS / f"latest.{suffix}")
        print(text)
        print(f"Results: {self.run_dir / 'bench.txt'} and {self.run_dir / 'bench.json'}")
        print(f"         (copied to {RESULTS / 'latest.txt'} and {RESULTS / 'latest.json'})")

    def run(self):
        started = time.monotonic()
        try:
            self.setup()
            if set(self.parts) & {"throughput", "journal", "tls", "throttle", "latency"}:
                self.setup_databases()
            for part in self.parts:
                if part == "throughput":
                    self.throughput()
                elif part in ("journal", "tls", "throttle", "latency", "parallel"):
                    getattr(self, part)()
                elif part == "sites":
                    self.sites_part()
                else:
                    self.notes.append(f"unknown part {part!r} ignored")
            summary = report.summarise(self.results)
            drain_ratio = summary.get("targets", {}).get("drain_vs_raw", {}).get("value")
            if "throughput" in self.parts and (
                self.profile or (drain_ratio is not None and drain_ratio < 0.8)
            ):
                self.profile_drain()
        finally:
            self.teardown()
        self.results["duration_s"] = time.monotonic() - started
        self.finish()


class Load:
    """The machine's CPU used by others while a measurement ran (the noise), in cores."""

    def __init__(self, sink_pid):
        self.sink = psutil.Process(sink_pid)
        self.start = time.monotonic()
        self.busy = self._busy()
        self.ours = self._ours()

    @staticmethod
    def _busy():
        times = psutil.cpu_times()
        return sum(times) - times.idle - getattr(times, "iowait", 0.0)

    def _ours(self):
        me = psutil.Process().cpu_times()
        sink = self.sink.cpu_times()
        return me.user + me.system + me.children_user + me.children_system + sink.user + sink.system

    def foreign(self):
        wall = time.monotonic() - self.start
        other = (self._busy() - self.busy) - (self._ours() - self.ours)
        return max(other, 0.0) / wall if wall > 0 else 0.0


def machine():
    import platform

    import django

    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "django": django.get_version(),
        "platform": platform.platform(),
        "loadavg_start": os.getloadavg(),
    }


def main():
    RESULTS.mkdir(exist_ok=True)
    Bench().run()


if __name__ == "__main__":
    main()
