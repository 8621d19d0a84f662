"""Turning the measurements into the table, the targets and the noise statement."""

import statistics

from bench.figures import fmt, target
from bench.report_sites import render_sites, sites_summary

# key, label, scenario, phases summed, whether the phases talk SMTP (connections counted)
ROWS = [
    ("raw", "raw smtplib, 1 connection (prebuilt bytes)", "raw_smtplib", ["send"], True),
    ("django", "Django SMTP backend, 1 connection", "django_smtp", ["send"], True),
    ("app_enqueue", "app: enqueue (backend -> queue)", "app_inprocess", ["enqueue"], False),
    ("app_drain", "app: drain (dispatcher, in-process)", "app_inprocess", ["drain"], True),
    (
        "app_e2e_inprocess",
        "app: enqueue + drain, in-process",
        "app_inprocess",
        ["enqueue", "drain"],
        True,
    ),
    ("app_e2e_cluster", "app: end to end via qcluster", "app_cluster", ["e2e"], True),
    ("po_enqueue", "post_office: enqueue", "post_office", ["enqueue"], False),
    ("po_drain", "post_office: drain (send_queued_mail)", "post_office", ["drain"], True),
    ("po_e2e", "post_office: enqueue + drain", "post_office", ["enqueue", "drain"], True),
    ("mailer_enqueue", "mailer: enqueue", "mailer", ["enqueue"], False),
    ("mailer_drain", "mailer: drain (send_mail)", "mailer", ["drain"], True),
    ("mailer_e2e", "mailer: enqueue + drain", "mailer", ["enqueue", "drain"], True),
]


def row_figures(result, phases, talks_smtp):
    """msgs/s, CPU ms per message, peak RSS, connections of one result, or None."""
    if not result or "error" in result:
        return None
    n = result.get("n") or 0
    try:
        wall = sum(result["phases"][p]["wall"] for p in phases)
        cpu = sum(result["phases"][p]["cpu"] for p in phases)
    except KeyError:
        return None
    rss = max(result.get("peak_rss_mb") or 0, result.get("cluster_peak_rss_mb") or 0)
    delivered = result.get("sink", {}).get("messages", 0)
    return {
        "msgs_per_s": n / wall if wall else None,
        "cpu_ms_per_msg": cpu / n * 1000 if n else None,
        "peak_rss_mb": rss,
        "connections": result.get("sink", {}).get("connections") if talks_smtp else 0,
        "delivered": delivered if talks_smtp else None,
        "complete": (delivered >= n) if talks_smtp else True,
    }


def _median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def throughput_summary(rounds, mode=""):
    """The senders' table (medians over rounds) and targets 1, 2a and 2b; ``mode`` tells the
    journal mode in the targets' labels when it is not the run's own."""
    per_round = []
    for round_results in rounds:
        figures = {}
        for key, _label, scenario, phases, talks in ROWS:
            figures[key] = row_figures(round_results.get(scenario), phases, talks)
        raw = (figures.get("raw") or {}).get("msgs_per_s")
        for fig in figures.values():
            if fig is not None:
                fig["ratio_to_raw"] = fig["msgs_per_s"] / raw if raw and fig["msgs_per_s"] else None
        per_round.append(figures)
    table = []
    for key, label, _scenario, _phases, _talks in ROWS:
        found = [r[key] for r in per_round if r.get(key)]
        if not found:
            continue
        table.append(
            {
                "key": key,
                "label": label,
                "rounds": len(found),
                **{
                    name: _median([f[name] for f in found])
                    for name in (
                        "msgs_per_s",
                        "ratio_to_raw",
                        "cpu_ms_per_msg",
                        "peak_rss_mb",
                        "connections",
                    )
                },
                "complete": all(f["complete"] for f in found),
            }
        )

    def ratio(a, b):
        values = []
        for figures in per_round:
            fa, fb = figures.get(a), figures.get(b)
            if fa and fb and fa["msgs_per_s"] and fb["msgs_per_s"]:
                values.append(fa["msgs_per_s"] / fb["msgs_per_s"])
        return _median(values)

    targets = {}
    if per_round:
        targets["drain_vs_raw"] = target(
            f"1. drain >= 0.8x raw smtplib{mode}", ratio("app_drain", "raw"), 0.8
        )
        targets["e2e_vs_django"] = target(
            f"2a. end to end (qcluster) >= 1.0x Django SMTP backend{mode}",
            ratio("app_e2e_cluster", "django"),
            1.0,
        )
        if any(r.get("po_e2e") for r in per_round):
            targets["e2e_vs_post_office"] = target(
                f"2b. end to end (qcluster) >= 1.5x post_office end to end{mode}",
                ratio("app_e2e_cluster", "po_e2e"),
                1.5,
            )
    return table, per_round, targets


