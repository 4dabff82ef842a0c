//! `tunelake run`'s sync: its transaction opens before the build, and
//! each month file the build writes is loaded at once while the build goes
//! on ([`Loader`]); after the build, the rest is synced as [`sync()`] does,
//! in the same transaction.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};

use postgres::Transaction;

use super::SinkError;
use super::sync::{
    COPY_CHUNK, SyncMetrics, SyncOptions, Unit, connect, drop_indexes, is_empty, part_name, partition_predicate,
    prepare, rebuild_indexes, send_whole, sync_star,
};
use crate::lake::events::{PartHook, StarEvent};
use crate::lake::manifest::StarPart;
use crate::lake::{Layout, Manifest};
use crate::sql::STAR_TABLES;

#[cfg(doc)]
use super::sync::sync;

/// What a [`Loader`] sent of one table before the build was done.
#[derive(Default)]
pub(super) struct EarlyTable {
    /// The table was empty when the transaction first looked.
    pub(super) was_empty: bool,
    /// The partitions sent, each recorded in `tunelake_sync_parts` like any other.
    pub(super) sent: BTreeSet<String>,
    /// The statements that recreate the indexes dropped for the load.
    pub(super) rebuild: Vec<String>,
}

#[derive(Default)]
pub(super) struct Early {
    pub(super) tables: HashMap<String, EarlyTable>,
}

impl Early {
    /// Sends one month file of `table` as soon as the build wrote it, when the
    /// table was empty at the start (a first sync): straight into the table,
    /// its indexes dropped until the end. Other tables wait for the build.
    fn send(
        &mut self,
        tx: &mut Transaction<'_>,
        layout: &Layout,
        Written { table, part, version }: &Written,
        metrics: &mut SyncMetrics,
        buf: &mut Vec<u8>,
    ) -> Result<(), SinkError> {
        let Some(star_table) = STAR_TABLES.iter().find(|t| t.name == table && t.month_partition_by.is_some()) else {
            return Ok(());
        };
        let name = star_table.name;
        if !self.tables.contains_key(name) {
            let was_empty = is_empty(tx, name)?;
            let rebuild = if was_empty { drop_indexes(tx, name)? } else { vec![] };
            self.tables.insert(name.to_string(), EarlyTable { was_empty, sent: BTreeSet::new(), rebuild });
        }
        let early = self.tables.get_mut(name).expect("inserted above");
        let label = part_name(part);
        if !early.was_empty || early.sent.contains(&label) {
            return Ok(());
        }
        tracing::info!(table = name, partition = %label, rows = part.rows, "sending while the build goes on");
        let unit = Unit {
            pred: partition_predicate(star_table, &label),
            label: label.clone(),
            parts: vec![part],
            sent: BTreeMap::new(),
        };
        send_whole(tx, &[layout.abs(&part.path)], name, &unit, *version, metrics, buf)?;
        metrics.parts_sent_during_build += 1;
        early.sent.insert(label);
        Ok(())
    }

    /// Builds the indexes of `table` again as soon as the build says it is
    /// complete, when every one of its `parts` went early (all of a table
    /// loaded by a first sync), instead of after the build. PostgreSQL then
    /// builds them while the dimensions are computed; the sync at the end
    /// finds the table's parts sent and has nothing left to do for it.
    fn complete(
        &mut self,
        tx: &mut Transaction<'_>,
        table: &str,
        parts: &[StarPart],
        metrics: &mut SyncMetrics,
    ) -> Result<(), SinkError> {
        let Some(early) = self.tables.get_mut(table) else { return Ok(()) };
        if early.rebuild.is_empty() || !parts.iter().all(|p| early.sent.contains(&part_name(p))) {
            return Ok(());
        }
        tracing::info!(table, "building indexes while the build goes on");
        rebuild_indexes(tx, table, &std::mem::take(&mut early.rebuild))?;
        metrics.tables_indexed_during_build.push(table.to_string());
        Ok(())
    }
}

/// A month file of a star table the build finished.
struct Written {
    table: String,
    part: StarPart,
    version: u64,
}

enum Message {
    Part(Written),
    /// Every part a monthly star table has in the version being built.
    Complete {
        table: String,
        parts: Vec<StarPart>,
    },
    Finish(Box<Manifest>),
}

