//! `tunelake verify`: whether the lake on disk is what its ledger says. Every
//! raw file against its recorded sha256 and size; every live staging file and
//! every file of the current star version there, with the rows the ledger
//! records (and with `deep`, the star files' sha256); each Delta table at the
//! version the ledger records, its files there; the ledger's checkpoint
//! against its entries; and every run's accounting adding up. Each problem names the file and the command that repairs it.

use std::collections::HashSet;

use super::manifest::StarPart;
use super::{LakeError, Layout, Manifest, raw};

/// One thing that is not as the ledger says, and how to repair it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub what: String,
    pub repair: String,
}

#[derive(Debug, Clone, Default)]
pub struct VerifyMetrics {
    pub raw_files: u64,
    pub raw_bytes: u64,
    pub staging_files: u64,
    pub star_files: u64,
    pub problems: Vec<Problem>,
}

/// What the Delta tables hold, read by the caller (delta-rs is async):
/// each table's latest version and the files it names (relative to the lake).
#[derive(Debug, Clone, Default)]
pub struct DeltaState {
    pub versions: Vec<(String, Option<u64>)>,
    pub files: HashSet<String>,
}

pub fn verify(
    layout: &Layout,
    manifest: &Manifest,
    delta: &DeltaState,
    deep: bool,
) -> Result<VerifyMetrics, LakeError> {
    let mut m = VerifyMetrics::default();
    verify_raw(layout, manifest, &mut m)?;
    let reprocess = "run `tunelake reprocess` (it writes staging again from raw)";
    for (table, _) in super::staging::tables() {
        for f in manifest.staging_files(table) {
            m.staging_files += 1;
            check_rows(layout, &f.path, f.rows, reprocess, &mut m.problems);
        }
    }
    if let Some(star) = manifest.star() {
        let rebuild = "run `tunelake build --force` (it writes the star again from staging)";
        for part in star.tables.values().flatten() {
            m.star_files += 1;
            let rewrite =
                format!("remove it, then run `tunelake build --force`: rm '{}'", layout.abs(&part.path).display());
            let repair = if layout.abs(&part.path).is_file() { rewrite.as_str() } else { rebuild };
            if check_rows(layout, &part.path, part.rows, repair, &mut m.problems) && deep {
                check_hash(layout, part, repair, &mut m.problems)?;
            }
        }
        for (table, latest) in &delta.versions {
            let recorded = star.delta.get(table).copied();
            if *latest != recorded {
                m.problems.push(Problem {
                    what: format!("star/{table}: Delta version {latest:?}, the ledger records {recorded:?}"),
                    repair: "run `tunelake build` (it commits the recorded version to the Delta table)".into(),
                });
            }
        }
        for path in &delta.files {
            if !layout.abs(path).is_file() {
                m.problems.push(Problem {
                    what: format!("{path}: named by its Delta table's latest version, missing"),
                    repair: rebuild.into(),
                });
            }
        }
    }
    let replayed = Manifest::replay(layout)?;
    // The checkpoint forgets parts that were vacuumed; so does the comparison.
    let folded = |m: &Manifest| {
        let mut state = m.state().clone();
        state.prune_parts(layout);
        serde_json::to_value(state).ok()
    };
    if folded(&replayed) != folded(manifest) {
        m.problems.push(Problem {
            what: "_manifest/_last_checkpoint: the ledger's checkpoint differs from its entries".into(),
            repair: "remove it (the entries are the ledger; the next run writes a checkpoint from them): rm '{}'"
                .replace("{}", &layout.manifest_dir().join("_last_checkpoint").display().to_string()),
        });
    }
    for what in &replayed.state().bad_accounting {
        m.problems.push(Problem { what: what.clone(), repair: reprocess.into() });
    }
    Ok(m)
}

/// Every raw file: there, its recorded size, its recorded sha256.
fn verify_raw(layout: &Layout, manifest: &Manifest, m: &mut VerifyMetrics) -> Result<(), LakeError> {
    let mut damaged = vec![];
    for f in manifest.raw_files()? {
        m.raw_files += 1;
        m.raw_bytes += f.bytes;
        let path = layout.abs(&f.path);
        let restore = match f.offset {
            None => format!(
                "ingest the original again (its bytes replace the damaged copy), or copy it over: cp '{}' '{}'",
                f.origin,
                path.display()
            ),
            Some(offset) => format!(
                "ingest the original again (its bytes are written back at {offset} of the pack {}), \
                 or restore the pack from a backup",
                path.display()
            ),
        };
        let problem = match raw::read(layout, f) {
            Err(e) => Some(format!("{} (from {}): {e}", f.path, f.origin)),
            Ok(bytes) if bytes.len() as u64 != f.bytes => {
                Some(format!("{} (from {}): {} bytes, the ledger records {}", f.path, f.origin, bytes.len(), f.bytes))
            }
            Ok(bytes) => {
                let actual = super::sha256_hex(&bytes);
                (actual != f.sha256).then(|| {
                    format!("{} (from {}): sha256 {actual}, the ledger records {}", f.path, f.origin, f.sha256)
                })
            }
        };
        if let Some(what) = problem {
            m.problems.push(Problem { what, repair: restore });
            damaged.push(raw::Damaged { sha256: f.sha256.clone(), path: f.path.clone(), offset: f.offset });
        }
    }
    // The next ingest of an original writes its damaged copy again.
    raw::set_damaged(layout, &damaged)
}

/// Whether the Parquet file at `rel` is there with `rows` rows; a problem if not.
fn check_rows(layout: &Layout, rel: &str, rows: u64, repair: &str, problems: &mut Vec<Problem>) -> bool {
    let path = layout.abs(rel);
    let found = std::fs::File::open(&path)
        .map_err(|e| e.to_string())
        .and_then(|f| datafusion::parquet::file::reader::SerializedFileReader::new(f).map_err(|e| e.to_string()))
        .map(|r| {
            use datafusion::parquet::file::reader::FileReader;
            r.metadata().file_metadata().num_rows() as u64
        });
    let what = match found {
        Ok(n) if n == rows => return true,
        Ok(n) => format!("{rel}: {n} rows, the ledger records {rows}"),
        Err(e) => format!("{rel}: {e}"),
    };
    problems.push(Problem { what, repair: repair.into() });
    false
}

fn check_hash(layout: &Layout, part: &StarPart, repair: &str, problems: &mut Vec<Problem>) -> Result<(), LakeError> {
    let path = layout.abs(&part.path);
    let bytes = std::fs::read(&path).map_err(LakeError::io("read", &path))?;
    let actual = super::sha256_hex(&bytes);
    if actual != part.sha256 {
        problems.push(Problem {
            what: format!("{}: sha256 {actual}, the ledger records {}", part.path, part.sha256),
            repair: repair.into(),
        });
    }
    Ok(())
}
