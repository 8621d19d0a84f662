"""Target 5, scale on PostgreSQL: ``make bench-scale`` (``python -m bench.scale``).

A queue of 1,000 messages (10 sites x 100) and one of 100,000 (1,000 sites x 100; QUICK=1:
10,000 over 100 sites). For each: one dispatch run with a time budget, as a django-q2 worker
runs it (cost per message sent, peak RSS of the process), and how long ``own_smtp_status`` and
the admin pages take with the queue full.

Knobs: ``QUICK=1``; ``SIZES=large`` (only one of the two); ``BUDGET`` (seconds of the dispatch
run, default 30; quick 15); ``PROFILE=1`` (run each dispatch once more under pyinstrument:
profile-dispatch-<size>.txt; own_smtp_status too: profile-status-<size>.txt). The query plans
(EXPLAIN ANALYZE) of ``own_smtp_status``, the outbox page and the dispatcher's claim go to
plans-<size>.txt. The table is vacuumed and analyzed after it was filled, as autovacuum would.
"""

import os
import time

from bench import report
from bench import run as bench_run


class ScaleBench(bench_run.Bench):
    def __init__(self):
        super().__init__()
        self.budget = bench_run.env_int("BUDGET", 15 if self.quick else 30)
        large_sites = 100 if self.quick else 1000
        self.sizes = [("small", 10, 100), ("large", large_sites, 100)]
        only = os.environ.get("SIZES", "").split(",")
        if any(only):
            self.sizes = [size for size in self.sizes if size[0] in only]
        self.results["settings"].update(budget=self.budget, sizes=self.sizes, db="postgres")
        self.results["scale"] = {}

    def run(self):
        started = time.monotonic()
        try:
            self.setup(sinks=("plain",))
            db_env = self._database("scale")
            for label, sites, per_site in self.sizes:
                self.log(f"{label}: filling {sites} sites x {per_site} messages")
                fill = self.measure(
                    "scale_fill", db_env=db_env, sites=sites, per_site=per_site, timeout=1800
                )
                self.log(f"  filled in {fill.get('wall', 0):.0f} s; timing status and pages")
                plans = self.run_dir / f"plans-{label}.txt"
                status_profile = {}
                if self.profile:
                    status_profile["profile"] = str(self.run_dir / f"profile-status-{label}.txt")
                status = self.measure(
                    "scale_status", db_env=db_env, plans=str(plans), timeout=1800, **status_profile
                )
                self.log(f"  one dispatch run, budget {self.budget} s")
                dispatch = self.measure(
                    "scale_dispatch", db_env=db_env, budget=self.budget, timeout=1800
                )
                self.log("  " + summary_line(dispatch))
                if self.profile:
                    path = self.run_dir / f"profile-dispatch-{label}.txt"
                    self.log(f"  profiling the same run again -> {path}")
                    self.measure("scale_fill", db_env=db_env, sites=sites, per_site=per_site)
                    self.measure(
                        "scale_dispatch",
                        db_env=db_env,
                        budget=self.budget,
                        profile=str(path),
                        timeout=1800,
                    )
                self.results["scale"][label] = {
                    "sites": sites,
                    "per_site": per_site,
                    "fill": fill,
                    "status": status,
                    "dispatch": dispatch,
                }
                self._save()
        finally:
            self.teardown()
        self.results["duration_s"] = time.monotonic() - started
        self.finish_scale()

    def finish_scale(self):
        import shutil

        self.results["machine"]["loadavg_end"] = os.getloadavg()
        text = render(self.results)
        self._save()
        (self.run_dir / "scale.txt").write_text(text)
        shutil.copyfile(self.run_dir / "bench.json", bench_run.RESULTS / "latest-scale.json")
        shutil.copyfile(self.run_dir / "scale.txt", bench_run.RESULTS / "latest-scale.txt")
        print(text)
        print(f"Results: {self.run_dir / 'scale.txt'} and {self.run_dir / 'bench.json'}")


def summary_line(result):
    if "error" in result:
        return "ERROR"
    return (
        f"sent {result['sent']} in {result['phases']['dispatch']['wall']:.1f} s: "
        f"{result['ms_per_msg'] or 0:.2f} ms and {result['cpu_ms_per_msg'] or 0:.2f} ms CPU "
        f"per message, {result['connections']} connections, peak RSS "
        f"{result['peak_rss_mb']:.0f} MB"
    )


def render(results):
    scale = results["scale"]
    lines = [f"wagtail-own-smtp at scale on PostgreSQL ({results['started']})", ""]
    for label, item in scale.items():
        dispatch, status = item["dispatch"], item["status"]
        lines.append(f"{label}: {item['sites']} sites x {item['per_site']} messages queued")
        lines.append("  dispatch run: " + summary_line(dispatch))
        if "error" not in status:
            lines.append(
                f"  own_smtp_status: {status['own_smtp_status_seconds']:.2f} s "
                f"({status.get('own_smtp_status_queries', '?')} SQL queries)"
            )
            for page, found in status["pages"].items():
                lines.append(
                    f"  {page}: "
                    + (f"{found['seconds']:.2f} s (HTTP {found['status']})" if found else "none")
                )
    lines += ["", "Targets:"]
    small, large = scale.get("small"), scale.get("large")

    def ok(flag):
        return {True: "MET", False: "NOT MET", None: "n/a"}[flag]

    if small and large and "error" not in small["dispatch"] and "error" not in large["dispatch"]:
        for key, name in (("ms_per_msg", "wall"), ("cpu_ms_per_msg", "CPU")):
            a, b = small["dispatch"][key], large["dispatch"][key]
            ratio = b / a if a and b else None
            flag = None if ratio is None else ratio <= 1.5
            lines.append(
                f"  [{ok(flag):^7}] 5a. dispatch {name} per message with {large['sites'] * 100:,}"
                f" queued within 1.5x of 1,000 queued: {_x(ratio)}"
            )
        rss = large["dispatch"]["peak_rss_mb"]
        lines.append(f"  [{ok(rss < 200):^7}] 5b. worker peak RSS < 200 MB: {rss:.0f} MB")
    if large and "error" not in large["status"]:
        seconds = large["status"]["own_smtp_status_seconds"]
        lines.append(f"  [{ok(seconds < 1):^7}] 5c. own_smtp_status < 1 s: {seconds:.2f} s")
        outbox = large["status"]["pages"].get("outbox page")
        if outbox:
            flag = outbox["seconds"] < 1 and outbox["status"] == 200
            lines.append(f"  [{ok(flag):^7}] 5d. outbox page < 1 s: {outbox['seconds']:.2f} s")
        else:
            lines.append("  [  n/a  ] 5d. outbox page < 1 s: the app has no outbox page yet")
    machine = results["machine"]
    lines.append(
        f"Load average {report.fmt_load(machine['loadavg_start'])} at start, "
        f"{report.fmt_load(machine.get('loadavg_end'))} at end."
    )
    return "\n".join(lines) + "\n"


def _x(ratio):
    return "-" if ratio is None else f"{ratio:.2f}x"


def main():
    bench_run.RESULTS.mkdir(exist_ok=True)
    ScaleBench().run()


if __name__ == "__main__":
    main()
