//! Names the build for `rwproxy --version`: the commit and a date, reproducibly.
//!
//! * commit: `RWPROXY_COMMIT` when set (a build without `.git`, e.g. the Dockerfile's build
//!   argument), else `git rev-parse`, else `unknown`;
//! * date: `SOURCE_DATE_EPOCH` when set (reproducible-builds.org), else the commit's own date,
//!   else none. Never the clock: two builds of one commit print the same line.

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=RWPROXY_COMMIT");
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");
    for path in ["HEAD", "packed-refs"] {
        if let Some(file) = git(&["rev-parse", "--git-path", path]) {
            println!("cargo:rerun-if-changed={}", absolute(&file));
        }
    }
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        if let Some(file) = git(&["rev-parse", "--git-path", &branch]) {
            println!("cargo:rerun-if-changed={}", absolute(&file));
        }
    }
    let commit = non_empty(std::env::var("RWPROXY_COMMIT").ok())
        .or_else(|| git(&["rev-parse", "--short=12", "HEAD"]))
        .unwrap_or_else(|| "unknown".to_owned());
    let epoch = non_empty(std::env::var("SOURCE_DATE_EPOCH").ok())
        .or_else(|| git(&["log", "-1", "--format=%ct", "HEAD"]))
        .and_then(|s| s.trim().parse::<i64>().ok());
    let date = epoch.map(date_of).unwrap_or_default();
    println!("cargo:rustc-env=RWPROXY_COMMIT={commit}");
    println!("cargo:rustc-env=RWPROXY_BUILD_DATE={date}");
}

fn non_empty(value: Option<String>) -> Option<String> {
    value.filter(|v| !v.trim().is_empty())
}

/// A git answer, trimmed; `None` without git or outside a repository.
fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    non_empty(String::from_utf8(out.stdout).ok()).map(|s| s.trim().to_owned())
}

/// git prints paths relative to the current directory (the package's) in a plain checkout.
fn absolute(path: &str) -> String {
    let path = std::path::Path::new(path);
    if path.is_absolute() {
        return path.display().to_string();
    }
    std::env::var("CARGO_MANIFEST_DIR")
        .map(|dir| std::path::Path::new(&dir).join(path).display().to_string())
        .unwrap_or_else(|_| path.display().to_string())
}

/// `YYYY-MM-DD` (UTC) of a Unix time (Howard Hinnant's days-to-civil algorithm).
fn date_of(epoch: i64) -> String {
    let days = epoch.div_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}
