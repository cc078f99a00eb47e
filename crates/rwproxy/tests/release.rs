//! What a release promises about itself: the crate version is the newest release in
//! CHANGELOG.md, every workspace crate shares it, and `--version` names it with the commit.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;

const CHANGELOG: &str = include_str!("../../../CHANGELOG.md");

/// The newest released version: the first `## [x.y.z]` heading that is not `Unreleased`.
fn newest_release(changelog: &str) -> Option<&str> {
    changelog.lines().find_map(|line| {
        let version = line.strip_prefix("## [")?.split(']').next()?;
        (version != "Unreleased").then_some(version)
    })
}

#[test]
fn the_crate_version_is_the_newest_release_in_the_changelog() {
    assert_eq!(newest_release(CHANGELOG), Some(env!("CARGO_PKG_VERSION")));
    assert!(CHANGELOG.contains("## [Unreleased]"));
    // Every member takes the workspace's version rather than its own.
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    for member in [
        "crates/rwproxy",
        "crates/rwproxy-http",
        "crates/rwproxy-cluster",
        "crates/rwproxy-core",
        "tests",
        "benches",
    ] {
        let manifest = std::fs::read_to_string(format!("{root}/{member}/Cargo.toml")).unwrap();
        assert!(
            manifest.contains("version.workspace = true"),
            "{member}/Cargo.toml has its own version"
        );
    }
}

#[test]
fn version_names_the_release_and_the_commit() {
    let out = Command::new(env!("CARGO_BIN_EXE_rwproxy"))
        .arg("--version")
        .output()
        .unwrap();
    assert!(out.status.success());
    let line = String::from_utf8(out.stdout).unwrap();
    let expected = format!("rwproxy {} (commit ", env!("CARGO_PKG_VERSION"));
    assert!(line.starts_with(&expected), "{line}");
    // A 12-digit commit (or "unknown" outside git), then the date when one is known.
    let commit = line[expected.len()..].split([',', ')']).next().unwrap();
    assert!(
        commit == "unknown"
            || (commit.len() == 12 && commit.chars().all(|c| c.is_ascii_hexdigit())),
        "{line}"
    );
}
