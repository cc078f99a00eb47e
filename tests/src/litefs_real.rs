//! A real two-node LiteFS cluster for the tests that need the real thing (FUSE mounts, real
//! replication, LiteFS's own proxy): LiteFS built from source at `../shared/tools/litefs/litefs`
//! (static lease, see its README), one small Python app per node writing SQLite on its mount.
//! Everything runs on 127.0.0.1 and is stopped (processes killed, mounts unmounted) on drop.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::{eventually, external_program, free_port};

/// The app each node runs: `GET` answers the row count, `POST` inserts the body.
const APP: &str = r#"
import http.server, sqlite3, sys, os
port, db = int(sys.argv[1]), os.path.join(sys.argv[2], "db.sqlite")
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a): pass
    def reply(self, code, text):
        b = text.encode()
        self.send_response(code); self.send_header("Content-Length", str(len(b))); self.end_headers(); self.wfile.write(b)
    def do_GET(self):
        try:
            c = sqlite3.connect(db); n = c.execute("select count(*) from t").fetchone()[0]; c.close(); self.reply(200, str(n))
        except Exception as e:
            self.reply(500, str(e))
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            c = sqlite3.connect(db); c.execute("create table if not exists t(v text)")
            c.execute("insert into t(v) values (?)", (body.decode(),)); c.commit(); c.close(); self.reply(200, "ok")
        except Exception as e:
            self.reply(500, str(e))
http.server.ThreadingHTTPServer(("127.0.0.1", port), H).serve_forever()
"#;

/// The LiteFS binary, `/dev/fuse`, `fusermount3` and `python3`, or `None` (with a notice) when
/// one is missing; a missing one fails instead under `RWPROXY_REQUIRE_EXTERNAL=1`.
pub fn requirements() -> Option<(PathBuf, PathBuf)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let litefs = std::env::var_os("RWPROXY_LITEFS")
        .map(PathBuf::from)
        .into_iter()
        // The project's root sits beside shared/ (CI, the main checkout) or one level further
        // down (a worktree under wt/).
        .chain([
            root.join("../shared/tools/litefs/litefs"),
            root.join("../../shared/tools/litefs/litefs"),
        ])
        .find(|p| p.is_file());
    let required = std::env::var("RWPROXY_REQUIRE_EXTERNAL").as_deref() == Ok("1");
    let missing = |what: &str| {
        if required {
            panic!("{what} is required (RWPROXY_REQUIRE_EXTERNAL=1) but missing");
        }
        eprintln!("SKIPPED: {what} is missing; set RWPROXY_REQUIRE_EXTERNAL=1 to fail instead");
    };
    let Some(litefs) = litefs else {
        missing("the LiteFS binary (../shared/tools/litefs/litefs)");
        return None;
    };
    let litefs = executable(litefs);
    if !Path::new("/dev/fuse").exists() {
        missing("/dev/fuse");
        return None;
    }
    external_program("fusermount3")?;
    let python = external_program("python3")?;
    Some((litefs, python))
}

/// `path` itself when it may be executed, else a copy that may (a copy of shared/ may have lost
/// its mode bits).
fn executable(path: PathBuf) -> PathBuf {
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(&path)
        .map(|m| m.permissions().mode())
        .unwrap_or(0);
    if mode & 0o111 != 0 {
        return path;
    }
    let copy = std::env::temp_dir().join(format!("rwproxy-litefs-{}", std::process::id()));
    std::fs::copy(&path, &copy).unwrap();
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755)).unwrap();
    copy
}

/// One LiteFS node: its mount, its ports, its processes.
pub struct LitefsNode {
    pub mount: PathBuf,
    /// LiteFS's HTTP API (`http.addr`).
    pub api_port: u16,
    /// LiteFS's built-in proxy, when the node has one.
    pub proxy_port: Option<u16>,
    pub app_port: u16,
    litefs: Option<Child>,
    app: Option<Child>,
}

impl Drop for LitefsNode {
    fn drop(&mut self) {
        self.stop();
    }
}

impl LitefsNode {
    pub fn proxy_url(&self) -> Option<String> {
        self.proxy_port.map(|p| format!("http://127.0.0.1:{p}"))
    }

