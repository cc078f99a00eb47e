//! The table `rwproxy status` prints: one row per node, then one line per problem. Lines are
//! cut to the terminal's width; colours (and the in-place refresh of `--watch`) only on a
//! terminal.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use anstyle::{AnsiColor, Style};

use super::manager;
use super::model::{NodeDoc, NodeReport, Rates, Report};

/// How the table is written.
#[derive(Clone, Copy, Debug, Default)]
pub struct Output {
    /// Colour rows and problems (stdout is a terminal).
    pub colour: bool,
    /// Cut every line to this many columns (the terminal's width).
    pub width: Option<usize>,
}

const HEADER: [&str; 10] = [
    "NODE",
    "ROLE",
    "PRIMARY",
    "LAG",
    "POSITIONS (behind)",
    "HEALTH",
    "VERSION",
    "UPTIME",
    "REQ/S",
    "5XX/S",
];

/// The report as lines of text (no trailing newlines), styled per `style`.
pub fn lines(report: &Report, style: Output) -> Vec<String> {
    let mut rows: Vec<(Vec<String>, Style)> = vec![(
        HEADER.iter().map(|h| (*h).to_owned()).collect(),
        Style::new().bold(),
    )];
    for node in &report.nodes {
        rows.push((cells(node), row_style(node)));
    }
    let mut out = table(&rows, style);
    // The timeline and the failover manager's view, in a table of their own: only for sources
    // that have them.
    let source_rows: Vec<(Vec<String>, Style)> = report
        .nodes
        .iter()
        .filter_map(|node| Some((manager::cells(node.doc.as_ref()?)?, row_style(node))))
        .collect();
    if !source_rows.is_empty() {
        let header = manager::HEADER.iter().map(|h| (*h).to_owned()).collect();
        let mut rows = vec![(header, Style::new().bold())];
        rows.extend(source_rows);
        out.push(String::new());
        out.extend(table(&rows, style));
    }
    let problem_style = Style::new().fg_color(Some(AnsiColor::Red.into())).bold();
    if report.problems.is_empty() {
        out.push(paint(
            "ok: every node answered, one primary, all healthy",
            Style::new().fg_color(Some(AnsiColor::Green.into())),
            style,
        ));
    }
    // Problems are wrapped, not cut: their reason is the part that matters.
    for problem in &report.problems {
        for line in wrap(&format!("PROBLEM: {problem}"), style.width) {
            out.push(paint(&line, problem_style, style));
        }
    }
    out
}

/// Rows as lines, each column as wide as its widest cell (the last one unpadded).
fn table(rows: &[(Vec<String>, Style)], style: Output) -> Vec<String> {
    let columns = rows.iter().map(|(cells, _)| cells.len()).max().unwrap_or(0);
    let mut widths = vec![0usize; columns];
    for (cells, _) in rows {
        for (width, cell) in widths.iter_mut().zip(cells) {
            *width = (*width).max(cell.chars().count());
        }
    }
    rows.iter()
        .map(|(cells, row_style)| {
            let mut line = String::new();
            for (i, (cell, width)) in cells.iter().zip(&widths).enumerate() {
                if i + 1 == cells.len() {
                    line.push_str(cell);
                } else {
                    let _ = write!(line, "{cell:<width$}  ");
                }
            }
            paint(line.trim_end(), *row_style, style)
        })
        .collect()
}

/// `text` in lines of at most `width` characters, continuation lines indented by two spaces.
fn wrap(text: &str, width: Option<usize>) -> Vec<String> {
    const INDENT: &str = "  ";
    let Some(width) = width.filter(|w| *w > INDENT.len()) else {
        return vec![text.to_owned()];
    };
    let chars: Vec<char> = text.chars().collect();
    let mut lines = vec![chars.iter().take(width).collect::<String>()];
    for chunk in chars
        .get(width..)
        .unwrap_or_default()
        .chunks(width - INDENT.len())
    {
        lines.push(format!("{INDENT}{}", chunk.iter().collect::<String>()));
    }
    lines
}

/// Cuts `line` to the width, then colours the whole of it (cutting after colouring could
/// leave an escape sequence open).
fn paint(line: &str, row: Style, style: Output) -> String {
    let line: String = match style.width {
        Some(width) => line.chars().take(width).collect(),
        None => line.to_owned(),
    };
    if style.colour && row != Style::new() {
        format!("{}{line}{}", row.render(), row.render_reset())
    } else {
        line
    }
}

