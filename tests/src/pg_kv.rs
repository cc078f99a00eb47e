//! The history checker's key-value append workload on PostgreSQL, served by [`crate::pg_app`]'s store
//! beside its `/items/` route: `POST /kv/{key}` appends the body (a number) to the key's list,
//! `GET /kv/{key}` answers the list this server sees, as space-separated numbers in append
//! order. A write on a replica fails as a real app's would (500: read-only transaction).
//!
//! The table is one row per appended value; `seq` (a sequence, never reused, ahead of every
//! value committed before a failover since PostgreSQL logs sequences ahead) orders the list and
//! places each value in the run's single timeline; `node` names the app that wrote it.

use http::{Method, StatusCode};
use tokio_postgres::Client;

use crate::history::op::{Key, Value};

/// The table, created by the cluster's setup before any replica clones the leader.
pub const KV_TABLE: &str = "CREATE TABLE kv (seq bigserial PRIMARY KEY, key integer NOT NULL, \
     value bigint NOT NULL, node text NOT NULL); CREATE INDEX kv_key ON kv (key, seq);";

/// What a `/kv/` request asks for.
pub enum KvRequest {
    /// Append `Value` to `Key`'s list.
    Append(Key, Value),
    /// Read `Key`'s list.
    Read(Key),
}

impl KvRequest {
    /// The request for `key` (the path after `/kv/`), or the 4xx answer to give.
    pub fn parse(
        method: &Method,
        key: &str,
        body: &[u8],
    ) -> Result<KvRequest, (StatusCode, &'static str)> {
        let key: Key = key
            .parse()
            .map_err(|_| (StatusCode::NOT_FOUND, "a key is a number\n"))?;
        match *method {
            Method::GET => Ok(KvRequest::Read(key)),
            Method::POST => std::str::from_utf8(body)
                .ok()
                .and_then(|b| b.trim().parse().ok())
                .map(|value| KvRequest::Append(key, value))
                .ok_or((StatusCode::BAD_REQUEST, "the body is not a number\n")),
            _ => Err((StatusCode::METHOD_NOT_ALLOWED, "GET or POST\n")),
        }
    }
}

/// Runs `request` as app `node`: `Ok` with the body of a 200, `Err` with PostgreSQL's message.
pub async fn run(client: &Client, node: &str, request: KvRequest) -> Result<String, String> {
    let describe = crate::pg_app::describe;
    match request {
        KvRequest::Append(key, value) => {
            client
                .execute(
                    "INSERT INTO kv (key, value, node) VALUES ($1, $2, $3)",
                    &[&(key as i32), &(value as i64), &node],
                )
                .await
                .map_err(describe)?;
            Ok("appended".to_owned())
        }
        KvRequest::Read(key) => {
            let rows = client
                .query(
                    "SELECT value FROM kv WHERE key = $1 ORDER BY seq",
                    &[&(key as i32)],
                )
                .await
                .map_err(describe)?;
            let values: Vec<String> = rows
                .iter()
                .map(|r| (r.get::<_, i64>(0) as Value).to_string())
                .collect();
            Ok(values.join(" "))
        }
    }
}

/// One row of the table, in `seq` order: `(key, value, node)`.
pub type KvRow = (Key, Value, String);

/// Every row of the table on the server at `database_url`, in `seq` order.
pub async fn rows(database_url: &str) -> Result<Vec<KvRow>, String> {
    let (client, connection) = tokio_postgres::connect(database_url, tokio_postgres::NoTls)
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(connection);
    let rows = client
        .query("SELECT key, value, node FROM kv ORDER BY seq", &[])
        .await
        .map_err(|e| e.to_string())?;
    Ok(rows
        .iter()
        .map(|r| {
            (
                r.get::<_, i32>(0) as Key,
                r.get::<_, i64>(1) as Value,
                r.get::<_, String>(2),
            )
        })
        .collect())
}
