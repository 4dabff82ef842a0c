//! A build's star tables committed as Delta Lake tables ([`crate::lake::delta`]),
//! dimensions before facts: a reader that sees a new fact file sees the
//! dimension rows its plays name. The summaries and helpers a build keeps
//! under `star/_*` are tunelake's own and stay plain files.

use std::collections::BTreeMap;

use super::build::BuildMetrics;
use super::{ModelError, contract_schema};
use crate::lake::delta::{self, TableSpec};
use crate::lake::manifest::{Run, RunKind, StarVersion, now_rfc3339};
use crate::lake::{Layout, Manifest};
use crate::sql::STAR_TABLES;

/// Every star table as a Delta table, in commit stages: dimensions, then facts.
pub async fn stages() -> Result<[Vec<TableSpec>; 2], ModelError> {
    let (mut dimensions, mut facts) = (vec![], vec![]);
    for table in STAR_TABLES {
        let schema = contract_schema(table).await?;
        let spec = TableSpec { name: table.name.into(), schema, by_month: table.month_partition_by.is_some() };
        if table.name.starts_with("fact_") { facts.push(spec) } else { dimensions.push(spec) }
    }
    Ok([dimensions, facts])
}

/// Commits `star`'s parts to the Delta tables; each table's Delta version.
/// A table whose parts equal `previous`'s, and whose log is still at the
/// version recorded for it, is not opened: most builds change a few tables.
pub async fn publish(
    layout: &Layout,
    star: &StarVersion,
    previous: Option<&StarVersion>,
) -> Result<BTreeMap<String, u64>, ModelError> {
    let t0 = std::time::Instant::now();
    let mut versions = BTreeMap::new();
    for (table, prev) in STAR_TABLES.iter().filter_map(|t| previous.map(|p| (t.name, p))) {
        if let Some(&v) = prev.delta.get(table)
            && prev.tables.get(table) == star.tables.get(table)
            && delta::latest_version(layout, table)? == Some(v)
        {
            versions.insert(table.to_string(), v);
        }
    }
    let mut stages = stages().await?;
    for stage in &mut stages {
        stage.retain(|spec| !versions.contains_key(&spec.name));
    }
    let commits = delta::commit_star(layout, &stages, &star.tables, star.version).await?;
    for (table, c) in &commits {
        tracing::debug!(table, version = c.version, added = c.added, removed = c.removed, "Delta commit");
    }
    tracing::info!(
        seconds = t0.elapsed().as_secs_f64(),
        unchanged = versions.len(),
        "star committed to its Delta tables"
    );
    versions.extend(commits.into_iter().map(|(t, c)| (t, c.version)));
    Ok(versions)
}

/// Whether the Delta tables are not at the versions the ledger records for
/// the current star: it was built before the star was Delta, or a build
/// crashed between its Delta commits and its ledger entry.
pub fn out_of_step(layout: &Layout, star: &StarVersion) -> Result<bool, ModelError> {
    for table in STAR_TABLES {
        let recorded = star.delta.get(table.name).copied();
        if recorded.is_none() || delta::latest_version(layout, table.name)? != recorded {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Commits the current star's parts to the Delta tables as they are (a
/// new Delta version where a table differs) and records their versions in
/// a build entry. Nothing is computed again.
pub async fn republish(layout: &Layout, manifest: &mut Manifest, command: &str) -> Result<BuildMetrics, ModelError> {
    let last = manifest.last_build().expect("called with a build").clone();
    let mut star = last.star.clone().expect("a build run has a star version");
    tracing::info!(version = star.version, "committing the star to its Delta tables");
    star.delta = publish(layout, &star, None).await?;
    let mut run = Run::new(manifest.next_run_id(), RunKind::Build, command, now_rfc3339());
    run.stats = last.stats.clone();
    run.star = Some(star);
    manifest.commit(layout, run)?;
    Ok(BuildMetrics::from_run(manifest.last_build().expect("just committed")))
}
