//! Every example configuration the project ships validates: the files under `config/`, and the
//! ```toml blocks of `docs/*.md` and `README.md` that contain a `[proxy]` table (blocks without
//! one are fragments, not whole files).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs;
use std::path::{Path, PathBuf};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn files_with_extension(dir: &Path, extension: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == extension))
        .collect();
    files.sort();
    files
}

/// The ```toml fenced blocks of a Markdown text, each with the line its fence opens on.
fn toml_blocks(markdown: &str) -> Vec<(usize, String)> {
    let mut blocks = Vec::new();
    let mut current: Option<(usize, String)> = None;
    for (index, line) in markdown.lines().enumerate() {
        let trimmed = line.trim_start();
        match current.as_mut() {
            None => {
                if let Some(info) = trimmed.strip_prefix("```") {
                    if info.split([' ', ',']).next() == Some("toml") {
                        current = Some((index + 1, String::new()));
                    }
                }
            }
            Some((_, text)) => {
                if trimmed.starts_with("```") {
                    blocks.extend(current.take());
                } else {
                    text.push_str(line);
                    text.push('\n');
                }
            }
        }
    }
    blocks
}

fn has_proxy_table(toml: &str) -> bool {
    toml.lines().any(|line| line.trim() == "[proxy]")
}

#[test]
fn every_example_config_validates() {
    let files = files_with_extension(&repo_root().join("config"), "toml");
    let names: Vec<String> = files
        .iter()
        .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .collect();
    for expected in [
        "fly.toml",
        "litefs.toml",
        "mysql.toml",
        "postgres.toml",
        "patroni.toml",
        "static-primary.toml",
        "static-replica.toml",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "config/{expected} is missing"
        );
    }
    let mut failures = Vec::new();
    for file in &files {
        match rwproxy::config::load(file) {
            Err(errors) => failures.push(format!("{}:\n{errors}", file.display())),
            // The examples are what people copy: no setting `check` would warn about either.
            Ok(config) => {
                for warning in rwproxy::config::warnings(&config) {
                    failures.push(format!("{}: warning: {warning}", file.display()));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn check_warns_on_a_litefs_lag_threshold_under_two_seconds_and_still_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("rwproxy.toml");
    fs::write(
        &file,
        "[proxy]\napp = \"http://127.0.0.1:8081\"\n[cluster]\nsource = \"litefs\"\n\
         mount = \"/litefs\"\n[health]\nmax_lag = \"1s\"\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rwproxy"))
        .args(["check", "-c"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), "ok\n");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with("warning: health.max_lag: 1s is under 2s: LiteFS heartbeats"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}

#[test]
fn the_static_examples_make_a_primary_and_a_replica() {
    use rwproxy::config::SourceConfig;
    let config = |name: &str| {
        rwproxy::config::load(&repo_root().join("config").join(name)).expect("valid example")
    };
    let primary = config("static-primary.toml");
    let replica = config("static-replica.toml");
    for (c, is_primary) in [(&primary, true), (&replica, false)] {
        match &c.cluster.source {
            SourceConfig::Static { primary } => assert_eq!(primary == &c.node, is_primary),
            other => panic!("expected a static source, got {other:?}"),
        }
    }
}

#[test]
fn every_toml_block_in_the_docs_validates() {
    let root = repo_root();
    let mut documents = files_with_extension(&root.join("docs"), "md");
    let readme = root.join("README.md");
    if readme.exists() {
        documents.push(readme);
    }
    let mut checked = 0;
    let mut failures = Vec::new();
    for document in &documents {
        let text = fs::read_to_string(document)
            .unwrap_or_else(|e| panic!("reading {}: {e}", document.display()));
        for (line, block) in toml_blocks(&text) {
            if !has_proxy_table(&block) {
                continue;
            }
            checked += 1;
            if let Err(errors) = rwproxy::config::parse(&block) {
                failures.push(format!(
                    "{}, block at line {line}:\n{errors}",
                    document.display()
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    // docs/configuration.md carries at least one whole example; guard against a vacuous pass.
    assert!(
        checked > 0,
        "no ```toml block with a [proxy] table found in the docs"
    );
}

#[test]
fn toml_blocks_are_extracted() {
    let markdown = "text\n```toml\n[proxy]\na = 1\n```\n```rust\nfn x() {}\n```\n  ```toml,ignore\nb = 2\n  ```\n";
    assert_eq!(
        toml_blocks(markdown),
        vec![
            (2, "[proxy]\na = 1\n".to_owned()),
            (9, "b = 2\n".to_owned())
        ]
    );
}
