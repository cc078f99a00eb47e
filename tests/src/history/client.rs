//! One client session: a browser-like client with its own cookie jar (the `__txid` cookie),
//! sending one request at a time to a node chosen at random for each request, as an edge that
//! balances every request anew would, and recording every operation.

use std::time::{Duration, Instant};

use super::cluster::NodeUrls;
use super::op::{Key, Op, OpKind, Value, WriteResult};

/// How long a client waits for any answer (rwproxy's own bounds are shorter).
const CLIENT_TIMEOUT: Duration = Duration::from_secs(15);
/// Keys a session works on at once; the set changes every [`FOCUS_OPS`] operations, so sessions
/// meet on shared keys.
const FOCUS_KEYS: usize = 3;
const FOCUS_OPS: usize = 40;

/// What the workload looks like.
#[derive(Clone, Copy, Debug)]
pub struct Workload {
    /// Operations this session runs.
    pub ops: usize,
    /// Keys to choose from.
    pub keys: Key,
    /// Share of writes, in percent.
    pub write_percent: u8,
    /// Seed of this session's choices.
    pub seed: u64,
}

/// The value session `session` writes as its `n`th write: unique across the run.
pub fn unique_value(session: usize, n: u64) -> Value {
    ((session as u64) << 32) | n
}

/// Runs session `id` to completion; `clock` is the run's start (all times are relative to it).
pub async fn run_session(id: usize, urls: NodeUrls, clock: Instant, work: Workload) -> Vec<Op> {
    let client = crate::client_builder()
        .timeout(CLIENT_TIMEOUT)
        .build()
        .expect("client");
    let mut rng = fastrand::Rng::with_seed(work.seed);
    let mut jar: Option<String> = None;
    let mut focus: Vec<Key> = Vec::new();
    let mut writes = 0;
    let mut ops = Vec::with_capacity(work.ops);
    for index in 0..work.ops {
        if index % FOCUS_OPS == 0 {
            focus = (0..FOCUS_KEYS).map(|_| rng.u32(..work.keys)).collect();
        }
        let key = focus[rng.usize(..focus.len())];
        let node = rng.usize(..urls.len());
        let url = format!("{}/kv/{key}", urls.get(node));
        let is_write = rng.u8(..100) < work.write_percent;
        let request = if is_write {
            writes += 1;
            client.post(&url).body(unique_value(id, writes).to_string())
        } else {
            client.get(&url)
        };
        let request = match &jar {
            Some(cookie) => request.header(http::header::COOKIE, cookie.as_str()),
            None => request,
        };
        let start_us = micros(clock);
        let answer = request.send().await;
        let mut failure = None;
        let answer = match answer {
            Ok(response) => {
                keep_cookie(&mut jar, response.headers());
                let status = response.status();
                if !status.is_success() {
                    let code = response
                        .headers()
                        .get("rwproxy-error")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("from the app");
                    failure = Some(format!("{} {code}", status.as_u16()));
                }
                response.text().await.ok().map(|body| (status, body))
            }
            Err(_) => None,
        };
        if answer.is_none() {
            failure = Some("no answer".to_owned());
        }
        let end_us = micros(clock);
        let kind = if is_write {
            let result = match &answer {
                Some((status, _)) if status.is_success() => WriteResult::Acked,
                Some((status, _)) => WriteResult::Failed(status.as_u16()),
                None => WriteResult::Unknown,
            };
            OpKind::Write {
                key,
                value: unique_value(id, writes),
                result,
            }
        } else {
            let values = answer
                .filter(|(status, _)| status.is_success())
                .map(|(_, body)| {
                    body.split_whitespace()
                        .filter_map(|v| v.parse().ok())
                        .collect()
                });
            OpKind::Read { key, values }
        };
        ops.push(Op {
            session: id,
            index,
            node,
            start_us,
            end_us,
            kind,
            failure,
        });
    }
    ops
}

fn micros(clock: Instant) -> u64 {
    clock.elapsed().as_micros() as u64
}

/// Keeps the last `__txid` cookie a response set, as a browser's jar does.
fn keep_cookie(jar: &mut Option<String>, headers: &http::HeaderMap) {
    for value in headers.get_all(http::header::SET_COOKIE) {
        let Ok(text) = value.to_str() else { continue };
        let pair = text.split(';').next().unwrap_or_default().trim();
        if pair.starts_with("__txid=") {
            *jar = Some(pair.to_owned());
        }
    }
}
