//! The models a build runs once over every month, after the slices: the
//! cumulative summaries (reduced from their monthly tables) and the
//! dimensions. They run in lanes that read nothing of each other's
//! ([`global_lanes`]), one per core, each in a session of its own.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::prelude::SessionContext;

use super::write::{Target, extended, write_table};
use super::{ModelError, files_provider, layer, parts_provider, register_parts, replace_table, run_sql, sql_err};
use crate::lake::Layout;
use crate::lake::manifest::{StarPart, StarVersion};
use crate::sql::{STAR_TABLES, SUMMARIES, StarTable, Summary};

/// A model a build runs once over every month, after the slices.
#[derive(Debug, Clone, Copy)]
pub(super) enum Global {
    /// A cumulative summary, reduced from its monthly table.
    Summary(&'static Summary),
    /// A star table not partitioned by month (a dimension).
    Table(&'static StarTable),
}

impl Global {
    pub(super) fn name(self) -> &'static str {
        match self {
            Global::Summary(s) => s.all.name,
            Global::Table(t) => t.name,
        }
    }

    /// The tables the model writes or replaces for itself: a summary also
    /// registers its monthly table over other parts while it runs.
    fn tables(self) -> Vec<&'static str> {
        match self {
            Global::Summary(s) => vec![s.all.name, s.monthly.name],
            Global::Table(t) => vec![t.name],
        }
    }

    fn text(self) -> &'static str {
        match self {
            Global::Summary(s) => s.all.text,
            Global::Table(t) => t.model.text,
        }
    }

    /// Whether this model needs what `other` writes or replaces: it reads
    /// one of those tables, or takes its new keys from one (`sql::LAYERED`).
    fn needs(self, other: Global) -> bool {
        other.tables().iter().any(|t| {
            crate::sql::reads(self.text(), t) || crate::sql::layered(self.name()).is_some_and(|l| l.keys_from.0 == *t)
        })
    }
}

/// The models over every month (cumulative summaries, then dimensions) in
/// at most `n` lanes, each in build order, such that no model needs one of
/// another lane: the groups of models that need each other (read a table
/// another writes, or take their keys from it), as `reads` finds them in the
/// SQL, the largest groups first, each to the lane with the fewest models.
pub(super) fn global_lanes(n: usize) -> Vec<Vec<Global>> {
    let models: Vec<Global> = SUMMARIES
        .iter()
        .map(Global::Summary)
        .chain(STAR_TABLES.iter().filter(|t| t.month_partition_by.is_none()).map(Global::Table))
        .collect();
    let mut group: Vec<usize> = (0..models.len()).collect();
    for j in 0..models.len() {
        for i in 0..j {
            if models[j].needs(models[i]) || models[i].needs(models[j]) {
                let (keep, gone) = (group[i].min(group[j]), group[i].max(group[j]));
                group.iter_mut().filter(|g| **g == gone).for_each(|g| *g = keep);
            }
        }
    }
    let mut groups: Vec<Vec<usize>> = vec![];
    for (i, g) in group.iter().enumerate() {
        match groups.iter_mut().find(|members| group[members[0]] == *g) {
            Some(members) => members.push(i),
            None => groups.push(vec![i]),
        }
    }
    // Largest first; a stable sort keeps build order among equals.
    groups.sort_by_key(|members| std::cmp::Reverse(members.len()));
    let mut lanes: Vec<Vec<usize>> = vec![vec![]; n.max(1)];
    for members in groups {
        let lane = lanes.iter_mut().min_by_key(|l| l.len()).expect("at least one lane");
        lane.extend(members);
    }
    lanes
        .into_iter()
        .filter(|l| !l.is_empty())
        .map(|mut l| {
            l.sort_unstable();
            l.into_iter().map(|i| models[i]).collect()
        })
        .collect()
}

/// What the models over every month read of the build so far.
pub(super) struct GlobalInputs {
    pub(super) layout: Layout,
    pub(super) version: u64,
    /// Every month is computed in this build.
    pub(super) full: bool,
    pub(super) catalogue_changed: bool,
    pub(super) layers: bool,
    pub(super) computed: BTreeSet<String>,
    pub(super) previous_star: StarVersion,
    pub(super) previous: HashMap<(String, Option<String>), StarPart>,
    pub(super) schemas: Vec<(String, SchemaRef)>,
    /// The parts of every monthly table after the slices.
    pub(super) monthly: BTreeMap<String, Vec<StarPart>>,
}