def summarise(results):
    table, per_round, targets = throughput_summary(results.get("rounds", []))
    journal_table, _per_round, journal_targets = throughput_summary(
        results.get("journal_rounds", []), mode=" (SQLite's default journal)"
    )
    targets.update({f"{key}_delete_journal": t for key, t in journal_targets.items()})
    throttle = results.get("throttle")
    if throttle and "error" not in throttle:
        interval, cap = throttle["interval"], throttle["cap"]
        ok = (
            interval["arrived"] == interval["messages"]
            and interval["min_gap"] >= interval["min_interval"]
            and interval["median_gap"] <= interval["min_interval"] + 0.02
        )
        targets["throttle_interval"] = {
            "label": "3a. min_interval 0.25 s: no gap < 0.25 s, median gap <= 0.27 s",
            "value": f"min {interval['min_gap']:.3f} s, median {interval['median_gap']:.3f} s, "
            f"max {interval['max_gap']:.3f} s over {interval['arrived']} messages",
            "met": ok,
        }
        ok = (
            cap["recipients_sent"] == cap["max_per_hour"]
            and cap["second_run_sent"] == 0
            and cap["messages_waiting"] == cap["messages"] - cap["messages_sent"]
        )
        targets["throttle_cap"] = {
            "label": f"3b. hourly cap {cap['max_per_hour']}: exactly that many recipients, "
            "the rest wait",
            "value": f"{cap['recipients_sent']} recipients in {cap['messages_sent']} messages "
            f"sent, {cap['messages_waiting']} messages waiting for {cap['waiting_for']!r} "
            f"(next slot in {_fmt_seconds(cap['next_slot_in_seconds'])}), "
            f"second run sent {cap['second_run_sent']}",
            "met": ok,
        }
    elif throttle:
        targets["throttle"] = {"label": "3. throttle", "value": "error", "met": False}
    latency = results.get("latency")
    if latency and "error" not in latency:
        targets["latency"] = {
            "label": "4. idle cluster: send_mail -> accepted p50 < 1 s, p95 < 2 s",
            "value": f"p50 {latency['p50']:.3f} s, p95 {latency['p95']:.3f} s, "
            f"max {latency['max']:.3f} s ({latency['arrived']}/{latency['messages']} arrived)",
            "met": latency["arrived"] == latency["messages"]
            and latency["p50"] < 1
            and latency["p95"] < 2,
        }
    elif latency:
        targets["latency"] = {"label": "4. latency", "value": "error", "met": False}
    parallel = results.get("parallel")
    if parallel and "error" not in parallel:
        runs = parallel["runs"]
        one, many = runs.get("1"), runs.get("4")
        if one and many:
            targets["parallel"] = target(
                "6. 8 sites, 20 ms per command, one conversation per dispatcher: "
                "4 workers >= 3x 1 worker",
                many["msgs_per_s"] / one["msgs_per_s"],
                3.0,
            )
    elif parallel:
        targets["parallel"] = {"label": "6. parallel sites", "value": "error", "met": False}
    sites = sites_summary(results.get("sites"))
    if sites:
        targets.update(sites.pop("targets"))
    targets["scale"] = {
        "label": "5. scale on PostgreSQL (100,000 messages, 1,000 sites)",
        "value": "not part of `make bench`: run `make bench-scale`",
        "met": None,
    }
    return {
        "table": table,
        "journal_table": journal_table,
        "per_round": per_round,
        "targets": targets,
        "sites": sites,
        "noise": noise(results),
    }


