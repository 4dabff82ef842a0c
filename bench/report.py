#!/usr/bin/env python3
"""Markdown tables from the JSON lines that bench/run.sh and bench/incremental.sh append.

    report.py RESULTS.jsonl [--bench ID]          comparison table (run.sh)
    report.py INCREMENTAL.jsonl --incremental [--bench ID]
    report.py newkeys NEWDIR PRIORDIR...          (used by incremental.sh)

newkeys prints how many distinct NextSong event ids (userId, sessionId,
itemInSession, ts) of NEWDIR/log_data no PRIORDIR/log_data holds: the number
of plays a sync of NEWDIR should add.

--bench picks one invocation (every row carries the id of the run.sh call
that wrote it); the default is the latest id in the file. Medians are over
the repetitions; "range" is min-max over them. Ratios are computed per
repetition (both pipelines ran back to back in that repetition) and their
median is reported, with the range. Standard library only.
"""
import argparse
import json
import statistics
import sys

TL_STAGES = ["ingest", "build", "sync", "total (ingest+build+sync)", "run (one command)"]
DUCK_STAGES = ["read_logs", "read_songs", "transform", "export_csv", "load_pg",
               "total (incl. load_pg)", "process wall (python start to exit)"]
DUCK_EVENT_STAGES = {"read_logs", "transform", "export_csv", "load_pg", "total (incl. load_pg)",
                     "process wall (python start to exit)"}
FLOOR_STAGES = ["csv -> LOGGED, with PKs (schema.sql)", "binary -> LOGGED, no index"]
FLOOR_LABEL = {FLOOR_STAGES[0]: "psql \\copy CSV, LOGGED, with PKs",
               FLOOR_STAGES[1]: "psql \\copy binary, LOGGED, no index"}


def load(path, bench):
    rows = [json.loads(l) for l in open(path) if l.strip()]
    ids = [r.get("bench") for r in rows if r.get("bench")]
    if not ids:
        sys.exit(f"{path}: no rows")
    bench = bench or ids[-1]
    return bench, [r for r in rows if r.get("bench") == bench]


def fmt_s(x):
    return "—" if x is None else (f"{x:.2f}" if x < 100 else f"{x:.1f}")


def fmt_int(x):
    return "—" if x is None else f"{x:,.0f}"


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def rng(xs):
    xs = [x for x in xs if x is not None]
    if len(xs) < 2:
        return "—"
    return f"{fmt_s(min(xs))}–{fmt_s(max(xs))}"


def by_run(rows, system, stage):
    return {r["run"]: r for r in rows if r["system"] == system and r["stage"] == stage
            and r.get("rc", 0) == 0 and r.get("seconds") is not None}


