//! Reading the LiteFS mount into a [`FileSnapshot`]: blocking file IO, run on the blocking pool
//! with a bound so a hung FUSE mount cannot stall the source or pile up threads.

use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rwproxy_core::Positions;
use tokio::task::JoinHandle;

use super::derive::FileSnapshot;
use super::files::{self, FormatError};
use crate::error::SourceError;

/// How long one read of the mount may take before the state is reported unknown.
pub(crate) const READ_TIMEOUT: Duration = Duration::from_secs(1);

/// Files larger than this are not LiteFS status files.
const MAX_FILE: u64 = 1024;

/// Reads the mount, one blocking read at a time.
#[derive(Debug)]
pub(crate) struct MountReader {
    mount: Arc<Path>,
    databases: Arc<[Arc<str>]>,
    timeout: Duration,
    // A read that outlived READ_TIMEOUT; awaited again instead of starting another.
    pending: Option<JoinHandle<Result<FileSnapshot, SourceError>>>,
}

impl MountReader {
    /// A reader of `mount` for these databases.
    pub(crate) fn new(mount: &Path, databases: &[String]) -> Self {
        MountReader {
            mount: Arc::from(mount),
            databases: databases.iter().map(|d| Arc::from(d.as_str())).collect(),
            timeout: READ_TIMEOUT,
            pending: None,
        }
    }

    /// One snapshot of the mount, or why there is none.
    pub(crate) async fn read(&mut self) -> Result<FileSnapshot, SourceError> {
        let mut handle = match self.pending.take() {
            Some(handle) => handle,
            None => {
                let (mount, databases) = (self.mount.clone(), self.databases.clone());
                tokio::task::spawn_blocking(move || read_snapshot(&mount, &databases))
            }
        };
        match tokio::time::timeout(self.timeout, &mut handle).await {
            Ok(Ok(result)) => result,
            Ok(Err(join)) => Err(SourceError::ReadTask(join.to_string())),
            Err(_) => {
                self.pending = Some(handle);
                Err(SourceError::ReadStuck(self.timeout))
            }
        }
    }
}

/// Reads `.primary`, `.lag`, `.primary` again and each `<db>-pos` (blocking).
///
/// `.primary` is read on both sides of `.lag` because during a hand-off the two change at
/// slightly different moments; a primary claim needs `.primary` absent both times.
pub(crate) fn read_snapshot(
    mount: &Path,
    databases: &[Arc<str>],
) -> Result<FileSnapshot, SourceError> {
    match std::fs::metadata(mount) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => return Err(mount_error(mount, "not a directory".to_owned())),
        Err(e) => return Err(mount_error(mount, e.to_string())),
    }
    let primary_path = mount.join(".primary");
    let before = read_optional(&primary_path, files::parse_primary)?;
    let lag = read_required(&mount.join(".lag"), files::parse_lag)?;
    let primary = match before {
        Some(name) => Some(name),
        None => read_optional(&primary_path, files::parse_primary)?,
    };
    let positions = read_positions(mount, databases)?;
    Ok(FileSnapshot {
        primary,
        lag,
        positions,
    })
}

/// Whether the mount files, read right now, still make this node the primary: no `.primary`
/// (before and after `.lag`, as in [`read_snapshot`]) and a lag of exactly zero (blocking).
pub(crate) fn claims_primary(mount: &Path) -> Result<bool, SourceError> {
    let primary_path = mount.join(".primary");
    let before = read_optional(&primary_path, files::parse_primary)?;
    let lag = read_required(&mount.join(".lag"), files::parse_lag)?;
    let after = read_optional(&primary_path, files::parse_primary)?;
    Ok(before.is_none() && after.is_none() && lag == files::Lag::Millis(0))
}

