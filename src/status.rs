//! `tunelake status`: what the manifest says — the runs, the current star
//! version's row counts, and the accounting of every record read, per
//! source: `read = plays + filtered + rejected`.

use std::io::Write;

use crate::lake::Manifest;
use crate::lake::manifest::{Accounting, Reject, Run, RunKind};
use crate::lake::stats::FileReport;

/// The accounting of the live staging set: the last reprocess's plus every ingest after it.
pub fn accounting(manifest: &Manifest) -> Vec<Accounting> {
    manifest.state().accounting.clone()
}

/// The per-file import reports kept by export imports (and the last reprocess).
pub fn import_files(manifest: &Manifest) -> Vec<FileReport> {
    manifest.state().imported.iter().filter(|f| !f.already_stored).cloned().collect()
}

/// Rejects of the live staging set, as kept by name in the manifest.
pub fn rejects(manifest: &Manifest) -> Vec<&Reject> {
    manifest.state().rejects.iter().collect()
}

pub fn accounting_line(a: &Accounting) -> String {
    let mut line = accounting_sum(a);
    if a.nul_removed > 0 {
        line.push_str(&format!(" ({} kept with U+0000 removed)", a.nul_removed));
    }
    line
}

fn accounting_sum(a: &Accounting) -> String {
    if a.stream == "events" {
        format!(
            "{} {}: read {} = plays {} + filtered {} + rejected {}",
            a.source,
            a.stream,
            a.read,
            a.plays,
            a.filtered_total(),
            a.rejected
        )
    } else {
        let mut line =
            format!("{} {}: read {} = kept {} + rejected {}", a.source, a.stream, a.read, a.kept, a.rejected);
        if a.as_text > 0 {
            line.push_str(&format!(" ({} numbers kept as text)", a.as_text));
        }
        if a.source == crate::source::spotify_export::SOURCE {
            line.push_str(&format!(" ({} of 30 s or more)", a.plays));
        }
        if let (Some(first), Some(last)) = (&a.first, &a.last) {
            line.push_str(&format!(", {first} .. {last}"));
        }
        line
    }
}

pub fn render(out: &mut dyn Write, manifest: &Manifest, lake: &str, max_runs: usize) -> std::io::Result<()> {
    writeln!(out, "lake: {lake}")?;
    if manifest.run_count() == 0 {
        writeln!(out, "empty: nothing ingested yet (try `tunelake ingest sparkify data/sample/sparkify`)")?;
        return Ok(());
    }
    render_runs(out, manifest, max_runs)?;
    render_star(out, manifest)?;
    render_accounting(out, manifest)?;
    render_inputs(out, manifest)?;
    if let Some(sync) = manifest.last_sync() {
        let version = sync.stats.sync().map(|s| s.lake_version.to_string()).unwrap_or_default();
        writeln!(out, "\nlast sync: {} (lake version {version})", sync.finished_at)?;
    }
    Ok(())
}

/// The latest runs, one line each, with what each did.
fn render_runs(out: &mut dyn Write, manifest: &Manifest, max_runs: usize) -> std::io::Result<()> {
    let recent = manifest.recent(max_runs).map_err(std::io::Error::other)?;
    writeln!(out, "\nruns ({} in all, latest {}):", manifest.run_count(), recent.len())?;
    for run in &recent {
        writeln!(out, "  #{:<4} {:<9} {}  {}", run.id, run.kind.to_string(), run.finished_at, run_summary(run))?;
    }
    Ok(())
}

/// What a run did, in a few words.
fn run_summary(run: &Run) -> String {
    match run.kind {
        RunKind::Ingest | RunKind::Reprocess => {
            let read: u64 = run.accounting.iter().map(|a| a.read).sum();
            let rejected: u64 = run.accounting.iter().map(|a| a.rejected).sum();
            format!("{} raw files, {read} records read, {rejected} rejected", run.raw_count())
        }
        RunKind::Build => {
            let b = run.stats.build().cloned().unwrap_or_default();
            format!("star version {}, {} plays, {} matched to songs", run.id, b.plays, b.matched)
        }
        RunKind::Sync => {
            let s = run.stats.sync().cloned().unwrap_or_default();
            format!("version {} to {}, {} rows sent", s.lake_version, s.target, s.rows_sent)
        }
        RunKind::Vacuum => {
            let v = run.stats.vacuum().cloned().unwrap_or_default();
            format!("{} files removed ({} bytes)", v.files_removed, v.bytes_removed)
        }
    }
}