/// A sync whose transaction opens before the build: the build hands it each
/// month file of a star table as soon as the file is written
/// ([`Loader::hook`]), and PostgreSQL loads it on the other core while the
/// build goes on. [`Loader::built`] then has it sync the rest of the version
/// the build committed and commit, in the same transaction: readers see all
/// of it or none, as with [`sync()`], and the sync lock is held throughout.
/// Dropped before `built` (the build failed), the transaction rolls back.
/// Only a table that was empty sends early (a first sync, where the load is
/// big); a sync into a loaded database sends what changed at the end.
pub struct Loader {
    sender: Option<mpsc::Sender<Message>>,
    /// Set when the loader is dropped: the thread skips the parts still queued.
    abandoned: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<Result<SyncMetrics, SinkError>>>,
}

impl Loader {
    /// Connects and prepares the database on a thread of its own; an error
    /// (no connection, say) comes out of [`Loader::finish`].
    pub fn start(layout: &Layout, url: &str, opts: &SyncOptions) -> Loader {
        let (sender, receiver) = mpsc::channel();
        let abandoned = Arc::new(AtomicBool::new(false));
        let (layout, url, opts, stop) = (layout.clone(), url.to_string(), opts.clone(), abandoned.clone());
        let thread = std::thread::Builder::new()
            .name("tunelake-sync".into())
            .spawn(move || serve(&layout, &url, &opts, receiver, &stop))
            .expect("a thread starts");
        Loader { sender: Some(sender), abandoned, thread: Some(thread) }
    }

    /// What the build calls with each finished month file of a star table,
    /// and with each monthly star table once it is complete.
    pub fn hook(&self) -> PartHook {
        let sender = self.sender.clone().expect("until finish");
        PartHook(Arc::new(move |event: StarEvent<'_>| {
            let message = match event {
                StarEvent::Part { table, part, version } => {
                    Message::Part(Written { table: table.to_string(), part: part.clone(), version })
                }
                StarEvent::Table { table, parts, .. } => {
                    Message::Complete { table: table.to_string(), parts: parts.to_vec() }
                }
            };
            // A loader that stopped on an error reports it from `finish`.
            let _ = sender.send(message);
        }))
    }

    /// Tells the loader that the build committed `manifest`'s current star
    /// version: it syncs the rest of it and commits, while the caller goes on.
    pub fn built(&mut self, manifest: &Manifest) {
        if let Some(sender) = self.sender.take() {
            let _ = sender.send(Message::Finish(Box::new(manifest.clone())));
        }
    }

    /// Waits for the sync that [`Loader::built`] set going; without `built`,
    /// nothing was committed.
    pub fn finish(mut self) -> Result<SyncMetrics, SinkError> {
        if self.sender.is_some() {
            return Err(SinkError::Abandoned);
        }
        let thread = self.thread.take().expect("finish runs once");
        thread.join().unwrap_or_else(|e| std::panic::resume_unwind(e))
    }
}

impl Drop for Loader {
    fn drop(&mut self) {
        // Before `built`: the channel closes, the thread rolls back and ends.
        self.abandoned.store(true, Ordering::Relaxed);
        drop(self.sender.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn serve(
    layout: &Layout,
    url: &str,
    opts: &SyncOptions,
    messages: mpsc::Receiver<Message>,
    abandoned: &AtomicBool,
) -> Result<SyncMetrics, SinkError> {
    let (mut client, target) = connect(url)?;
    let mut tx = client.transaction().map_err(SinkError::sql("BEGIN"))?;
    let mut metrics = SyncMetrics { target, ..Default::default() };
    prepare(&mut tx, &mut metrics)?;
    let (mut early, mut buf) = (Early::default(), Vec::with_capacity(2 * COPY_CHUNK));
    loop {
        // A hook may outlive the loader: a dropped loader is noticed within 0.1 s.
        let message = match messages.recv_timeout(std::time::Duration::from_millis(100)) {
            Ok(message) => message,
            Err(mpsc::RecvTimeoutError::Timeout) if !abandoned.load(Ordering::Relaxed) => continue,
            Err(_) => break,
        };
        match message {
            Message::Part(_) | Message::Complete { .. } if abandoned.load(Ordering::Relaxed) => break,
            Message::Part(written) => {
                early.send(&mut tx, layout, &written, &mut metrics, &mut buf)?;
            }
            Message::Complete { table, parts } => {
                early.complete(&mut tx, &table, &parts, &mut metrics)?;
            }
            Message::Finish(manifest) => {
                sync_star(&mut tx, layout, &manifest, opts, early, &mut metrics)?;
                tx.commit().map_err(SinkError::sql("COMMIT"))?;
                crate::lake::crash_point::passed("COMMIT of the sync");
                return Ok(metrics);
            }
        }
    }
    // The build failed: nothing of this transaction stays.
    Err(SinkError::Abandoned)
}
