//! A directory laid out like a LiteFS mount (`.primary`, `.lag`, `<db>-pos`), written the way
//! LiteFS writes it, atomically, so the polling source never sees a torn file.

use std::path::{Path, PathBuf};

use tempfile::TempDir;

/// A fake LiteFS mount.
#[derive(Debug)]
pub struct Mount {
    dir: TempDir,
}

impl Default for Mount {
    fn default() -> Self {
        Self::new()
    }
}

impl Mount {
    /// An empty mount directory.
    pub fn new() -> Self {
        Mount {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    /// The directory path.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    fn write(&self, name: &str, content: &str) {
        let tmp: PathBuf = self.dir.path().join(format!(".tmp-{name}"));
        std::fs::write(&tmp, content).expect("write");
        std::fs::rename(&tmp, self.dir.path().join(name)).expect("rename");
    }

    /// Makes this node the primary: no `.primary`, lag zero.
    pub fn make_primary(&self) {
        let _ = std::fs::remove_file(self.dir.path().join(".primary"));
        self.set_lag_ms(0);
    }

    /// Makes this node a replica of `primary` with `lag_ms`.
    pub fn make_replica(&self, primary: &str, lag_ms: i64) {
        self.write(".primary", &format!("{primary}\n"));
        self.set_lag_ms(lag_ms);
    }

    /// A replica that lost its primary: no `.primary`, lag growing.
    pub fn lose_primary(&self, lag_ms: i64) {
        let _ = std::fs::remove_file(self.dir.path().join(".primary"));
        self.set_lag_ms(lag_ms);
    }

    /// Writes `.lag` as LiteFS does (`%+010d\n`).
    pub fn set_lag_ms(&self, lag_ms: i64) {
        self.write(".lag", &format!("{lag_ms:+010}\n"));
    }

    /// LiteFS's not-ready sentinel.
    pub fn set_not_ready(&self) {
        self.write(".lag", "+2147483647");
    }

    /// Writes `<db>-pos` as LiteFS does (`%016x/%016x\n`).
    pub fn set_pos(&self, db: &str, txid: u64) {
        self.write(
            &format!("{db}-pos"),
            &format!("{txid:016x}/{:016x}\n", txid.wrapping_mul(0x9e37_79b9)),
        );
    }

    /// Deletes the whole mount directory, as if the FUSE mount went away: the source can read
    /// nothing and the state becomes unknown.
    pub fn remove_dir(&self) {
        std::fs::remove_dir_all(self.dir.path()).expect("remove mount dir");
    }

    /// Creates the mount directory again (empty) after [`Mount::remove_dir`].
    pub fn recreate_dir(&self) {
        std::fs::create_dir_all(self.dir.path()).expect("recreate mount dir");
    }

    /// Reads the TXID back.
    pub fn pos(&self, db: &str) -> u64 {
        let text =
            std::fs::read_to_string(self.dir.path().join(format!("{db}-pos"))).unwrap_or_default();
        text.get(..16)
            .and_then(|h| u64::from_str_radix(h, 16).ok())
            .unwrap_or(0)
    }
}