    pub fn app_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.app_port)
    }

    fn stop(&mut self) {
        for child in [self.app.take(), self.litefs.take()].into_iter().flatten() {
            let mut child = child;
            let _ = child.kill();
            let _ = child.wait();
        }
        // Killed LiteFS cannot unmount itself: lazily, so that nothing still open blocks it.
        let _ = Command::new("fusermount3")
            .arg("-uz")
            .arg(&self.mount)
            .stderr(Stdio::null())
            .status();
    }
}

/// A primary (`node-a`) and one replica, both with LiteFS's proxy in front of their app.
pub struct LitefsCluster {
    pub primary: LitefsNode,
    pub replica: LitefsNode,
    _dir: tempfile::TempDir,
}

/// The name every node's static lease gives the primary (what `.primary` says on a replica).
pub const PRIMARY_NAME: &str = "node-a";

impl Drop for LitefsCluster {
    fn drop(&mut self) {
        self.replica.stop();
        self.primary.stop();
    }
}

impl LitefsCluster {
    /// Starts the primary, then the replica, then each node's app; returns once the replica
    /// follows the primary and both apps answer.
    pub async fn start(litefs: &Path, python: &Path) -> LitefsCluster {
        let dir = tempfile::tempdir().unwrap();
        let app = dir.path().join("app.py");
        std::fs::write(&app, APP).unwrap();
        let primary_api = free_port();
        let primary = node(dir.path(), "a", primary_api, primary_api, true, litefs);
        eventually(
            Duration::from_secs(20),
            "the primary's LiteFS API",
            || async {
                let url = format!("http://127.0.0.1:{primary_api}/info");
                crate::client()
                    .get(url)
                    .send()
                    .await
                    .ok()?
                    .status()
                    .is_success()
                    .then_some(())
            },
        )
        .await;
        let mut cluster = LitefsCluster {
            replica: node(dir.path(), "b", free_port(), primary_api, false, litefs),
            primary,
            _dir: dir,
        };
        let dot_primary = cluster.replica.mount.join(".primary");
        eventually(
            Duration::from_secs(20),
            "the replica to follow the primary",
            || async {
                let name = std::fs::read_to_string(&dot_primary).ok()?;
                (name.trim() == PRIMARY_NAME).then_some(())
            },
        )
        .await;
        for node in [&mut cluster.primary, &mut cluster.replica] {
            node.app = Some(
                Command::new(python)
                    .arg(&app)
                    .arg(node.app_port.to_string())
                    .arg(&node.mount)
                    .stdin(Stdio::null())
                    .spawn()
                    .unwrap(),
            );
            let url = node.app_url();
            eventually(Duration::from_secs(10), "the app to listen", || async {
                crate::client().get(&url).send().await.ok().map(|_| ())
            })
            .await;
        }
        cluster
    }
}

/// Writes `litefs.yml` for node `id` and starts LiteFS on it.
fn node(
    dir: &Path,
    id: &str,
    api_port: u16,
    primary_api: u16,
    candidate: bool,
    litefs: &Path,
) -> LitefsNode {
    let root = dir.join(id);
    let mount = root.join("mnt");
    std::fs::create_dir_all(&mount).unwrap();
    std::fs::create_dir_all(root.join("data")).unwrap();
    let proxy_port = free_port();
    let app_port = free_port();
    let config = format!(
        r#"fuse:
  dir: "{mount}"
data:
  dir: "{data}"
http:
  addr: "127.0.0.1:{api_port}"
lease:
  type: "static"
  hostname: "{PRIMARY_NAME}"
  advertise-url: "http://127.0.0.1:{primary_api}"
  candidate: {candidate}
proxy:
  addr: "127.0.0.1:{proxy_port}"
  target: "127.0.0.1:{app_port}"
  db: "db.sqlite"
"#,
        mount = mount.display(),
        data = root.join("data").display(),
    );
    let config_path = root.join("litefs.yml");
    std::fs::write(&config_path, config).unwrap();
    let log = std::fs::File::create(root.join("litefs.log")).unwrap();
    let child = Command::new(litefs)
        .arg("mount")
        .arg("-config")
        .arg(&config_path)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    LitefsNode {
        mount,
        api_port,
        proxy_port: Some(proxy_port),
        app_port,
        litefs: Some(child),
        app: None,
    }
}
