#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;

const U1: &str = "3e11fa47-71ca-11e1-9e33-c80aa9429562";
const U2: &str = "4e11fa47-71ca-11e1-9e33-c80aa9429563";

fn set(text: &str) -> GtidSet {
    GtidSet::parse(text).unwrap_or_else(|| panic!("{text:?} parses"))
}

#[test]
fn mariadb_positions_cover_every_transaction_up_to_seq() {
    let s = set("0-1-42");
    assert_eq!(s.to_string(), "0:1-42");
    assert_eq!(s.count(), 42);
    assert_eq!(set("0-1-42,1-2-5").to_string(), "0:1-42,1:1-5");
    assert_eq!(set("0-1-42, 1-2-5").count(), 47);
    // The server id does not matter: a failover moves a domain to another server.
    assert!(set("0-2-43").contains(&set("0-1-42")));
    assert!(!set("0-1-41").contains(&set("0-2-42")));
    // seq 0 is an empty domain.
    assert_eq!(set("0-1-0"), GtidSet::default());
    assert_eq!(set("0-0-1").count(), 1);
    assert_eq!(
        set("4294967295-4294967295-18446744073709551615").count(),
        u64::MAX
    );
    assert_eq!(
        GtidSet::parse_as("0-1-42", Flavor::MariaDb),
        Some(set("0-1-42"))
    );
}

#[test]
fn mysql_sets_parse_as_the_server_prints_them() {
    let text = format!("{U1}:1-5:7,\n{U2}:1-3");
    let s = set(&text);
    assert_eq!(s.to_string(), format!("{U1}:1-5:7,{U2}:1-3"));
    assert_eq!(s.count(), 9);
    // Uppercase UUIDs are the same stream; overlapping and adjacent intervals merge.
    let upper = format!("{}:1-3:4-5:7:2", U1.to_uppercase());
    assert_eq!(set(&upper).to_string(), format!("{U1}:1-5:7"));
    // Adjacent from either side, and several at once.
    assert_eq!(set(&format!("{U1}:3:1-2")).to_string(), format!("{U1}:1-3"));
    assert_eq!(
        set(&format!("{U1}:5-6:1-3")).to_string(),
        format!("{U1}:1-3:5-6")
    );
    assert_eq!(
        set(&format!("{U1}:1:3:5:1-5")).to_string(),
        format!("{U1}:1-5")
    );
    // Two entries for one UUID merge.
    assert_eq!(
        set(&format!("{U1}:1-2,{U1}:3")).to_string(),
        format!("{U1}:1-3")
    );
    // MySQL 8.3 tags: each owns the intervals after it.
    let tagged = set(&format!("{U1}:1-2:Tag_a:1-4:7,{U1}:tag_a:5"));
    assert_eq!(tagged.to_string(), format!("{U1}:1-2,{U1}:tag_a:1-5:7"));
    assert_eq!(tagged.count(), 8);
    // Tags are up to 32 characters.
    let longest = "t".repeat(32);
    assert_eq!(set(&format!("{U1}:{longest}:1")).count(), 1);
    // A tagged-only entry has no untagged intervals.
    assert_eq!(set(&format!("{U1}:t:3")).to_string(), format!("{U1}:t:3"));
    assert_eq!(
        GtidSet::parse_as(&format!("{U1}:1"), Flavor::MySql),
        Some(set(&format!("{U1}:1")))
    );
}

#[test]
fn blank_texts_are_the_empty_set() {
    for blank in ["", " ", "\n"] {
        assert_eq!(GtidSet::parse(blank), Some(GtidSet::default()), "{blank:?}");
        assert!(set(blank).is_empty());
        assert_eq!(set(blank).count(), 0);
    }
    assert!(!set("0-1-1").is_empty());
}

