//! What a build announces while it runs, for whoever wants the star's
//! files as soon as they are complete (the loader of `run`, which COPYs a
//! month while the next is built). The type belongs to the lake so that the
//! build and the sink, which both use it, need not know each other.

use std::sync::Arc;

use super::manifest::StarPart;

/// What a build tells a [`PartHook`] while it runs. It may still fail
/// after any of these: nothing told is then part of a committed version.
#[derive(Debug, Clone, Copy)]
pub enum StarEvent<'a> {
    /// A month file of a star table, complete.
    Part { table: &'a str, part: &'a StarPart, version: u64 },
    /// Every month file a star table partitioned by month has in `version`:
    /// no more come for it.
    Table { table: &'a str, parts: &'a [StarPart], version: u64 },
}

/// Receives the [`StarEvent`]s of a build.
#[derive(Clone)]
pub struct PartHook(pub Arc<PartFn>);

/// What a [`PartHook`] calls.
pub type PartFn = dyn Fn(StarEvent<'_>) + Send + Sync;

impl std::fmt::Debug for PartHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PartHook")
    }
}