/// What a lane of [`build_globals`] wrote.
#[derive(Default)]
pub(super) struct GlobalsOut {
    /// Each table's parts and how many of them are unchanged.
    pub(super) tables: Vec<(String, Vec<StarPart>, usize)>,
    /// The tables that took a layer of new keys.
    pub(super) layered: Vec<String>,
}

/// Runs one lane of [`global_lanes`] in `ctx`, which it may change.
pub(super) async fn build_globals(
    ctx: &SessionContext,
    g: &GlobalInputs,
    lane: &[Global],
    bar: &indicatif::ProgressBar,
) -> Result<GlobalsOut, ModelError> {
    let layout = &g.layout;
    let mut out = GlobalsOut::default();
    // What each layered table gained in this build: Some(its new rows), or None when it was written whole.
    let mut gained: HashMap<&str, Option<Vec<RecordBatch>>> = HashMap::new();
    for model in lane {
        match *model {
            Global::Summary(summary) => {
                let monthly = summary.monthly.name;
                let schema = g.schemas.iter().find(|(n, _)| n == monthly).map(|(_, s)| s.clone()).expect("planned");
                let (parts, same, rows) = build_summary(ctx, g, summary, &schema).await?;
                register_parts(ctx, layout, summary.all.name, schema.clone(), &parts)?;
                out.tables.push((summary.all.name.to_string(), parts, same));
                gained.insert(summary.all.name, rows);
                // Later models read the monthly table from all its parts again.
                register_parts(ctx, layout, monthly, schema, g.monthly.get(monthly).map_or(&[], Vec::as_slice))?;
            }
            Global::Table(table) => {
                bar.set_message(format!("build {}", table.name));
                let t0 = std::time::Instant::now();
                let contract = super::contract_schema(table).await?;
                let (parts, same, rows) = build_dimension(ctx, g, table, &contract, &gained).await?;
                if rows.is_some() {
                    out.layered.push(table.name.to_string());
                }
                gained.insert(table.name, rows);
                tracing::info!(table = table.name, parts = parts.len(), seconds = t0.elapsed().as_secs_f64(), "built");
                // Later models may read the tables built before them (bridge_track_artists reads dim_tracks).
                register_parts(ctx, layout, table.name, contract, &parts)?;
                out.tables.push((table.name.to_string(), parts, same));
                bar.inc(1);
            }
        }
    }
    Ok(out)
}

/// A summary over every month: from all months (when every month was
/// computed), else from its previous result plus the months computed now,
/// as one more layer of new keys when it may take one. Its parts, how many
/// are unchanged, and the rows of its new layer (None: written whole).
async fn build_summary(
    ctx: &SessionContext,
    g: &GlobalInputs,
    summary: &Summary,
    schema: &SchemaRef,
) -> Result<(Vec<StarPart>, usize, Option<Vec<RecordBatch>>), ModelError> {
    let (layout, version) = (&g.layout, g.version);
    let (monthly, all) = (summary.monthly.name, summary.all.name);
    let file = format!("sql/model/{all}.sql");
    let month_paths = |all_months: bool| -> Vec<PathBuf> {
        g.monthly
            .get(monthly)
            .into_iter()
            .flatten()
            .filter(|p| all_months || p.partition.as_ref().is_some_and(|m| g.computed.contains(m)))
            .map(|p| layout.abs(&p.path))
            .collect()
    };
    let before = g.previous_star.tables.get(all).filter(|_| !g.full && !g.catalogue_changed);
    let inputs: Vec<PathBuf> = match before {
        Some(before) => before.iter().map(|p| layout.abs(&p.path)).chain(month_paths(false)).collect(),
        None => month_paths(true),
    };
    replace_table(ctx, monthly, files_provider(monthly, schema.clone(), &inputs)?)?;
    if let (Some(spec), Some(before)) = (crate::sql::layered(all), before)
        && g.layers
        && layer::may_extend(before)
    {
        let months = files_provider(monthly, schema.clone(), &month_paths(false))?;
        replace_table(ctx, "tl_layer_months", months)?;
        let keys = run_sql(ctx, &file, &format!("SELECT DISTINCT {} FROM tl_layer_months", spec.keys_from.1))
            .await?
            .collect()
            .await
            .map_err(sql_err(file.clone(), "reading the new keys"))?;
        ctx.deregister_table("tl_layer_months").map_err(sql_err(file.clone(), "deregister"))?;
        let keys = layer::column_of(&keys, spec.keys_from.1, all)?;
        let existing = parts_provider(layout, all, schema.clone(), before)?;
        let model =
            layer::Model { table: all, file: &file, sql: summary.all.text, key: spec.key, inputs: spec.inputs, schema };
        let extension = layer::extension(ctx, &model, keys, existing).await?;
        if let Some((parts, rows)) = extended(layout, all, schema, before, extension, version)? {
            return Ok((parts, before.len(), Some(rows)));
        }
    }
    let df = run_sql(ctx, &file, summary.all.text).await?;
    let (parts, same) =
        write_table(Target { layout, version, previous: &g.previous, hook: None }, all, df, None, None).await?;
    Ok((parts, same, None))
}