#[test]
fn malformed_texts_are_rejected_whole() {
    let bad_mariadb = [
        "0-1",
        "0-1-2-3",
        "a-1-2",
        "-1-2",
        "0--2",
        "0-1-",
        "0-1-+2",
        "0-1- 2",
        "0-1-2,",
        ",0-1-2",
        "0-1-2,,1-1-1",
        "0-1-2,0-1-3",
        "0-1-0,0-1-3",
        "4294967296-1-2",
        "0-4294967296-2",
        "0-1-18446744073709551616",
        "0-1-000000000000000000001",
    ];
    for bad in bad_mariadb {
        assert_eq!(GtidSet::parse(bad), None, "{bad:?}");
    }
    let bad_mysql = [
        U1.to_owned(),
        format!("{U1}:"),
        format!("{U1}:0"),
        format!("{U1}:0-3"),
        format!("{U1}:5-3"),
        format!("{U1}:1-"),
        format!("{U1}:-1"),
        format!("{U1}:1-2-3"),
        format!("{U1}:x-1"),
        format!("{U1}:1:tag"),
        format!("{U1}:1:9tag:2"),
        format!("{U1}:tag"),
        format!("{U1}:1:t.x:2"),
        format!("{U1}:t-x:1"),
        format!("{U1}:tag:tag2:1"),
        format!("{U1}:1:{}:2", "t".repeat(33)),
        format!("{U1}:1,"),
        format!("{U1}:1,0-1-2"),
        "3e11fa47-71ca-11e1-9e33-c80aa942956:1".to_owned(),
        "3e11fa4771ca-11e1-9e33-c80aa9429562a:1".to_owned(),
        "3e11fa47-71ca-11e1-9e33-c80aa942956g:1".to_owned(),
        "3e11fa47-71ca-11e1-9e33-c80aa9429562-1:1".to_owned(),
        "0-1-2,3e11fa47-71ca-11e1-9e33-c80aa9429562:1".to_owned(),
    ];
    for bad in &bad_mysql {
        assert_eq!(GtidSet::parse(bad), None, "{bad:?}");
    }
    assert_eq!(GtidSet::parse_as(&format!("{U1}:1"), Flavor::MariaDb), None);
    // A bare UUID, read as MySQL: a stream with no interval is not a set.
    assert_eq!(GtidSet::parse_as(U1, Flavor::MySql), None);
    assert_eq!(GtidSet::parse_as("0-1-2", Flavor::MySql), None);
}

#[test]
fn limits_are_inclusive() {
    // Exactly MAX_INTERVALS intervals parse; one more does not (MySQL and MariaDB alike).
    let intervals = |n: u64| {
        let mut text = U1.to_owned();
        for i in 0..n {
            text.push_str(&format!(":{}", 2 * i + 1));
        }
        text
    };
    assert_eq!(
        set(&intervals(MAX_INTERVALS as u64)).count(),
        MAX_INTERVALS as u64
    );
    assert_eq!(GtidSet::parse(&intervals(MAX_INTERVALS as u64 + 1)), None);
    let domains = |n: usize| {
        (0..n)
            .map(|d| format!("{d}-1-1"))
            .collect::<Vec<_>>()
            .join(",")
    };
    assert_eq!(set(&domains(MAX_INTERVALS)).count(), MAX_INTERVALS as u64);
    assert_eq!(GtidSet::parse(&domains(MAX_INTERVALS + 1)), None);
    // Exactly MAX_TEXT_LEN bytes parse; one more byte does not.
    let padded = |len: usize| format!("0-1-1{}", " ".repeat(len - 5));
    assert_eq!(padded(MAX_TEXT_LEN).len(), MAX_TEXT_LEN);
    assert!(GtidSet::parse(&padded(MAX_TEXT_LEN)).is_some());
    assert_eq!(GtidSet::parse(&padded(MAX_TEXT_LEN + 1)), None);
}

#[test]
fn containment_table() {
    let cases = [
        // (have, want, contains)
        ("0-1-10", "0-1-10", true),
        ("0-1-10", "0-1-9", true),
        ("0-1-10", "0-1-11", false),
        ("0-1-10", "", true),
        ("", "0-1-1", false),
        ("0-1-10", "1-1-1", false),
        ("0-1-10,1-1-1", "1-1-1", true),
        ("0-1-10,1-1-1", "0-1-10,1-1-2", false),
    ];
    for (have, want, expected) in cases {
        assert_eq!(
            set(have).contains(&set(want)),
            expected,
            "{have:?} ⊇ {want:?}"
        );
    }
    let mysql = [
        (":1-10", ":10", true),
        (":1-10", ":1-10", true),
        (":1-10", ":11", false),
        (":1-5:7-10", ":6", false),
        (":1-5:7-10", ":5-7", false),
        (":1-5:7-10", ":7", true),
        (":1-5:7-10", ":1:8-9", true),
        (":2-5", ":1", false),
        (":1-5", ":4-6", false),
        (":3", ":3", true),
    ];
    for (have, want, expected) in mysql {
        let (have, want) = (set(&format!("{U1}{have}")), set(&format!("{U1}{want}")));
        assert_eq!(have.contains(&want), expected, "{have} ⊇ {want}");
    }
    assert!(!set(&format!("{U1}:1-5")).contains(&set(&format!("{U2}:1"))));
    assert!(set(&format!("{U1}:1-5,{U2}:1")).contains(&set(&format!("{U2}:1"))));
}