/// Reads each `<db>-pos` file (blocking). Also the probe used right after a write, which needs
/// positions only.
pub(crate) fn read_positions(
    mount: &Path,
    databases: &[Arc<str>],
) -> Result<Positions, SourceError> {
    let mut positions = Positions::new();
    for db in databases {
        // A name with a separator would read a file outside the mount.
        if db.is_empty() || db.contains(['/', '\\', '\0']) || &**db == "." || &**db == ".." {
            return Err(SourceError::DatabaseName(db.to_string()));
        }
        let pos = read_required(&mount.join(format!("{db}-pos")), files::parse_pos)?;
        positions.insert(db.clone(), pos);
    }
    Ok(positions)
}

fn mount_error(mount: &Path, reason: String) -> SourceError {
    SourceError::Mount {
        path: mount.to_path_buf(),
        reason,
    }
}

fn file_error(path: &Path, reason: String) -> SourceError {
    SourceError::File {
        path: PathBuf::from(path),
        reason,
    }
}

fn read_required<T>(
    path: &Path,
    parse: fn(&[u8]) -> Result<T, FormatError>,
) -> Result<T, SourceError> {
    let raw = read_small(path).map_err(|e| file_error(path, e.to_string()))?;
    parse(&raw).map_err(|e| file_error(path, format!("malformed: {e}")))
}