/// The current star version: rows per table, the match rate, duplicates.
fn render_star(out: &mut dyn Write, manifest: &Manifest) -> std::io::Result<()> {
    let Some(star) = manifest.star() else {
        return writeln!(out, "\nstar: not built yet (run `tunelake build`)");
    };
    writeln!(out, "\nstar version {}:", star.version)?;
    // Tables named `_…` are the build's monthly bookkeeping, not part of the star.
    for (table, parts) in star.tables.iter().filter(|(t, _)| !t.starts_with('_')) {
        let rows: u64 = parts.iter().map(|p| p.rows).sum();
        let delta = star.delta.get(table).map(|v| format!(", Delta version {v}")).unwrap_or_default();
        writeln!(out, "  {table:<20} {rows:>10} rows in {} file(s){delta}", parts.len())?;
    }
    if let Some(b) = manifest.last_build().and_then(|b| b.stats.build()) {
        let (plays, matched) = (b.plays, b.matched);
        if plays > 0 {
            let rate = 100.0 * matched as f64 / plays as f64;
            writeln!(out, "  song match rate: {matched} of {plays} Sparkify plays ({rate:.2}%)")?;
        }
        for (what, n) in b.duplicates.iter().filter(|(_, n)| **n > 0) {
            writeln!(out, "  duplicates: {n} ({what})")?;
        }
    }
    let built_from = manifest.last_build().and_then(|b| b.stats.build()).map_or(0, |b| b.staging_run);
    if manifest.staging_run() > built_from {
        writeln!(out, "  (staging has changed since: run `tunelake build`)")?;
    }
    Ok(())
}

/// Where every record of every source went, and the files read.
fn render_accounting(out: &mut dyn Write, manifest: &Manifest) -> std::io::Result<()> {
    writeln!(out, "\naccounting:")?;
    for a in accounting(manifest) {
        writeln!(out, "  {}", accounting_line(&a))?;
        if !a.filtered.is_empty() {
            let f: Vec<String> = a.filtered.iter().map(|(k, v)| format!("{k} {v}")).collect();
            writeln!(out, "    filtered: {}", f.join(", "))?;
        }
        let unreadable = if a.files_unreadable > 0 {
            format!(", {} unreadable (rejected)", a.files_unreadable)
        } else {
            String::new()
        };
        writeln!(
            out,
            "    files: {} stored, {} skipped as already stored{unreadable}",
            a.files, a.files_already_stored
        )?;
    }
    Ok(())
}

/// The exports imported, the Web API's coverage gaps, the records rejected or changed.
fn render_inputs(out: &mut dyn Write, manifest: &Manifest) -> std::io::Result<()> {
    let files = import_files(manifest);
    if !files.is_empty() {
        writeln!(out, "\nimported files (Spotify exports):")?;
        for f in &files {
            writeln!(out, "  {}: {f}", f.origin)?;
        }
    }
    let gaps = &manifest.state().spotify_gaps;
    if !gaps.is_empty() {
        writeln!(out, "\ncoverage gaps (Spotify Web API: plays in these spans may be missing; an export fills them):")?;
        for g in gaps {
            writeln!(out, "  {}: {} .. {}", g.user, g.from, g.to)?;
        }
    }
    let rejects = rejects(manifest);
    if !rejects.is_empty() {
        writeln!(out, "\nrejected and changed records (first {} kept by name):", rejects.len().min(20))?;
        for r in rejects.iter().take(20) {
            writeln!(out, "  {} {}:{}: {}", r.outcome(), r.file, r.line, r.reason)?;
        }
    }
    Ok(())
}

/// `status --format json`: what [`render`] shows, for a program: the runs,
/// the current star version, the accounting, the coverage gaps and the last
/// sync with the lake version it sent.
pub fn json(manifest: &Manifest, lake: &str, max_runs: usize) -> Result<serde_json::Value, crate::lake::LakeError> {
    use serde_json::json;
    let runs: Vec<serde_json::Value> = manifest
        .recent(max_runs)?
        .iter()
        .map(|r| json!({"id": r.id, "kind": r.kind, "started_at": r.started_at, "finished_at": r.finished_at}))
        .collect();
    let built_from = manifest.last_build().and_then(|b| b.stats.build()).map(|b| b.staging_run);
    let star = manifest.star().map(|star| {
        let tables: serde_json::Map<String, serde_json::Value> = star
            .tables
            .iter()
            .filter(|(t, _)| !t.starts_with('_'))
            .map(|(t, parts)| {
                let rows: u64 = parts.iter().map(|p| p.rows).sum();
                (t.clone(), json!({"rows": rows, "files": parts.len(), "delta_version": star.delta.get(t)}))
            })
            .collect();
        json!({
            "version": star.version,
            "built_at": manifest.last_build().map(|b| b.finished_at.clone()),
            "tables": tables,
            "staging_changed_since": manifest.staging_run() > built_from.unwrap_or(0),
        })
    });
    let last_sync = manifest.last_sync().map(|s| {
        json!({
            "run": s.id,
            "finished_at": s.finished_at,
            "lake_version": s.stats.sync().map(|s| s.lake_version),
            "target": s.stats.sync().map(|s| &s.target),
            "rows_sent": s.stats.sync().map(|s| s.rows_sent),
        })
    });
    Ok(json!({
        "lake": lake,
        "run_count": manifest.run_count(),
        "runs": runs,
        "star": star,
        "accounting": manifest.state().accounting,
        "rejects_kept": manifest.state().rejects.len(),
        "coverage_gaps": manifest.state().spotify_gaps,
        "last_sync": last_sync,
    }))
}