fn row_style(node: &NodeReport) -> Style {
    match &node.doc {
        None => Style::new().fg_color(Some(AnsiColor::Red.into())),
        Some(doc) if !doc.healthy() => Style::new().fg_color(Some(AnsiColor::Yellow.into())),
        Some(doc) if doc.role == "primary" => Style::new().bold(),
        Some(_) => Style::new(),
    }
}

fn cells(node: &NodeReport) -> Vec<String> {
    let rates = |f: fn(&Rates) -> f64| {
        node.rates
            .as_ref()
            .map_or("-".to_owned(), |r| format!("{:.1}", f(r)))
    };
    let Some(doc) = &node.doc else {
        // The reason is on the node's PROBLEM line; the row stays narrow.
        let mut cells = vec![node.url.clone(), "?".to_owned()];
        cells.extend(["-", "-", "-", "unreachable", "-", "-", "-", "-"].map(str::to_owned));
        return cells;
    };
    let positions = positions_cell(doc, &node.behind);
    // The status alone: the problem's text (often a long server message) is on the node's
    // PROBLEM line under the table, which wraps instead of widening every row.
    let health = doc.status.clone();
    vec![
        doc.node.clone(),
        doc.role.clone(),
        doc.primary.clone().unwrap_or_else(|| "-".to_owned()),
        doc.lag_ms.map_or("-".to_owned(), |ms| {
            humantime::format_duration(Duration::from_millis(ms)).to_string()
        }),
        positions,
        health,
        doc.version.clone().unwrap_or_else(|| "-".to_owned()),
        doc.uptime_seconds.map_or("-".to_owned(), |s| {
            humantime::format_duration(Duration::from_secs(s as u64)).to_string()
        }),
        rates(|r| r.requests_per_second),
        rates(|r| r.errors_per_second),
    ]
}

/// One `--watch` frame on a terminal: cursor home, each line followed by clear-to-end-of-line,
/// then clear below, so nothing is blanked between frames (no flicker).
pub fn frame(title: &str, lines: &[String]) -> String {
    let mut out = String::from("\x1b[H");
    for line in std::iter::once(title).chain(lines.iter().map(String::as_str)) {
        out.push_str(line);
        out.push_str("\x1b[K\n");
    }
    out.push_str("\x1b[J");
    out
}