/// A dimension, with `contract` its schema: its previous parts plus a layer
/// of its new keys' rows when it may take one, else written whole. Its
/// parts, how many are unchanged, and the rows of its new layer (None:
/// written whole).
async fn build_dimension(
    ctx: &SessionContext,
    g: &GlobalInputs,
    table: &StarTable,
    contract: &SchemaRef,
    gained: &HashMap<&str, Option<Vec<RecordBatch>>>,
) -> Result<(Vec<StarPart>, usize, Option<Vec<RecordBatch>>), ModelError> {
    let (layout, version) = (&g.layout, g.version);
    let file = format!("sql/model/{}.sql", table.name);
    if let (Some(spec), Some(before)) = (crate::sql::layered(table.name), g.previous_star.tables.get(table.name))
        && g.layers
        && layer::may_extend(before)
        && let Some(Some(new_rows)) = gained.get(spec.keys_from.0)
    {
        let keys = layer::column_of(new_rows, spec.keys_from.1, table.name)?;
        let existing = parts_provider(layout, table.name, contract.clone(), before)?;
        let model = layer::Model {
            table: table.name,
            file: &file,
            sql: table.model.text,
            key: spec.key,
            inputs: spec.inputs,
            schema: contract,
        };
        let extension = layer::extension(ctx, &model, keys, existing).await?;
        if let Some((parts, rows)) = extended(layout, table.name, contract, before, extension, version)? {
            return Ok((parts, before.len(), Some(rows)));
        }
    }
    let df = run_sql(ctx, &file, table.model.text).await?;
    let (parts, same) = write_table(
        Target { layout, version, previous: &g.previous, hook: None },
        table.name,
        df,
        Some(contract),
        None,
    )
    .await?;
    Ok((parts, same, None))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::reads;

    #[test]
    fn the_users_run_beside_the_tracks_and_a_model_runs_after_what_it_needs() {
        let names = |lanes: &[Vec<Global>]| -> Vec<Vec<&str>> {
            lanes.iter().map(|l| l.iter().map(|m| m.name()).collect()).collect()
        };
        let one = global_lanes(1);
        assert_eq!(one.len(), 1);
        let order: Vec<&str> = SUMMARIES
            .iter()
            .map(|s| s.all.name)
            .chain(STAR_TABLES.iter().filter(|t| t.month_partition_by.is_none()).map(|t| t.name))
            .collect();
        assert_eq!(names(&one)[0], order, "one lane keeps the build order");

        let two = names(&global_lanes(2));
        assert_eq!(two.len(), 2);
        let lane_of = |t: &str| two.iter().position(|l| l.contains(&t)).unwrap_or_else(|| panic!("{t} in no lane"));
        assert_eq!(two.iter().map(Vec::len).sum::<usize>(), order.len(), "every model once: {two:?}");
        assert_eq!(lane_of("_users_all"), lane_of("dim_users"));
        assert_ne!(lane_of("dim_users"), lane_of("dim_tracks"), "{two:?}");
        for t in ["dim_tracks", "bridge_track_artists", "dim_artists"] {
            assert_eq!(lane_of("_sparkify_unmatched_all"), lane_of(t), "{t}: {two:?}");
        }
        // Within a lane, build order: dim_tracks before the bridge that reads it.
        let l = &two[lane_of("dim_tracks")];
        let at = |t: &str| l.iter().position(|x| *x == t).unwrap();
        assert!(at("_sparkify_unmatched_all") < at("dim_tracks") && at("dim_tracks") < at("bridge_track_artists"));
        // What links them: reads in the SQL and the keys of a layer.
        let (tracks, bridge, users) = (
            Global::Table(crate::sql::star_table("dim_tracks").unwrap()),
            Global::Table(crate::sql::star_table("bridge_track_artists").unwrap()),
            Global::Table(crate::sql::star_table("dim_users").unwrap()),
        );
        assert!(bridge.needs(tracks) && !tracks.needs(bridge) && !users.needs(tracks));
        assert!(users.needs(Global::Summary(&SUMMARIES[1])) && !users.needs(Global::Summary(&SUMMARIES[0])));
        assert!(reads(SUMMARIES[1].all.text, SUMMARIES[1].monthly.name));
    }
}