def comparison(rows, bench):
    n = rows[0]["n"]
    events = next((r["events"] for r in rows if r.get("events")), n)
    runs = sorted({r["run"] for r in rows if isinstance(r["run"], int)})
    out = [f"bench `{bench}`: {events:,} events, {len(runs)} run(s), order alternating "
           "(odd runs: tunelake first)", ""]
    out.append("| system | stage | median s | range s | events/s | peak RSS MB |")
    out.append("|---|---|---:|---:|---:|---:|")

    def line(label, stage_label, rs, with_events=True, rss=None):
        secs = [r["seconds"] for r in rs]
        m = med(secs)
        if rss is None:
            rss = max((r["rss_kb"] for r in rs if r.get("rss_kb")), default=None)
        eps = events / m if (with_events and m) else None
        out.append(f"| {label} | {stage_label} | {fmt_s(m)} | {rng(secs)} | {fmt_int(eps)} | "
                   f"{'—' if rss is None else f'{rss / 1024:,.0f}'} |")

    tl_rss = {}
    for st in TL_STAGES:
        rs = list(by_run(rows, "tunelake", st).values())
        if st.startswith("run"):
            if rs:
                line("tunelake", f"**{st}**", rs)
        elif st.startswith("total"):
            # peak of the three processes, per run
            stage_rs = [r for r in rows if r["system"] == "tunelake" and r.get("rss_kb")
                        and r["stage"] in TL_STAGES[:3]]
            line("tunelake", f"**{st}**", rs, rss=max((r["rss_kb"] for r in stage_rs), default=None))
        else:
            line("tunelake" if st == "ingest" else "", st, rs)
    dsys = next((r.get("duckdb_system") for r in rows if r.get("duckdb_system")), "duckdb")
    for i, st in enumerate(DUCK_STAGES):
        rs = list(by_run(rows, "duckdb", st).values())
        lab = f"**{st}**" if st.startswith("total") else st
        line(dsys if i == 0 else "", lab, rs, with_events=st in DUCK_EVENT_STAGES)
    for i, st in enumerate(FLOOR_STAGES):
        rs = [r for r in rows if r["system"] == "copy floor" and r["stage"] == st]
        if rs:
            line("COPY floor (limit_copy.sh, median of reps)" if i == 0 else "", FLOOR_LABEL[st], rs)
    failed = [r for r in rows if r.get("rc", 0) != 0]
    for r in failed:
        out.append(f"| {r['system']} | {r['stage']} FAILED (exit {r['rc']}, run {r['run']}) | | | | |")

    # ratios per run
    tl_tot = by_run(rows, "tunelake", TL_STAGES[3])
    tl_sync = by_run(rows, "tunelake", "sync")
    tl_pre = {k: by_run(rows, "tunelake", "ingest")[k]["seconds"] + by_run(rows, "tunelake", "build")[k]["seconds"]
              for k in tl_tot}
    d_tot = by_run(rows, "duckdb", "total (incl. load_pg)")
    d_wall = by_run(rows, "duckdb", "process wall (python start to exit)")
    d_load = by_run(rows, "duckdb", "load_pg")
    d_pre = {k: d_tot[k]["seconds"] - d_load[k]["seconds"] for k in d_tot if k in d_load}
    floor = next((r["seconds"] for r in rows if r["system"] == "copy floor" and r["stage"] == FLOOR_STAGES[0]), None)

    def ratio(label, num, den):
        ks = sorted(set(num) & set(den))
        rs = [num[k] / den[k] for k in ks if den[k]]
        if rs:
            out.append(f"| {label} | **{med(rs):.2f}×** | {rng(rs).replace('–', '×–')}{'×' if len(rs) > 1 else ''} "
                       f"| {', '.join(f'{x:.2f}' for x in rs)} |")

    out += ["", "| ratio (per run, then median) | median | range | per run |", "|---|---:|---:|---|"]
    sec = lambda d: {k: v["seconds"] for k, v in d.items()}  # noqa: E731
    ratio("end to end: tunelake ingest+build+sync / DuckDB total incl. load_pg", sec(tl_tot), sec(d_tot))
    ratio("end to end: tunelake ingest+build+sync / DuckDB process wall", sec(tl_tot), sec(d_wall))
    tl_run = by_run(rows, "tunelake", "run (one command)")
    ratio("end to end, one command: tunelake run / DuckDB total incl. load_pg", sec(tl_run), sec(d_tot))
    ratio("end to end, one command: tunelake run / DuckDB process wall", sec(tl_run), sec(d_wall))
    ratio("tunelake sync / DuckDB load_pg", sec(tl_sync), sec(d_load))
    ratio("before PostgreSQL: tunelake ingest+build / DuckDB read+transform+export", tl_pre, d_pre)
    if floor:
        ratio("tunelake sync / COPY floor (CSV with PKs, median)", sec(tl_sync), {k: floor for k in tl_sync})
        ratio("DuckDB load_pg / COPY floor (CSV with PKs, median)", sec(d_load), {k: floor for k in d_load})

    # CPU seconds per tunelake stage (recorded since 2026-11-27 09:00 UTC)
    cpu = []
    for st in TL_STAGES[:3] + TL_STAGES[4:]:
        rs = [r for r in by_run(rows, "tunelake", st).values() if r.get("user_s") is not None]
        if rs:
            cpu.append(f"{st} {med([r['user_s'] for r in rs]):.2f} + {med([r['sys_s'] for r in rs]):.2f} "
                       f"(system {rng([r['sys_s'] for r in rs])})")
    if cpu:
        out += ["", "tunelake CPU seconds, user + system, medians: " + "; ".join(cpu)]

    # row counts, for a correctness cross-check
    notes = [r.get("note", "") for r in rows if r["system"] == "tunelake" and r["stage"].startswith("total")]
    dnotes = [r.get("note", "") for r in rows if r["system"] == "duckdb" and r["stage"] == "transform"]
    out.append("")
    if notes:
        out.append(f"tunelake rows in PostgreSQL (last run): {notes[-1].replace('pg rows: ', '')}")
    if dnotes:
        out.append(f"DuckDB rows (last run): {dnotes[-1]}")
    if not floor:
        out.append("COPY floor: not measured in this invocation.")
    return "\n".join(out)