/// `Ok(None)` only when the file does not exist; any other failure is an error.
fn read_optional<T>(
    path: &Path,
    parse: fn(&[u8]) -> Result<T, FormatError>,
) -> Result<Option<T>, SourceError> {
    match read_small(path) {
        Ok(raw) => parse(&raw)
            .map(Some)
            .map_err(|e| file_error(path, format!("malformed: {e}"))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(file_error(path, e.to_string())),
    }
}

fn read_small(path: &Path) -> io::Result<Vec<u8>> {
    let mut raw = Vec::new();
    std::fs::File::open(path)?
        .take(MAX_FILE + 1)
        .read_to_end(&mut raw)?;
    if raw.len() as u64 > MAX_FILE {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("larger than {MAX_FILE} bytes"),
        ));
    }
    Ok(raw)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::litefs::files::Lag;

    fn dbs(names: &[&str]) -> Vec<Arc<str>> {
        names.iter().map(|n| Arc::from(*n)).collect()
    }

    #[test]
    fn reads_a_replica_mount() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join(".primary"), "p1\n").expect("write");
        std::fs::write(dir.path().join(".lag"), "+000000120\n").expect("write");
        std::fs::write(
            dir.path().join("app.db-pos"),
            "000000000000000a/00000000000000ff\n",
        )
        .expect("write");
        let snap = read_snapshot(dir.path(), &dbs(&["app.db"])).expect("snapshot");
        assert_eq!(snap.primary.as_deref(), Some("p1"));
        assert_eq!(snap.lag, Lag::Millis(120));
        assert_eq!(snap.positions.get("app.db"), Some(&10));
    }

    #[test]
    fn failures_name_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = read_snapshot(&dir.path().join("nope"), &[]).expect_err("no mount");
        assert!(missing.to_string().contains("litefs mount"), "{missing}");

        let no_lag = read_snapshot(dir.path(), &[]).expect_err("no .lag");
        assert!(no_lag.to_string().contains(".lag"), "{no_lag}");

        std::fs::write(dir.path().join(".lag"), "+000000000\n").expect("write");
        let no_pos = read_snapshot(dir.path(), &dbs(&["app.db"])).expect_err("no pos");
        assert!(no_pos.to_string().contains("app.db-pos"), "{no_pos}");

        std::fs::write(dir.path().join(".primary"), "\n").expect("write");
        let empty = read_snapshot(dir.path(), &[]).expect_err("empty .primary");
        assert!(empty.to_string().contains("malformed"), "{empty}");

        std::fs::remove_file(dir.path().join(".primary")).expect("rm");
        let escape = read_snapshot(dir.path(), &dbs(&["../x"])).expect_err("bad name");
        assert!(matches!(escape, SourceError::DatabaseName(_)), "{escape}");
    }

    #[test]
    fn a_mount_that_is_a_file_is_refused_as_a_mount() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("litefs");
        std::fs::write(&file, "").expect("write");
        let err = read_snapshot(&file, &[]).expect_err("not a directory");
        assert!(matches!(err, SourceError::Mount { .. }), "{err}");
        assert!(err.to_string().ends_with(": not a directory"), "{err}");
    }

    #[test]
    fn an_unreadable_primary_file_is_an_error_not_absence() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join(".lag"), "+000000000\n").expect("write");
        // A directory where the file should be: exists, but cannot be read as a file.
        std::fs::create_dir(dir.path().join(".primary")).expect("mkdir");
        let err = read_snapshot(dir.path(), &[]).expect_err("unreadable");
        assert!(err.to_string().contains(".primary"), "{err}");
    }

    #[tokio::test]
    async fn a_stuck_read_is_reported_and_awaited_again_not_repeated() {
        let dir = tempfile::tempdir().expect("tempdir");
        let fifo = dir.path().join(".lag");
        // Opening a FIFO blocks until a writer comes: a stand-in for a hung FUSE mount.
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .expect("run mkfifo");
        assert!(made.success());
        let mut reader = MountReader::new(dir.path(), &[]);
        reader.timeout = Duration::from_millis(50);
        for _ in 0..2 {
            let err = reader.read().await.expect_err("stuck");
            assert!(matches!(err, SourceError::ReadStuck(_)), "{err}");
            assert!(
                reader.pending.is_some(),
                "the stuck read is kept, not replaced"
            );
        }
        // One writer unblocks one reader: had a second read been started, it would stay stuck.
        let writer = tokio::task::spawn_blocking(move || {
            use std::io::Write as _;
            let mut f = std::fs::OpenOptions::new().write(true).open(&fifo)?;
            f.write_all(b"+000000000\n")
        });
        let snap = tokio::time::timeout(Duration::from_secs(3), async {
            loop {
                if let Ok(snap) = reader.read().await {
                    return snap;
                }
            }
        })
        .await
        .expect("the pending read completes");
        assert_eq!(snap.lag, Lag::Millis(0));
        assert!(reader.pending.is_none());
        writer.await.expect("join").expect("write fifo");
    }

    /// A mount as the files would be: `.primary` when `primary` is set, `.lag` as given.
    fn mount(primary: Option<&str>, lag: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        if let Some(name) = primary {
            std::fs::write(dir.path().join(".primary"), format!("{name}\n")).expect("write");
        }
        std::fs::write(dir.path().join(".lag"), lag).expect("write");
        dir
    }

    #[test]
    fn only_no_primary_file_and_a_zero_lag_confirm_a_primary_claim() {
        // (.primary, .lag, confirms): a mount whose files say "replica" never confirms.
        let rows: [(Option<&str>, &str, bool); 7] = [
            (None, "+000000000\n", true),
            (None, "+0000000000", true),
            (Some("p1"), "+000000000\n", false),
            (Some("me"), "+000000000\n", false),
            (None, "+000000001\n", false),
            (None, "-000000005\n", false),
            (None, "+2147483647", false),
        ];
        for (primary, lag, confirms) in rows {
            let dir = mount(primary, lag);
            let got = claims_primary(dir.path()).expect("readable");
            assert_eq!(got, confirms, "{primary:?} {lag:?}");
        }
    }

    #[test]
    fn unreadable_or_malformed_files_never_confirm_a_primary_claim() {
        let no_lag = tempfile::tempdir().expect("tempdir");
        let err = claims_primary(no_lag.path()).expect_err("no .lag");
        assert!(err.to_string().contains(".lag"), "{err}");

        let bad_lag = mount(None, "-000000000\n");
        let err = claims_primary(bad_lag.path()).expect_err("negative zero");
        assert!(err.to_string().contains("malformed"), "{err}");

        let empty_primary = mount(Some(""), "+000000000\n");
        let err = claims_primary(empty_primary.path()).expect_err("empty .primary");
        assert!(err.to_string().contains(".primary"), "{err}");

        let dir_primary = mount(None, "+000000000\n");
        std::fs::create_dir(dir_primary.path().join(".primary")).expect("mkdir");
        let err = claims_primary(dir_primary.path()).expect_err("unreadable .primary");
        assert!(err.to_string().contains(".primary"), "{err}");

        let missing = tempfile::tempdir().expect("tempdir");
        let gone = missing.path().join("gone");
        assert!(claims_primary(&gone).is_err(), "no mount at all");
    }

    /// Makes `.lag` a FIFO: the reader's open blocks until `change` has a writer open, so
    /// `change` runs exactly between the first and the second read of `.primary`.
    fn mid_change(dir: &Path, change: impl FnOnce() + Send + 'static) -> Result<bool, SourceError> {
        let fifo = dir.join(".lag");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .expect("run mkfifo");
        assert!(made.success());
        let (opened_tx, opened) = std::sync::mpsc::channel();
        let writer = std::thread::spawn({
            let fifo = fifo.clone();
            move || {
                use std::io::Write as _;
                // Opening for writing waits for a reader: claims_primary, which has read
                // `.primary` once by then.
                let mut f = std::fs::OpenOptions::new()
                    .write(true)
                    .open(&fifo)
                    .expect("open fifo");
                let _ = opened_tx.send(());
                change();
                let _ = f.write_all(b"+000000000\n");
            }
        });
        let result = claims_primary(dir);
        // A claims_primary that never opened `.lag` (a broken one) leaves the writer waiting
        // for a reader: be that reader, so the test fails instead of hanging.
        if opened.try_recv().is_err() {
            let _ = std::fs::read(&fifo);
        }
        writer.join().expect("writer");
        result
    }

    #[test]
    fn a_mount_mid_hand_off_never_confirms_a_primary_claim() {
        // `.primary` disappears while `.lag` is read: it was there the first time.
        let dir = tempfile::tempdir().expect("tempdir");
        let primary = dir.path().join(".primary");
        std::fs::write(&primary, "p1\n").expect("write");
        let removed = primary.clone();
        let got = mid_change(dir.path(), move || {
            std::fs::remove_file(&removed).expect("remove .primary");
        });
        assert!(!got.expect("readable"), "present before .lag");
        assert!(!primary.exists());

        // `.primary` appears while `.lag` is read: absent the first time only.
        let dir = tempfile::tempdir().expect("tempdir");
        let primary = dir.path().join(".primary");
        let created = primary.clone();
        let got = mid_change(dir.path(), move || {
            std::fs::write(&created, "p2\n").expect("write .primary");
        });
        assert!(!got.expect("readable"), "present after .lag");
        assert!(primary.exists());
    }

    #[test]
    fn database_names_that_are_not_plain_file_names_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        for bad in ["", ".", "..", "a/b", "a\\b", "a\0b"] {
            let err = read_positions(dir.path(), &dbs(&[bad])).expect_err(bad);
            assert!(
                matches!(err, SourceError::DatabaseName(_)),
                "{bad:?}: {err}"
            );
        }
        // Dots inside a name are fine: the file is looked for (and here missing).
        let err = read_positions(dir.path(), &dbs(&["...", "a..db"])).expect_err("missing");
        assert!(err.to_string().contains("...-pos"), "{err}");
    }

    #[test]
    fn a_file_of_exactly_the_size_limit_is_read() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join(".lag"), "+000000000\n").expect("write");
        let size = usize::try_from(MAX_FILE).expect("small");
        // Read, then refused by the parser (too long for a host name), not by the size limit.
        std::fs::write(dir.path().join(".primary"), vec![b'a'; size]).expect("write");
        let err = read_snapshot(dir.path(), &[]).expect_err("too long a name");
        assert!(err.to_string().contains("primary name too long"), "{err}");
        std::fs::write(dir.path().join(".primary"), vec![b'a'; size + 1]).expect("write");
        let err = read_snapshot(dir.path(), &[]).expect_err("too large");
        assert!(err.to_string().contains("larger than 1024 bytes"), "{err}");
    }

    #[test]
    fn oversized_files_are_rejected() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join(".lag"), vec![b'+'; 4096]).expect("write");
        let err = read_snapshot(dir.path(), &[]).expect_err("too large");
        assert!(err.to_string().contains("larger than"), "{err}");
    }
}
