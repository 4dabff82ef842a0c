//! The lake's files as DataFusion reads them: [`InlineFiles`].

use std::fmt;
use std::fs::File;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::time::SystemTime;

use async_trait::async_trait;
use datafusion::object_store::local::LocalFileSystem;
use datafusion::object_store::path::Path;
use datafusion::object_store::{
    self, Attributes, CopyOptions, GetOptions, GetResult, GetResultPayload, ListResult, MultipartUpload, ObjectMeta,
    ObjectStore, PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions,
};
use futures::stream::{BoxStream, StreamExt};

/// Local files, read on the thread that asks. `object_store`'s
/// `LocalFileSystem` hands every read to tokio's blocking pool and waits
/// for it; DataFusion reads a Parquet file's footer and column chunks with
/// many small reads, and each handoff wakes two threads. Reads of lake
/// files come from the page cache (just written, or read before), so they
/// take less time than the handoff. Reads of ranges ([`ObjectStore::get_ranges`],
/// and [`ObjectStore::get_opts`] with a range or for the head) happen here;
/// everything else (whole-file streams, writes, listings) is
/// `LocalFileSystem`'s.
#[derive(Debug, Default)]
pub struct InlineFiles {
    inner: LocalFileSystem,
}

impl fmt::Display for InlineFiles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "InlineFiles({})", self.inner)
    }
}

impl InlineFiles {
    fn open(&self, location: &Path) -> object_store::Result<File> {
        File::open(self.inner.path_to_filesystem(location)?).map_err(|e| io_error(location, e))
    }
}

fn io_error(location: &Path, source: std::io::Error) -> object_store::Error {
    match source.kind() {
        std::io::ErrorKind::NotFound => {
            object_store::Error::NotFound { path: location.to_string(), source: source.into() }
        }
        _ => object_store::Error::Generic { store: "InlineFiles", source: format!("{location}: {source}").into() },
    }
}

/// The bytes of `range`; a file shorter than the range is an error, as it is for `LocalFileSystem`.
fn read_range(file: &File, location: &Path, range: Range<u64>) -> object_store::Result<bytes::Bytes> {
    let mut buf = vec![0u8; (range.end - range.start) as usize];
    file.read_exact_at(&mut buf, range.start).map_err(|e| io_error(location, e))?;
    Ok(buf.into())
}

/// What `LocalFileSystem` reports of a file: the same e-tag (inode, time and
/// size), so that what DataFusion keeps of a file matches either store's answer.
fn meta_of(file: &File, location: &Path) -> object_store::Result<ObjectMeta> {
    use std::os::unix::fs::MetadataExt;
    let metadata = file.metadata().map_err(|e| io_error(location, e))?;
    if metadata.is_dir() {
        let source = std::io::Error::new(std::io::ErrorKind::NotFound, "is directory");
        return Err(object_store::Error::NotFound { path: location.to_string(), source: source.into() });
    }
    let modified = metadata.modified().ok().unwrap_or(SystemTime::UNIX_EPOCH);
    let mtime = modified.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_micros();
    Ok(ObjectMeta {
        location: location.clone(),
        last_modified: modified.into(),
        size: metadata.len(),
        e_tag: Some(format!("{:x}-{mtime:x}-{:x}", metadata.ino(), metadata.len())),
        version: None,
    })
}

#[async_trait]
impl ObjectStore for InlineFiles {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> object_store::Result<GetResult> {
        if options.range.is_none() && !options.head {
            return self.inner.get_opts(location, options).await;
        }
        let file = self.open(location)?;
        let meta = meta_of(&file, location)?;
        options.check_preconditions(&meta)?;
        let range = match &options.range {
            Some(r) => r
                .as_range(meta.size)
                .map_err(|e| object_store::Error::Generic { store: "InlineFiles", source: e.into() })?,
            None => 0..meta.size,
        };
        let payload = if options.head {
            futures::stream::empty().boxed()
        } else {
            let bytes = read_range(&file, location, range.clone())?;
            futures::stream::once(async move { Ok(bytes) }).boxed()
        };
        Ok(GetResult { payload: GetResultPayload::Stream(payload), meta, range, attributes: Attributes::default() })
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> object_store::Result<Vec<bytes::Bytes>> {
        let file = self.open(location)?;
        ranges.iter().map(|r| read_range(&file, location, r.clone())).collect()
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list_with_offset(prefix, offset)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> object_store::Result<()> {
        self.inner.copy_opts(from, to, options).await
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> object_store::Result<()> {
        self.inner.rename_opts(from, to, options).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::object_store::{GetRange, ObjectStoreExt};

    fn store_with_file(bytes: &[u8]) -> (tempfile::TempDir, Path) {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("part.parquet");
        std::fs::write(&file, bytes).unwrap();
        (dir, Path::from_absolute_path(&file).unwrap())
    }

    #[tokio::test]
    async fn ranges_heads_and_suffixes_read_what_the_local_store_reads() {
        let bytes: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        let (_dir, path) = store_with_file(&bytes);
        let (inline, local) = (InlineFiles::default(), LocalFileSystem::new());

        let got = inline.get_ranges(&path, &[0..10, 9_990..10_000, 100..100]).await.unwrap();
        assert_eq!(got, vec![&bytes[0..10], &bytes[9_990..], &[][..]]);
        assert_eq!(inline.get_range(&path, 5..4_005).await.unwrap(), &bytes[5..4_005]);

        for range in [GetRange::Suffix(8), GetRange::Offset(9_000), GetRange::Bounded(1..3)] {
            let options = GetOptions::new().with_range(Some(range.clone()));
            let (a, b) =
                (inline.get_opts(&path, options.clone()).await.unwrap(), local.get_opts(&path, options).await.unwrap());
            assert_eq!((a.range.clone(), a.meta.clone()), (b.range.clone(), b.meta.clone()), "{range:?}");
            assert_eq!(a.bytes().await.unwrap(), b.bytes().await.unwrap(), "{range:?}");
        }
        let head = inline.head(&path).await.unwrap();
        assert_eq!(head, local.head(&path).await.unwrap(), "the same size, time and e-tag");
        assert_eq!(head.size, 10_000);
        // A whole file is the local store's own stream.
        assert_eq!(inline.get(&path).await.unwrap().bytes().await.unwrap(), bytes);
    }

    #[tokio::test]
    async fn a_missing_file_or_a_range_past_its_end_is_an_error_naming_it() {
        let (dir, path) = store_with_file(b"0123456789");
        let inline = InlineFiles::default();
        let err = inline.get_ranges(&path, &[0..2, 5..20]).await.unwrap_err();
        assert!(err.to_string().contains("part.parquet"), "{err}");
        let missing = Path::from_absolute_path(dir.path().join("gone.parquet")).unwrap();
        let err = inline.get_range(&missing, 0..4).await.unwrap_err();
        assert!(matches!(err, object_store::Error::NotFound { .. }), "{err:?}");
        assert!(err.to_string().contains("gone.parquet"), "{err}");
        let err = inline.get_ranges(&missing, &[0..2, 2..4]).await.unwrap_err();
        assert!(matches!(err, object_store::Error::NotFound { .. }), "{err:?}");
        let err = inline.head(&Path::from_absolute_path(dir.path()).unwrap()).await.unwrap_err();
        assert!(matches!(err, object_store::Error::NotFound { .. }), "a directory: {err:?}");
    }
}
