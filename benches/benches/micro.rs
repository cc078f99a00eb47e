//! Criterion micro-benchmarks of the per-request hot paths that need no IO: classification,
//! token parsing, the routing decision and hop header preparation.
//!
//! Quick run (about a minute):
//! `cargo bench -p rwproxy-benches --bench micro -- --warm-up-time 1 --measurement-time 2`

#![allow(clippy::expect_used, missing_docs)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request};
use rwproxy_core::{
    decide, Classifier, NodeState, Positions, RequestClass, Role, RouteInput, RoutePolicy,
    StalePolicy, TimeoutPolicy, Token, WaitState, WriteMode,
};
use rwproxy_http::upstream::headers::{prepare_request, ClientInfo, HopIdentity};
use rwproxy_http::ConsistencyParams;

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| (*s).to_owned()).collect()
}

fn classification(c: &mut Criterion) {
    let methods = vec![Method::GET, Method::HEAD, Method::OPTIONS];
    let plain = Classifier::new(methods.clone(), &[], &[]).expect("valid");
    let globs = Classifier::new(
        methods,
        &strings(&["/static/*", "/assets/*.css", "/csp-report"]),
        &strings(&["/admin/*", "/login", "/api/*/sync"]),
    )
    .expect("valid");
    let mut g = c.benchmark_group("classify");
    g.bench_function("methods_only/GET", |b| {
        b.iter(|| plain.classify(black_box(&Method::GET), black_box("/notes/42")))
    });
    g.bench_function("methods_only/POST", |b| {
        b.iter(|| plain.classify(black_box(&Method::POST), black_box("/notes/42")))
    });
    g.bench_function("globs/GET_no_match", |b| {
        b.iter(|| globs.classify(black_box(&Method::GET), black_box("/notes/42")))
    });
    g.bench_function("globs/GET_passthrough", |b| {
        b.iter(|| globs.classify(black_box(&Method::GET), black_box("/static/js/app.js")))
    });
    g.bench_function("globs/GET_always_forward", |b| {
        b.iter(|| globs.classify(black_box(&Method::GET), black_box("/admin/users")))
    });
    g.finish();
}

fn consistency_params() -> ConsistencyParams {
    ConsistencyParams {
        cookie: "__txid".to_owned(),
        header: HeaderName::from_static("rwproxy-position"),
        wait: Duration::from_secs(5),
        cookie_max_age: Duration::from_secs(300),
        max_waiters: 10_000,
        databases: vec![Arc::from("app.db"), Arc::from("jobs.db")],
        session: rwproxy_http::SessionMode::Writes,
    }
}

fn tokens(c: &mut Criterion) {
    let db: Arc<str> = Arc::from("app.db");
    let params = consistency_params();
    let mut with_cookie = HeaderMap::new();
    with_cookie.insert(
        http::header::COOKIE,
        HeaderValue::from_static("session=abcdef0123456789; theme=dark; __txid=000000000000beef"),
    );
    let mut with_header = HeaderMap::new();
    with_header.insert(
        HeaderName::from_static("rwproxy-position"),
        HeaderValue::from_static("app.db=000000000000beef,jobs.db=0000000000000010"),
    );
    let mut without = HeaderMap::new();
    without.insert(
        http::header::COOKIE,
        HeaderValue::from_static("session=abcdef0123456789; theme=dark"),
    );
    let mut g = c.benchmark_group("token");
    g.bench_function("from_cookie", |b| {
        b.iter(|| Token::from_cookie(black_box("000000000000beef"), &db))
    });
    g.bench_function("from_header/2_dbs", |b| {
        b.iter(|| {
            Token::from_header(black_box(
                "app.db=000000000000beef,jobs.db=0000000000000010",
            ))
        })
    });
    g.bench_function("token_from/cookie", |b| {
        b.iter(|| params.token_from(black_box(&with_cookie)))
    });
    g.bench_function("token_from/header", |b| {
        b.iter(|| params.token_from(black_box(&with_header)))
    });
    g.bench_function("token_from/none", |b| {
        b.iter(|| params.token_from(black_box(&without)))
    });
    g.finish();
}