/// The POSITIONS cell: each database's position, and on a replica that trails the primary,
/// by how much (`app.db=40 (-2)`). The primary is the reference, and a replica level with it
/// shows no "(-0)".
fn positions_cell(doc: &NodeDoc, behind: &BTreeMap<String, u64>) -> String {
    if doc.positions.is_empty() {
        return "-".to_owned();
    }
    doc.positions
        .iter()
        .map(|(db, position)| match behind.get(db) {
            Some(&behind) if behind > 0 && doc.role != "primary" => {
                format!("{db}={position} (-{behind})")
            }
            _ => format!("{db}={position}"),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::model::NodeDoc;

    fn report() -> Report {
        Report {
            nodes: vec![
                NodeReport {
                    url: "http://127.0.0.1:1".to_owned(),
                    error: None,
                    doc: Some(NodeDoc {
                        status: "ok".to_owned(),
                        node: "a".to_owned(),
                        role: "primary".to_owned(),
                        primary: Some("a".to_owned()),
                        lag_ms: Some(0),
                        positions: [("app.db".to_owned(), 7)].into(),
                        version: Some("0.1.0".to_owned()),
                        uptime_seconds: Some(61.5),
                        ..NodeDoc::default()
                    }),
                    behind: [("app.db".to_owned(), 0)].into(),
                    rates: Some(Rates {
                        requests_per_second: 2.0,
                        errors_per_second: 0.25,
                        window_seconds: 1.0,
                        since_start: false,
                    }),
                },
                NodeReport {
                    url: "http://127.0.0.1:2".to_owned(),
                    error: Some("connection refused".to_owned()),
                    doc: None,
                    behind: Default::default(),
                    rates: None,
                },
            ],
            problems: vec!["http://127.0.0.1:2 is unreachable: connection refused".to_owned()],
        }
    }

    /// A table line's cells (cells hold no double space).
    fn columns(line: &str) -> Vec<&str> {
        line.split("  ")
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .collect()
    }

    #[test]
    fn rows_columns_and_problems() {
        let lines = lines(&report(), Output::default());
        assert_eq!(lines.len(), 4, "{lines:#?}");
        assert!(lines[0].starts_with("NODE "));
        let a = columns(&lines[1]);
        assert_eq!(
            a,
            ["a", "primary", "a", "0s", "app.db=7", "ok", "0.1.0", "1m 1s", "2.0", "0.2"]
        );
        assert!(lines[2].starts_with("http://127.0.0.1:2 "));
        assert!(lines[2].contains("  unreachable  "), "{}", lines[2]);
        assert_eq!(
            lines[3],
            "PROBLEM: http://127.0.0.1:2 is unreachable: connection refused"
        );
    }

    #[test]
    fn the_health_cell_is_short_and_the_problem_goes_under_the_table() {
        let doc = NodeDoc {
            node: "b".to_owned(),
            role: "unknown".to_owned(),
            status: "unknown".to_owned(),
            problem: Some("postgres 127.0.0.1:5432/postgres: db error: FATAL: password authentication failed for user \"rwproxy\"".to_owned()),
            ..NodeDoc::default()
        };
        let node = NodeReport {
            doc: Some(doc),
            ..report().nodes[0].clone()
        };
        assert_eq!(cells(&node)[5], "unknown");
    }

    #[test]
    fn a_replica_shows_how_far_behind_only_when_it_is() {
        let replica = NodeDoc {
            role: "replica".to_owned(),
            positions: [("app.db".to_owned(), 4), ("b.db".to_owned(), 9)].into(),
            ..NodeDoc::default()
        };
        let behind = [("app.db".to_owned(), 3), ("b.db".to_owned(), 0)].into();
        assert_eq!(positions_cell(&replica, &behind), "app.db=4 (-3) b.db=9");
        let primary = NodeDoc {
            role: "primary".to_owned(),
            ..replica.clone()
        };
        assert_eq!(positions_cell(&primary, &behind), "app.db=4 b.db=9");
        assert_eq!(positions_cell(&NodeDoc::default(), &behind), "-");
    }

    #[test]
    fn width_cuts_lines_and_colour_wraps_them_whole() {
        let cut = lines(
            &report(),
            Output {
                colour: false,
                width: Some(12),
            },
        );
        assert!(cut.iter().all(|l| l.chars().count() <= 12), "{cut:#?}");
        let coloured = lines(
            &report(),
            Output {
                colour: true,
                width: Some(12),
            },
        );
        assert!(
            coloured[3].starts_with("\x1b[") && coloured[3].ends_with("\x1b[0m"),
            "{coloured:?}"
        );
        assert!(!lines(&report(), Output::default())
            .iter()
            .any(|l| l.contains('\x1b')));
    }

    #[test]
    fn problems_wrap_instead_of_being_cut() {
        assert_eq!(wrap("PROBLEM: abcdef", Some(10)), ["PROBLEM: a", "  bcdef"]);
        assert_eq!(wrap("abc", None), ["abc"]);
        let lines = lines(
            &report(),
            Output {
                colour: false,
                width: Some(30),
            },
        );
        assert!(lines.iter().all(|l| l.chars().count() <= 30), "{lines:#?}");
        let mut problem = lines[3].clone();
        for continuation in &lines[4..] {
            problem.push_str(continuation.strip_prefix("  ").unwrap());
        }
        assert_eq!(
            problem,
            "PROBLEM: http://127.0.0.1:2 is unreachable: connection refused"
        );
    }

    #[test]
    fn the_timeline_and_the_managers_view_get_a_table_of_their_own() {
        use crate::status::manager::{ManagerDoc, TimelineDoc};
        let mut report = report();
        let doc = report.nodes[0].doc.as_mut().unwrap();
        doc.timeline = Some(TimelineDoc {
            current: 2,
            switches: vec![],
        });
        doc.manager = Some(ManagerDoc {
            name: "patroni".into(),
            member: "a".into(),
            leader: Some("a".into()),
            leader_address: Some("a".into()),
            holds_lock: true,
            role: "master".into(),
            state: "running".into(),
            ..ManagerDoc::default()
        });
        let lines = lines(&report, Output::default());
        assert_eq!(lines[3], "", "{lines:#?}");
        assert!(lines[4].starts_with("NODE  TIMELINE  LEADER (manager)"));
        assert_eq!(
            columns(&lines[5]),
            ["a", "2", "a", "a master/running, lock"]
        );
        assert!(lines[6].starts_with("PROBLEM: "), "{lines:#?}");
    }

    #[test]
    fn a_frame_overwrites_in_place() {
        let f = frame("t", &["x".to_owned()]);
        assert_eq!(f, "\x1b[Ht\x1b[K\nx\x1b[K\n\x1b[J");
        assert!(!f.contains("\x1b[2J"));
    }
}