#[test]
fn count_counts_every_interval_and_saturates() {
    assert_eq!(set(&format!("{U1}:1-5:7:10-11,{U2}:3")).count(), 9);
    let huge = format!("{U1}:1-18446744073709551615,{U2}:1-2");
    assert_eq!(set(&huge).count(), u64::MAX);
}

/// A random set over small numbers, and the same set as plain membership (the model).
fn random_set(rng: &mut fastrand::Rng) -> (GtidSet, Vec<(usize, u64)>) {
    let uuids = [U1, U2];
    let mut parts = Vec::new();
    let mut members = Vec::new();
    for (u, uuid) in uuids.iter().enumerate() {
        let mut text = (*uuid).to_owned();
        let mut any = false;
        for _ in 0..rng.usize(0..5) {
            let lo = rng.u64(1..30);
            let hi = lo + rng.u64(0..4);
            text.push_str(&format!(":{lo}-{hi}"));
            members.extend((lo..=hi).map(|n| (u, n)));
            any = true;
        }
        if any {
            parts.push(text);
        }
    }
    members.sort_unstable();
    members.dedup();
    (set(&parts.join(",")), members)
}

#[test]
fn property_sets_agree_with_a_membership_model() {
    let mut rng = fastrand::Rng::with_seed(27);
    for _ in 0..1000 {
        let (a, model_a) = random_set(&mut rng);
        let (b, model_b) = random_set(&mut rng);
        assert_eq!(a.count(), model_a.len() as u64, "{a}");
        // Printing and parsing again gives the same set, in the same normal form.
        assert_eq!(GtidSet::parse(&a.to_string()).as_ref(), Some(&a), "{a}");
        let contains = model_b.iter().all(|m| model_a.binary_search(m).is_ok());
        assert_eq!(a.contains(&b), contains, "{a} ⊇ {b}");
        assert!(a.contains(&a) && a.contains(&GtidSet::default()));
        let union = a.union(&b);
        let mut model_union = [model_a, model_b].concat();
        model_union.sort_unstable();
        model_union.dedup();
        assert_eq!(union.count(), model_union.len() as u64, "{a} ∪ {b}");
        assert!(union.contains(&a) && union.contains(&b), "{a} ∪ {b}");
        assert_eq!(GtidSet::parse(&union.to_string()).as_ref(), Some(&union));
    }
}

#[test]
fn property_mangled_texts_never_panic() {
    let mut rng = fastrand::Rng::with_seed(2027);
    let alphabet = b"0123456789abcdefABCDEF-:, \n_xg";
    let seeds = [
        format!("{U1}:1-5:7,{U2}:1-3"),
        "0-1-42,1-2-5".to_owned(),
        format!("{U1}:tag:1-2"),
    ];
    for _ in 0..5_000 {
        let mut bytes = seeds[rng.usize(..seeds.len())].clone().into_bytes();
        for _ in 0..rng.usize(1..4) {
            let at = rng.usize(..=bytes.len());
            match rng.u8(0..3) {
                0 if at < bytes.len() => {
                    bytes.remove(at);
                }
                1 if at < bytes.len() => bytes[at] = alphabet[rng.usize(..alphabet.len())],
                _ => bytes.insert(at, alphabet[rng.usize(..alphabet.len())]),
            }
        }
        let text = String::from_utf8(bytes).expect("ascii");
        let Some(parsed) = GtidSet::parse(&text) else {
            continue;
        };
        assert!(parsed.contains(&parsed), "{text:?}");
        if text.contains(':') {
            // A MySQL set that parses is in normal form: it prints and parses back to itself.
            let again = GtidSet::parse(&parsed.to_string());
            assert_eq!(again.as_ref(), Some(&parsed), "{text:?}");
        }
    }
}