fn routing(c: &mut Criterion) {
    let policy = RoutePolicy {
        write_mode: WriteMode::Forward,
        when_stale: StalePolicy::Forward,
        on_timeout: TimeoutPolicy::Forward,
    };
    let mut positions = Positions::new();
    positions.insert(Arc::from("app.db"), 42);
    let state = |role| NodeState {
        role,
        primary: Some(Arc::from("primary")),
        positions: positions.clone(),
        lag: Some(Duration::from_millis(20)),
        ready: true,
        problem: None,
        ..NodeState::default()
    };
    let primary = state(Role::Primary);
    let replica = state(Role::Replica);
    let input = |class, state, fresh, wait| RouteInput {
        class,
        state,
        fresh,
        forwarded: false,
        wait,
        waited_for_primary: false,
    };
    let mut g = c.benchmark_group("decide");
    let cases = [
        (
            "primary/read",
            input(RequestClass::Read, &primary, true, WaitState::Satisfied),
        ),
        (
            "replica/read",
            input(RequestClass::Read, &replica, true, WaitState::Satisfied),
        ),
        (
            "replica/write",
            input(RequestClass::Write, &replica, true, WaitState::Satisfied),
        ),
        (
            "replica/stale_read",
            input(RequestClass::Read, &replica, false, WaitState::Satisfied),
        ),
        (
            "replica/read_behind",
            input(RequestClass::Read, &replica, true, WaitState::Behind),
        ),
    ];
    for (name, case) in cases {
        g.bench_function(name, |b| b.iter(|| decide(black_box(case), &policy)));
    }
    g.finish();
}

fn hop_headers(c: &mut Criterion) {
    let hop = HopIdentity::new("replica-1");
    let client = ClientInfo::new("10.1.2.3".parse().expect("ip"), false);
    // What a browser behind a load balancer typically sends.
    let typical = Request::get("/notes/42?page=2")
        .header("host", "app.example")
        .header(
            "user-agent",
            "Mozilla/5.0 (X11; Linux x86_64) Gecko/20100101 Firefox/128.0",
        )
        .header("accept", "text/html,application/xhtml+xml")
        .header("accept-encoding", "gzip, deflate, br")
        .header(
            "cookie",
            "session=abcdef0123456789; __txid=000000000000beef",
        )
        .header("x-forwarded-for", "203.0.113.9")
        .header("x-forwarded-proto", "https")
        .header("x-request-id", "0123456789abcdef")
        .body(())
        .expect("request")
        .into_parts()
        .0;
    let minimal = Request::get("/")
        .header("host", "app.example")
        .body(())
        .expect("request")
        .into_parts()
        .0;
    let hop_by_hop = Request::post("/notes")
        .header("host", "app.example")
        .header("connection", "keep-alive, x-private")
        .header("keep-alive", "timeout=5")
        .header("x-private", "1")
        .header("te", "trailers")
        .header("content-length", "17")
        .body(())
        .expect("request")
        .into_parts()
        .0;
    let mut g = c.benchmark_group("prepare_request");
    for (name, parts) in [
        ("minimal", minimal),
        ("typical", typical),
        ("hop_by_hop", hop_by_hop),
    ] {
        g.bench_function(name, |b| {
            b.iter_batched_ref(
                || clone_parts(&parts),
                |p| prepare_request(black_box(p), &client, &hop),
                criterion::BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

/// `request::Parts` is not `Clone`; rebuild it (outside the timed section).
fn clone_parts(parts: &http::request::Parts) -> http::request::Parts {
    let mut request = Request::new(());
    *request.method_mut() = parts.method.clone();
    *request.uri_mut() = parts.uri.clone();
    *request.version_mut() = parts.version;
    *request.headers_mut() = parts.headers.clone();
    request.into_parts().0
}

criterion_group!(benches, classification, tokens, routing, hop_headers);
criterion_main!(benches);