def _fmt_seconds(seconds):
    if seconds is None:
        return "-"
    return f"{seconds / 60:.0f} min" if seconds >= 120 else f"{seconds:.1f} s"


def noise(results):
    raw = []
    for round_results in results.get("rounds", []):
        fig = row_figures(round_results.get("raw_smtplib"), ["send"], True)
        if fig:
            raw.append(fig["msgs_per_s"])
    foreign = []
    for item in _all_results(results):
        if "foreign_cpu" in item:
            foreign.append(item["foreign_cpu"])
    repeated = sum(1 for result in _all_results(results) if result.get("tries", 1) > 1)
    machine = results.get("machine", {})
    cv = statistics.stdev(raw) / statistics.mean(raw) if len(raw) > 1 else None
    return {
        "raw_smtplib_cv": cv,
        "raw_smtplib_rounds": raw,
        "foreign_cpu_median_cores": _median(foreign),
        "foreign_cpu_max_cores": max(foreign) if foreign else None,
        "measured_again": repeated,
        "noise_max_cores": results.get("settings", {}).get("noise_max_cores"),
        "loadavg_start": machine.get("loadavg_start"),
        "loadavg_end": machine.get("loadavg_end"),
        "cpus": machine.get("cpus"),
    }


def _all_results(results):
    for round_results in results.get("rounds", []) + results.get("journal_rounds", []):
        yield from round_results.values()
    for name in ("throttle", "latency", "parallel"):
        if isinstance(results.get(name), dict):
            yield results[name]
    for key in ("raw", "app_default", "app_wide"):
        if isinstance((results.get("sites") or {}).get(key), dict):
            yield results["sites"][key]
    yield from (results.get("tls") or {}).values()


def one_line(result, n):
    """A progress line for one measurement."""
    if "error" in result:
        return f"{result['scenario']}: ERROR"
    parts = []
    for name, phase in result.get("phases", {}).items():
        rate = n / phase["wall"] if phase["wall"] else float("nan")
        parts.append(f"{name} {rate:,.0f}/s ({phase['cpu'] / n * 1000:.2f} ms CPU/msg)")
    sink = result.get("sink", {})
    return (
        f"{result['scenario']}: "
        + ", ".join(parts)
        + f"; server got {sink.get('messages')} in {sink.get('connections')} connection(s); "
        f"others' CPU {result.get('foreign_cpu', 0):.2f} cores"
    )


