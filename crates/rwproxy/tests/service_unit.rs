//! `config/rwproxy.service` passes `systemd-analyze verify` (every directive known, every
//! program present: the unit is checked with its paths pointing at this build and a temporary
//! configuration), its `ExecStartPre` is `rwproxy check` and accepts a valid file, and its
//! hardening keeps `systemd-analyze security`'s exposure level "OK" or better (the verdict
//! docs/packaging.md quotes).
//!
//! Skips with a notice without `systemd-analyze` (Debian's `systemd` package), unless
//! `RWPROXY_REQUIRE_EXTERNAL=1` (CI).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Command;

const UNIT: &str = include_str!("../../../config/rwproxy.service");

fn systemd_analyze() -> Option<PathBuf> {
    let found = ["/usr/bin/systemd-analyze", "/bin/systemd-analyze"]
        .map(PathBuf::from)
        .into_iter()
        .find(|p| p.is_file());
    if found.is_none() {
        assert_ne!(
            std::env::var("RWPROXY_REQUIRE_EXTERNAL").as_deref(),
            Ok("1"),
            "`systemd-analyze` is required (RWPROXY_REQUIRE_EXTERNAL=1) but not installed"
        );
        eprintln!("SKIPPED: `systemd-analyze` is not installed (Debian: apt-get install systemd)");
    }
    found
}

/// The unit with its binary and configuration paths moved to this build and `config`.
fn local_unit(dir: &Path, config: &Path) -> PathBuf {
    let text = UNIT
        .replace("/usr/local/bin/rwproxy", env!("CARGO_BIN_EXE_rwproxy"))
        .replace("/etc/rwproxy/rwproxy.toml", &config.display().to_string());
    let unit = dir.join("rwproxy.service");
    std::fs::write(&unit, text).unwrap();
    unit
}

fn valid_config(dir: &Path) -> PathBuf {
    let config = dir.join("rwproxy.toml");
    std::fs::write(
        &config,
        "[proxy]\napp = \"http://127.0.0.1:8081\"\n[cluster]\nsource = \"static\"\nprimary = \"a\"\n",
    )
    .unwrap();
    config
}

/// The value of the unit's one `key=` line.
fn directive<'a>(unit: &'a str, key: &str) -> &'a str {
    let mut values = unit
        .lines()
        .filter_map(|line| line.strip_prefix(key)?.strip_prefix('='));
    let value = values
        .next()
        .unwrap_or_else(|| panic!("no {key}= in the unit"));
    assert!(values.next().is_none(), "several {key}= lines");
    value
}

#[test]
fn the_unit_verifies_and_checks_the_file_before_starting() {
    let Some(analyze) = systemd_analyze() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let config = valid_config(dir.path());
    let unit = local_unit(dir.path(), &config);
    let out = Command::new(&analyze)
        .arg("verify")
        .arg(&unit)
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "systemd-analyze verify:\n{said}"
    );

    // ExecStartPre is `check` on the file ExecStart runs, and accepts a valid one.
    let text = std::fs::read_to_string(&unit).unwrap();
    let pre: Vec<&str> = directive(&text, "ExecStartPre").split(' ').collect();
    let start: Vec<&str> = directive(&text, "ExecStart").split(' ').collect();
    assert_eq!(pre[1..], ["check", "-c", &config.display().to_string()]);
    assert_eq!(start[1..], ["run", "-c", &config.display().to_string()]);
    let check = Command::new(pre[0]).args(&pre[1..]).output().unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    assert_eq!(directive(&text, "ExecReload"), "/bin/kill -HUP $MAINPID");
    assert_eq!(directive(&text, "User"), "rwproxy");
}

#[test]
fn the_hardening_keeps_the_exposure_level_ok() {
    let Some(analyze) = systemd_analyze() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let unit = local_unit(dir.path(), &valid_config(dir.path()));
    let out = Command::new(&analyze)
        .args(["security", "--offline=true", "--no-pager"])
        .arg(&unit)
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    let verdict = report
        .lines()
        .find_map(|line| {
            line.split("Overall exposure level for rwproxy.service: ")
                .nth(1)
        })
        .unwrap_or_else(|| {
            panic!(
                "no verdict in:\n{report}{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    let score: f64 = verdict.split(' ').next().unwrap().parse().unwrap();
    // systemd's scale: below 2.0 is "OK" (then MEDIUM, EXPOSED, UNSAFE up to 10).
    assert!(
        score < 2.0,
        "exposure {verdict}; docs/packaging.md quotes 1.2 OK:\n{report}"
    );
}
