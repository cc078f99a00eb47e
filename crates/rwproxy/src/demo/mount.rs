//! A directory laid out like a LiteFS FUSE mount, which each demo node's rwproxy reads with the
//! real `litefs` cluster source: `.primary`, `.lag` and `<db>-pos`, in LiteFS's exact formats.
//! Public for examples and tests that stand in for LiteFS (`examples/axum_notes.rs`).

use std::fs;
use std::io;
use std::path::PathBuf;
use std::time::Duration;

/// LiteFS's `.lag` value on a node that is not ready yet.
const NOT_READY: &str = "+2147483647\n";

/// One node's mount directory.
#[derive(Debug)]
pub struct Mount {
    dir: PathBuf,
    db: String,
}

impl Mount {
    /// Creates `dir` with a not-ready `.lag` and `db` at `txid`, as a node that has not synced
    /// yet looks: rwproxy then reports `not-ready` until the cluster assigns a role.
    pub fn create(dir: PathBuf, db: &str, txid: u64) -> io::Result<Mount> {
        fs::create_dir_all(&dir)?;
        let mount = Mount {
            dir,
            db: db.to_owned(),
        };
        mount.write(".lag", NOT_READY)?;
        mount.set_pos(txid)?;
        Ok(mount)
    }

    /// The directory.
    pub fn path(&self) -> &std::path::Path {
        &self.dir
    }

    /// Writes through a temporary file and a rename: the real mount's files change atomically,
    /// and rwproxy polls these files, so it must never read a half-written one.
    fn write(&self, name: &str, content: &str) -> io::Result<()> {
        let tmp = self.dir.join(format!(".tmp-{name}"));
        fs::write(&tmp, content)?;
        fs::rename(&tmp, self.dir.join(name))
    }

    /// The primary: no `.primary` file and a lag of exactly zero.
    pub fn make_primary(&self) -> io::Result<()> {
        match fs::remove_file(self.dir.join(".primary")) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        self.set_lag(Duration::ZERO)
    }

    /// A replica connected to `primary` (its node name), heard from `lag` ago.
    pub fn make_replica(&self, primary: &str, lag: Duration) -> io::Result<()> {
        self.write(".primary", &format!("{primary}\n"))?;
        self.set_lag(lag)
    }

    /// `.lag` as LiteFS writes it: signed milliseconds, `%+010d\n`.
    pub fn set_lag(&self, lag: Duration) -> io::Result<()> {
        let ms = i64::try_from(lag.as_millis())
            .unwrap_or(i64::MAX)
            .min(i64::from(i32::MAX) - 1);
        self.write(".lag", &format!("{ms:+010}\n"))
    }

    /// `<db>-pos` as LiteFS writes it: `%016x/%016x\n`, TXID then checksum.
    pub fn set_pos(&self, txid: u64) -> io::Result<()> {
        // No real pages to checksum: any value derived from the TXID looks the part.
        let checksum = txid.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        self.write(
            &format!("{}-pos", self.db),
            &format!("{txid:016x}/{checksum:016x}\n"),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(mount: &Mount, name: &str) -> String {
        fs::read_to_string(mount.path().join(name)).unwrap()
    }

    #[test]
    fn files_have_litefs_formats() {
        let dir = tempfile::tempdir().unwrap();
        let mount = Mount::create(dir.path().join("n"), "app.db", 1).unwrap();
        assert_eq!(read(&mount, ".lag"), "+2147483647\n");
        assert_eq!(read(&mount, "app.db-pos").len(), 34);
        assert!(read(&mount, "app.db-pos").starts_with("0000000000000001/"));

        mount
            .make_replica("127.0.0.1:4000", Duration::from_millis(250))
            .unwrap();
        assert_eq!(read(&mount, ".primary"), "127.0.0.1:4000\n");
        assert_eq!(read(&mount, ".lag"), "+000000250\n");

        mount.make_primary().unwrap();
        assert!(!mount.path().join(".primary").exists());
        assert_eq!(read(&mount, ".lag"), "+000000000\n");
        mount.make_primary().unwrap();
    }
}
