"""The report of target 7, many sites' servers at once (bench/sites.py): its figures and lines."""

from bench.figures import fmt, target

# replies per message on a kept connection: MAIL, RCPT (one recipient), DATA's 354, the final 250
REPLIES_PER_MESSAGE = 4
SITES_ROWS = [
    ("raw", "a. raw smtplib, a thread + connection per site", "send", None),
    ("app_default", "b. app via qcluster, 2 workers, CONNECTIONS default", "e2e", 0.5),
    ("app_wide", "c. app via qcluster, 2 workers, CONNECTIONS {c}", "e2e", 0.8),
]


LETTERS = {"raw": "a", "app_default": "b", "app_wide": "c"}


def sites_summary(sites):
    """Target 7: msgs/s, ratio to the threaded reference, peak and average conversations, CPU per
    message of each sender; the physical limit; the targets."""
    if not sites:
        return None
    n = sites["sites"] * sites["per_site"]
    limit = sites["sites"] / (REPLIES_PER_MESSAGE * sites["delay"])
    rows = {}
    for key, label, phase, _threshold in SITES_ROWS:
        result = sites.get(key)
        if not result or "error" in result:
            rows[key] = {"label": label, "error": True}
            continue
        wall, cpu = result["phases"][phase]["wall"], result["phases"][phase]["cpu"]
        delivered = result.get("sink", {}).get("messages", 0)
        rows[key] = {
            "label": label.format(c=result.get("connections_setting")),
            "msgs_per_s": n / wall if wall else None,
            "wall": wall,
            "cpu_ms_per_msg": cpu / n * 1000,
            "peak_open": result.get("peak_open"),
            "open_on_average": result.get("open_on_average"),
            "connections": result.get("sink", {}).get("connections"),
            "first_arrival_after": result.get("first_arrival_after"),
            "sink_reply_lag_ms": result.get("sink_reply_lag_ms"),
            "ms_per_message_in_conversation": result.get("ms_per_message_in_conversation"),
            "enqueue_wall": result["phases"].get("enqueue", {}).get("wall"),
            "dispatch_runs": len(result.get("dispatch_runs") or []),
            "dispatch_runs_sending": sum(1 for r in result.get("dispatch_runs") or [] if r["sent"]),
            "complete": delivered >= n,
        }
    raw = rows["raw"].get("msgs_per_s")
    targets = {}
    for key, _label, _phase, threshold in SITES_ROWS:
        row = rows[key]
        row["ratio"] = row.get("msgs_per_s") / raw if raw and row.get("msgs_per_s") else None
        row["of_limit"] = row["msgs_per_s"] / limit if row.get("msgs_per_s") else None
        if threshold is not None:
            targets[f"sites_{key}"] = target(
                f"7{LETTERS[key]}. {sites['sites']} sites, {sites['delay'] * 1000:.0f} ms per "
                f"reply: {row['label'][3:]} >= {threshold}x raw smtplib (a thread per site)",
                row["ratio"] if row.get("complete") else None,
                threshold,
            )
            if not row.get("complete"):
                targets[f"sites_{key}"]["met"] = False
                targets[f"sites_{key}"]["value"] = "error or not all delivered"
    return {"limit": limit, "messages": n, "rows": rows, "targets": targets}


def render_sites(sites, summary):
    if not sites or not summary:
        return []
    lines = [
        "",
        f"Many sites' servers at once ({sites['sites']} sites x {sites['per_site']} messages, one "
        f"sink answering every SMTP command after {sites['delay'] * 1000:.0f} ms, PostgreSQL):",
        f"  {'sender':<54} {'msgs/s':>7} {'x (a)':>6} {'peak conv':>9} {'avg conv':>8} "
        f"{'CPU ms/msg':>10}",
    ]
    for key, *_rest in SITES_ROWS:
        row = summary["rows"][key]
        if row.get("error"):
            lines.append(f"  {row['label']:<54} error")
            continue
        flag = "" if row["complete"] else "  (not all delivered!)"
        lines.append(
            f"  {row['label']:<54} {fmt(row['msgs_per_s'], ',.1f'):>7} "
            f"{fmt(row['ratio'], '.2f'):>6} {fmt(row['peak_open'], 'd'):>9} "
            f"{fmt(row['open_on_average'], '.1f'):>8} {fmt(row['cpu_ms_per_msg'], '.2f'):>10}"
            f"{flag}"
        )
    lines.append(
        f"  physical limit: sites / ({REPLIES_PER_MESSAGE} replies per message x "
        f"{sites['delay'] * 1000:.0f} ms) = {summary['limit']:,.0f} msgs/s; "
        + ", ".join(
            f"{key} {fmt(row.get('of_limit'), '.0%')}"
            for key, row in zip(LETTERS.values(), summary["rows"].values(), strict=True)
        )
        + " of it (with PIPELINING, which the app uses where the sink offers it, 2 replies)"
    )
    for key in LETTERS:
        row = summary["rows"][key]
        if not row.get("error"):
            lines.append(
                f"  {LETTERS[key]}: a conversation took "
                f"{fmt(row['ms_per_message_in_conversation'], '.0f')} ms per message, greeting, "
                f"EHLO and QUIT included ({REPLIES_PER_MESSAGE} x {sites['delay'] * 1000:.0f} "
                f"ms = {REPLIES_PER_MESSAGE * sites['delay'] * 1000:.0f} ms of replies); the sink "
                f"answered {fmt(row['sink_reply_lag_ms'], '.1f')} ms late per reply on average"
            )
        if key != "raw" and not row.get("error"):
            lines.append(
                f"  {LETTERS[key]}: enqueue "
                f"{fmt(row['enqueue_wall'], '.2f')} s, first acceptance after "
                f"{fmt(row['first_arrival_after'], '.2f')} s, all after {row['wall']:.2f} s; "
                f"{row['connections']} connections; {row['dispatch_runs']} dispatch runs, "
                f"{row['dispatch_runs_sending']} of them sent"
            )
    lines.append(
        "  conv = SMTP conversations (connections) open at once as the sink saw them: the peak, and"
    )
    lines.append(
        "  the average over the measurement; CPU = the sender's process (app: plus every cluster"
    )
    lines.append("  process), not the sink's nor PostgreSQL's.")
    return lines