def render(results, summary):
    settings = results["settings"]
    machine = results["machine"]
    lines = [
        "wagtail-own-smtp benchmarks "
        f"({results['started']}, N={settings['n']} messages of ~2.2 KB, K={settings['k']} "
        f"round(s), {settings['db']}, Python {machine['python']}, Django {machine['django']}, "
        f"{machine['cpus']} CPUs)",
        "The sinks offer PIPELINING (RFC 2920), which the app uses and raw smtplib, Django's"
        " backend and the peers do not"
        if settings.get("pipelining", True)
        else "The sinks do not offer PIPELINING (BENCH_PIPELINING=0)",
    ]
    lines += render_table(summary["table"])
    if summary["journal_table"]:
        lines += [
            "",
            "The same senders on SQLite in its default journal mode (delete: every commit",
        ]
        lines += ["waits for the disk), in rounds of their own:"]
        lines += render_table(summary["journal_table"])
    if summary["table"]:
        lines += [
            "",
            "Medians over rounds; 'x raw' is the ratio to raw smtplib in the same round. CPU is",
            "the sender's process (with qcluster: plus every cluster process), not the sink's; on",
            "SQLite the database work is in that CPU, on PostgreSQL the server's share is not.",
            "Peak RSS: the sender's process (with qcluster: the largest cluster process, if "
            "larger).",
        ]
    tls = results.get("tls")
    if tls:
        lines += ["", "Over STARTTLS + AUTH (one round):"]
        raw = row_figures(tls.get("raw_smtplib"), ["send"], True)
        for key, scenario, phases in (
            ("raw smtplib, 1 connection", "raw_smtplib", ["send"]),
            ("Django SMTP backend, 1 connection", "django_smtp", ["send"]),
            ("app: drain (dispatcher, in-process)", "app_inprocess", ["drain"]),
        ):
            fig = row_figures(tls.get(scenario), phases, True)
            if fig:
                ratio = fig["msgs_per_s"] / raw["msgs_per_s"] if raw else None
                lines.append(
                    f"  {key:<44} {fmt(fig['msgs_per_s'], ',.0f'):>8} "
                    f"{fmt(ratio, '.2f'):>6} {fmt(fig['cpu_ms_per_msg'], '.2f'):>10} "
                    f"{fig['connections']:>13} conn"
                )
    parallel = results.get("parallel")
    if parallel and "error" not in parallel:
        lines += [
            "",
            f"Parallel sites ({parallel['sites']} sites x {parallel['per_site']} messages, "
            f"{parallel['delay'] * 1000:.0f} ms per SMTP command, PostgreSQL, one conversation "
            "per dispatcher):",
        ]
        for run in parallel["runs"].values():
            sent = [r["sent"] for r in run["per_worker"]]
            lines.append(
                f"  {run['workers']} worker(s): {run['msgs_per_s']:.1f} msgs/s, "
                f"{run['wall']:.1f} s, {run['connections']} connections, "
                f"sent per worker {sent}"
            )
    lines += render_sites(results.get("sites"), summary.get("sites"))
    lines += ["", "Targets:"]
    for verdict in summary["targets"].values():
        value = verdict["value"]
        if isinstance(value, float):
            value = f"{value:.2f}x"
        status = {True: "MET", False: "NOT MET", None: "n/a"}[verdict["met"]]
        lines.append(f"  [{status:^7}] {verdict['label']}: {value}")
    lines += ["", "Noise: " + noise_text(summary["noise"])]
    for note in results.get("notes", []):
        lines.append(f"Note: {note}")
    profile = results.get("profile")
    if profile:
        lines.append(f"Profile of one in-process drain: {profile['path']}")
    return "\n".join(lines) + "\n"


def render_table(table):
    """The senders' rows: msgs/s, the ratio to raw smtplib, CPU, memory, connections."""
    if not table:
        return []
    lines = [
        "",
        f"{'sender':<46} {'msgs/s':>8} {'x raw':>6} {'CPU ms/msg':>10} {'peak RSS':>9} "
        f"{'SMTP conns':>10}",
    ]
    for row in table:
        flag = "" if row["complete"] else "  (not all delivered!)"
        lines.append(
            f"{row['label']:<46} {fmt(row['msgs_per_s'], ',.0f'):>8} "
            f"{fmt(row['ratio_to_raw'], '.2f'):>6} {fmt(row['cpu_ms_per_msg'], '.2f'):>10} "
            f"{fmt(row['peak_rss_mb'], '.0f'):>6} MB {fmt(row['connections'], '.0f'):>10}{flag}"
        )
    return lines


def noise_text(n):
    raw = n["raw_smtplib_rounds"]
    parts = []
    if raw:
        text = "raw smtplib over rounds " + ", ".join(f"{v:,.0f}" for v in raw) + " msgs/s"
        if n["raw_smtplib_cv"] is not None:
            text += f" (coefficient of variation {n['raw_smtplib_cv']:.1%})"
        parts.append(text)
    parts.append(
        "CPU used by other processes during the measurements: median "
        f"{fmt(n['foreign_cpu_median_cores'], '.2f')}, "
        f"max {fmt(n['foreign_cpu_max_cores'], '.2f')} of {n['cpus']} cores"
    )
    if n.get("measured_again"):
        parts.append(
            f"{n['measured_again']} measurement(s) taken again: others used more than"
            f" {fmt(n['noise_max_cores'], '.2f')} cores meanwhile (the quietest try counts)"
        )
    parts.append(
        f"load average {fmt_load(n['loadavg_start'])} at start, {fmt_load(n['loadavg_end'])} at end"
    )
    return "; ".join(parts) + "."


def fmt_load(load):
    return "-" if not load else "/".join(f"{v:.2f}" for v in load)