def incremental(rows, bench):
    out = [f"bench `{bench}`", ""]
    out.append("| lake holds N events | new day | step | events | median s | range s | peak RSS MB | reps |")
    out.append("|---:|---|---|---:|---:|---:|---:|---:|")
    cases = sorted({(r["n"], r.get("variant", "")) for r in rows}, key=lambda c: (c[0], c[1]))
    order = ["base ingest", "base build", "base sync", "ingest", "build", "sync", "build+sync",
             "ingest+build+sync", "no-op build", "no-op sync"]
    for n, v in cases:
        case = [r for r in rows if r["n"] == n and r.get("variant", "") == v]
        for st in order:
            rs = [r for r in case if r["stage"] == st and r.get("rc", 0) == 0 and r.get("seconds") is not None]
            if not rs:
                continue
            secs = [r["seconds"] for r in rs]
            rss = max((r["rss_kb"] for r in rs if r.get("rss_kb")), default=None)
            new = rs[0].get("new_events")
            lab = f"**{st}**" if st == "build+sync" else st
            out.append(f"| {n:,} | {v} | {lab} | {fmt_int(new)} | {fmt_s(med(secs))} | {rng(secs)} | "
                       f"{'—' if rss is None else f'{rss / 1024:,.0f}'} | {len(rs)} |")
        for r in case:
            if r.get("rc", 0) != 0:
                out.append(f"| {n:,} | {v} | {r['stage']} FAILED (exit {r['rc']}) | | | | | |")
    checks = [r for r in rows if r["stage"] == "check"]
    if checks:
        out.append("")
        for r in checks:
            out.append(f"- N={r['n']:,} {r.get('variant', '')} rep {r['run']}: {r['note']}")
    return "\n".join(out)


def newkeys(new, prior):
    import glob
    import os
    import re

    def files(d):
        return glob.glob(os.path.join(d, "log_data", "**", "*.json"), recursive=True)

    def keys(paths, sessions=None):
        out = set()
        sid = re.compile(rb'"sessionId":(\d+)')
        for p in paths:
            with open(p, "rb") as f:
                for line in f:
                    m = sid.search(line)
                    if not m or (sessions is not None and int(m.group(1)) not in sessions):
                        continue
                    if b'"page":"NextSong"' not in line:
                        continue
                    e = json.loads(line)
                    out.add((e["userId"], e["sessionId"], e["itemInSession"], e["ts"]))
        return out

    k_new = keys(files(new))
    sessions = {k[1] for k in k_new}
    k_old = keys([p for d in prior for p in files(d)], sessions)
    return len(k_new - k_old)


def main():
    if len(sys.argv) > 2 and sys.argv[1] == "newkeys":
        print(newkeys(sys.argv[2], sys.argv[3:]))
        return
    ap = argparse.ArgumentParser()
    ap.add_argument("results")
    ap.add_argument("--bench")
    ap.add_argument("--incremental", action="store_true")
    a = ap.parse_args()
    bench, rows = load(a.results, a.bench)
    print(incremental(rows, bench) if a.incremental else comparison(rows, bench))


if __name__ == "__main__":
    main()
