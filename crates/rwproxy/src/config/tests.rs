use std::net::SocketAddr;
use std::time::Duration;

use super::*;

const MINIMAL: &str = "[proxy]\napp = \"http://127.0.0.1:8081\"\n";

fn ok(text: &str) -> Config {
    match parse(text) {
        Ok(config) => config,
        Err(errors) => panic!("expected a valid config, got:\n{errors}"),
    }
}

/// The problems of `text`, one `key: message` string each.
fn problems(text: &str) -> Vec<String> {
    match parse(text) {
        Ok(config) => panic!("expected problems, got {config:?}"),
        Err(errors) => errors.0.iter().map(|p| p.to_string()).collect(),
    }
}

/// The problems of the minimal config plus `extra` (which may add keys to `[proxy]`).
fn problems_with(extra: &str) -> Vec<String> {
    problems(&format!("{MINIMAL}{extra}"))
}

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("address")
}

#[test]
fn minimal_config_gets_every_default() {
    let c = ok(MINIMAL);
    let hostname = gethostname::gethostname().to_string_lossy().into_owned();
    assert_eq!(c.node, hostname);

    assert_eq!(c.proxy.listen, addr("0.0.0.0:8080"));
    assert_eq!(c.proxy.app, "http://127.0.0.1:8081/");
    assert_eq!(c.proxy.app_connect_retry, Duration::from_secs(30));
    assert_eq!(c.proxy.drain_timeout, Duration::from_secs(30));
    assert_eq!(c.proxy.workers, 0);
    assert_eq!(c.proxy.max_body, None);

    assert_eq!(c.admin.listen, Some(addr("127.0.0.1:9090")));

    match &c.cluster.source {
        SourceConfig::Litefs { mount, api, poll } => {
            assert_eq!(mount, &PathBuf::from("/litefs"));
            assert!(api.is_none());
            assert_eq!(*poll, Duration::from_millis(100));
        }
        other => panic!("default source is litefs, got {other:?}"),
    }
    assert_eq!(c.cluster.source.name(), "litefs");
    assert_eq!(c.cluster.databases, vec!["app.db".to_owned()]);

    assert_eq!(c.writes.mode, WriteMode::Forward);
    assert_eq!(c.writes.primary_url, "http://{primary}:8080");
    assert_eq!(
        c.writes.primary_uri("iad-1").map(|u| u.to_string()),
        Some("http://iad-1:8080/".to_owned())
    );
    assert_eq!(c.writes.primary_wait, Duration::from_secs(5));
    assert_eq!(c.writes.timeout, Duration::from_secs(30));
    assert_eq!(c.writes.connect_timeout, Duration::from_secs(2));

    assert_eq!(
        c.reads.methods,
        vec![Method::GET, Method::HEAD, Method::OPTIONS]
    );
    assert_eq!(c.reads.max_lag, Duration::from_secs(5));
    assert_eq!(c.reads.when_stale, StalePolicy::Forward);
    assert!(c.reads.route_header);

    assert!(c.routing.passthrough.is_empty());
    assert!(c.routing.always_forward.is_empty());

    assert_eq!(c.consistency.cookie, "__txid");
    assert_eq!(c.consistency.header, "rwproxy-position");
    assert_eq!(c.consistency.wait, Duration::from_secs(5));
    assert_eq!(c.consistency.on_timeout, TimeoutPolicy::Forward);
    assert_eq!(c.consistency.cookie_max_age, Duration::from_secs(300));
    assert_eq!(c.consistency.max_waiters, 10_000);
    assert_eq!(c.consistency.session, rwproxy_http::SessionMode::Writes);

    assert_eq!(c.health.path, "/health");
    assert_eq!(c.health.max_lag, Duration::from_secs(10));

    assert_eq!(c.log.format, LogFormat::Text);
    assert!(c.log.access);
    assert_eq!(c.log.level, "info");
}

/// The example of the contract, verbatim: keys of every source side by side are fine.
const CONTRACT_EXAMPLE: &str = r#"
node = "iad-1"                        # this node's name; default: the machine's hostname

[proxy]
listen = "0.0.0.0:8080"               # where clients and the edge connect
app = "http://127.0.0.1:8081"         # the local application (required)

[admin]
listen = "127.0.0.1:9090"             # /metrics, /health, /status; "" disables

[cluster]
source = "litefs"                     # "static" | "litefs" | "http"
# source = "static": the primary never changes and there is no lag information
primary = "iad-1"                     # this node is the primary when primary == node
# source = "litefs": read the LiteFS mount (see the field notes for the file formats)
mount = "/litefs"
databases = ["app.db"]                # positions of these databases back the consistency token
api = ""                              # optional LiteFS API URL, e.g. "http://127.0.0.1:20202"
# source = "http": poll a JSON status document (shape below)
url = "http://127.0.0.1:8081/.well-known/replication"
poll = "100ms"                        # how often file and http sources re-read

[writes]
mode = "forward"                      # "forward" | "fly-replay" | "redirect"
primary_url = "http://{primary}:8080" # where forwarded writes go; {primary} = the primary's name
primary_wait = "5s"                   # how long a write may wait for a primary to become known
timeout = "30s"                       # upper bound on a forwarded request

[reads]
methods = ["GET", "HEAD", "OPTIONS"]  # every other method is a write
max_lag = "5s"                        # a replica lagging more than this does not serve reads itself
when_stale = "forward"                # "forward" to the primary | "reject" (503) | "serve" anyway

[routing]
passthrough = []                      # path globs served by the local app whatever the method
always_forward = []                   # path globs always sent to the primary

[consistency]
cookie = "__txid"
header = "rwproxy-position"
wait = "5s"                           # how long a read waits for this node to reach the token
on_timeout = "forward"                # "forward" (serve it from the primary) | "error" (504)
session = "writes"                    # "writes" | "reads-too" (reads earn a token: monotonic reads)

[health]
path = "/health"                      # answered on the proxy listener (and always /health on admin)
max_lag = "10s"                       # lag above this makes the node unhealthy
"#;

#[test]
fn the_contract_example_parses() {
    let c = ok(CONTRACT_EXAMPLE);
    assert_eq!(c.node, "iad-1");
    assert!(matches!(
        c.cluster.source,
        SourceConfig::Litefs { api: None, .. }
    ));
}

#[test]
fn every_key_parses() {
    let c = ok(r#"
node = "lhr-2"

[proxy]
listen = "127.0.0.1:18080"
app = "http://localhost:3000/"
app_connect_retry = "10s"
drain_timeout = "1m"
workers = 4
max_body = 1048576

[admin]
listen = "[::1]:19090"

[cluster]
source = "http"
url = "https://status.internal/replication?node=lhr-2"
databases = ["app.db", "cache.db"]
poll = "250ms"
timeout = "500ms"

[writes]
mode = "fly-replay"
primary_url = "https://{primary}.internal:8443"
primary_wait = "2s"
timeout = "1m 30s"
connect_timeout = "750ms"

[reads]
methods = ["GET", "HEAD", "PROPFIND"]
max_lag = "2s"
when_stale = "reject"
route_header = false

[routing]
passthrough = ["/static/*", "/{favicon.ico,robots.txt}"]
always_forward = ["/login", "/admin/*"]

[consistency]
cookie = "my_txid"
header = "X-Position"
wait = "3s"
on_timeout = "error"
cookie_max_age = "10m"
max_waiters = 50
session = "reads-too"

[health]
path = "/_health"
max_lag = "20s"

[log]
format = "json"
access = false
level = "rwproxy=debug,info"
"#);
    assert_eq!(c.node, "lhr-2");
    assert_eq!(c.proxy.listen, addr("127.0.0.1:18080"));
    assert_eq!(c.proxy.app, "http://localhost:3000/");
    assert_eq!(c.proxy.app.port_u16(), Some(3000));
    assert_eq!(c.proxy.app_connect_retry, Duration::from_secs(10));
    assert_eq!(c.proxy.drain_timeout, Duration::from_secs(60));
    assert_eq!(c.proxy.workers, 4);
    assert_eq!(c.proxy.max_body, Some(1_048_576));
    assert_eq!(c.admin.listen, Some(addr("[::1]:19090")));
    match &c.cluster.source {
        SourceConfig::Http { url, poll, timeout } => {
            assert_eq!(url, "https://status.internal/replication?node=lhr-2");
            assert_eq!(*poll, Duration::from_millis(250));
            assert_eq!(*timeout, Duration::from_millis(500));
        }
        other => panic!("expected http, got {other:?}"),
    }
    assert_eq!(c.cluster.databases, vec!["app.db", "cache.db"]);
    assert_eq!(c.writes.mode, WriteMode::FlyReplay);
    assert_eq!(
        c.writes.primary_uri("iad-1").map(|u| u.to_string()),
        Some("https://iad-1.internal:8443/".to_owned())
    );
    assert_eq!(c.writes.primary_wait, Duration::from_secs(2));
    assert_eq!(c.writes.timeout, Duration::from_secs(90));
    assert_eq!(c.writes.connect_timeout, Duration::from_millis(750));
    assert_eq!(c.reads.methods.len(), 3);
    assert_eq!(c.reads.methods[2].as_str(), "PROPFIND");
    assert_eq!(c.reads.max_lag, Duration::from_secs(2));
    assert_eq!(c.reads.when_stale, StalePolicy::Reject);
    assert!(!c.reads.route_header);
    assert_eq!(
        c.routing.passthrough,
        vec!["/static/*", "/{favicon.ico,robots.txt}"]
    );
    assert_eq!(c.routing.always_forward, vec!["/login", "/admin/*"]);
    assert_eq!(c.consistency.cookie, "my_txid");
    assert_eq!(c.consistency.header, "x-position");
    assert_eq!(c.consistency.wait, Duration::from_secs(3));
    assert_eq!(c.consistency.on_timeout, TimeoutPolicy::Error);
    assert_eq!(c.consistency.cookie_max_age, Duration::from_secs(600));
    assert_eq!(c.consistency.max_waiters, 50);
    assert_eq!(c.consistency.session, rwproxy_http::SessionMode::ReadsToo);
    assert_eq!(c.health.path, "/_health");
    assert_eq!(c.health.max_lag, Duration::from_secs(20));
    assert_eq!(c.log.format, LogFormat::Json);
    assert!(!c.log.access);
    assert_eq!(c.log.level, "rwproxy=debug,info");
}

#[test]
fn static_and_litefs_sources() {
    let c = ok(&format!(
        "{MINIMAL}[cluster]\nsource = \"static\"\nprimary = \"iad-1\"\n\
         mount = \"\"\nurl = \"not a url\"\napi = \"nope\"\npoll = \"soon\"\n"
    ));
    // Keys of other sources are left alone, whatever they hold.
    assert!(matches!(&c.cluster.source, SourceConfig::Static { primary } if primary == "iad-1"));

    let c = ok(&format!(
        "{MINIMAL}[cluster]\nsource = \"litefs\"\nmount = \"/var/lib/litefs\"\n\
         api = \"http://127.0.0.1:20202\"\nurl = \"not a url\"\ntimeout = \"never\"\n"
    ));
    match &c.cluster.source {
        SourceConfig::Litefs { mount, api, .. } => {
            assert_eq!(mount, &PathBuf::from("/var/lib/litefs"));
            assert_eq!(
                api.as_ref().map(|u| u.to_string()),
                Some("http://127.0.0.1:20202/".to_owned())
            );
        }
        other => panic!("expected litefs, got {other:?}"),
    }

    let c = ok(&format!("{MINIMAL}[cluster]\nsource = \"http\"\n"));
    match &c.cluster.source {
        SourceConfig::Http { url, timeout, .. } => {
            assert_eq!(url, "http://127.0.0.1:8081/.well-known/replication");
            assert_eq!(*timeout, Duration::from_secs(1));
        }
        other => panic!("expected http, got {other:?}"),
    }
}

#[test]
fn admin_empty_string_disables() {
    let c = ok(&format!("{MINIMAL}[admin]\nlisten = \"\"\n"));
    assert_eq!(c.admin.listen, None);
}

#[test]
fn missing_proxy_app_is_named() {
    assert_eq!(
        problems(""),
        vec![
            "proxy.app: required key missing (the local app's URL, e.g. \"http://127.0.0.1:8081\")"
        ]
    );
    assert_eq!(problems("[proxy]\nlisten = \"0.0.0.0:80\"\n").len(), 1);
}

#[test]
fn static_source_needs_a_primary() {
    assert_eq!(
        problems_with("[cluster]\nsource = \"static\"\n"),
        vec![
            "cluster.primary: required key missing (the primary's node name, required when \
             cluster.source = \"static\")"
        ]
    );
    assert_eq!(
        problems_with("[cluster]\nsource = \"static\"\nprimary = \"\"\n"),
        vec!["cluster.primary: must not be empty"]
    );
}

#[test]
fn every_problem_is_reported_at_once() {
    // Grouped by section in file order; in a section: type errors, unknown keys, bad values.
    let text = r#"
nod = "x"

[proxy]
lisen = "0.0.0.0:8080"
app = "http://127.0.0.1:8081"
workers = "four"

[writes]
primary_wait = "5 parsecs"
timeout = 30
mode = "teleport"

[reads]
when_stale = "sometimes"
methods = ["GET", "get", "B@D"]

[routing]
passthrough = ["static/*", "/a/["]

[cluster.extra]
deep = 1

[health]
path = "health"
"#;
    assert_eq!(
        problems(text),
        vec![
            "nod: unknown key",
            "proxy.workers: invalid type: string \"four\", expected a non-negative integer",
            "proxy.lisen: unknown key",
            "writes.timeout: invalid duration 30 (a duration is a string with a unit, e.g. \"30s\")",
            "writes.mode: invalid value \"teleport\" (expected \"forward\", \"fly-replay\" or \"redirect\")",
            "writes.primary_wait: invalid duration \"5 parsecs\"",
            "reads.methods: invalid method \"get\" (expected an uppercase HTTP method, e.g. \"GET\")",
            "reads.methods: invalid method \"B@D\" (expected an uppercase HTTP method, e.g. \"GET\")",
            "reads.when_stale: invalid value \"sometimes\" (expected \"forward\", \"reject\" or \"serve\")",
            "routing.passthrough: invalid glob \"static/*\" (must start with '/')",
            "routing.passthrough: invalid glob \"/a/[\" (unclosed character class; missing ']')",
            "cluster.extra: unknown key",
            "health.path: invalid path \"health\" (must start with '/', no query)",
        ]
    );
}

#[test]
fn unknown_keys_are_named_by_full_path() {
    let text = format!(
        "{MINIMAL}tls_mode = true\n[proxy.timeouts]\nread = \"1s\"\n[consistency]\ncookei = \"x\"\n\
         [bogus]\nkey = 1\n[log]\nlevel = \"info\"\ncolour = true\n"
    );
    assert_eq!(
        problems(&text),
        vec![
            "proxy.tls_mode: unknown key",
            "proxy.timeouts: unknown key",
            "consistency.cookei: unknown key",
            "bogus: unknown key",
            "log.colour: unknown key",
        ]
    );
}

#[test]
fn type_errors_are_all_named() {
    let text = "node = 7\n[proxy]\napp = 8081\nlisten = 8080\nmax_body = \"1MB\"\n\
                [reads]\nmethods = \"GET\"\nroute_header = \"yes\"\n[routing]\n\
                always_forward = [\"/a\", 2]\n[health]\nmax_lag = 1.5\n";
    assert_eq!(
        problems(text),
        vec![
            "node: invalid type: integer `7`, expected a string",
            "proxy.app: invalid type: integer `8081`, expected a string",
            "proxy.listen: invalid type: integer `8080`, expected a string",
            "proxy.max_body: invalid type: string \"1MB\", expected a non-negative integer",
            "reads.methods: invalid type: string \"GET\", expected an array",
            "reads.route_header: invalid type: string \"yes\", expected a boolean",
            "routing.always_forward[1]: invalid type: integer `2`, expected a string",
            "health.max_lag: invalid duration 1.5 (a duration is a string with a unit, e.g. \"1.5s\")",
        ]
    );
}

#[test]
fn a_section_of_the_wrong_type_is_one_problem() {
    assert_eq!(
        problems("proxy = \"http://127.0.0.1:8081\"\n"),
        vec!["proxy: invalid type: string, expected a table"]
    );
    assert_eq!(
        problems("[[proxy]]\napp = \"http://127.0.0.1:8081\"\n"),
        vec!["proxy: invalid type: array, expected a table"]
    );
}

#[test]
fn bad_durations() {
    for (value, message) in [
        ("\"5 parsecs\"", "invalid duration \"5 parsecs\""),
        (
            "\"5\"",
            "invalid duration \"5\" (a duration needs a unit, e.g. \"5s\")",
        ),
        ("\"\"", "invalid duration \"\""),
        (
            "5",
            "invalid duration 5 (a duration is a string with a unit, e.g. \"5s\")",
        ),
    ] {
        assert_eq!(
            problems_with(&format!("[writes]\nprimary_wait = {value}\n")),
            vec![format!("writes.primary_wait: {message}")],
            "{value}"
        );
    }
    assert_eq!(
        problems_with("[writes]\ntimeout = \"0s\"\n[cluster]\npoll = \"0ms\"\n"),
        vec![
            "writes.timeout: must be greater than zero",
            "cluster.poll: must be greater than zero",
        ]
    );
}

#[test]
fn bad_enums() {
    let text = format!(
        "{MINIMAL}[cluster]\nsource = \"consul\"\nmount = 5\n[consistency]\non_timeout = \"retry\"\n\
         session = \"all\"\n[log]\nformat = \"xml\"\n"
    );
    assert_eq!(
        problems(&text),
        vec![
            "cluster.mount: invalid type: integer `5`, expected a string",
            "cluster.source: invalid value \"consul\" (expected \"static\", \"litefs\", \"http\", \"postgres\", \"patroni\" or \"mysql\")",
            "consistency.on_timeout: invalid value \"retry\" (expected \"forward\" or \"error\")",
            "consistency.session: invalid value \"all\" (expected \"writes\" or \"reads-too\")",
            "log.format: invalid value \"xml\" (expected \"text\" or \"json\")",
        ]
    );
}

#[test]
fn bad_uris() {
    let app = |value: &str| problems(&format!("[proxy]\napp = {value:?}\n"));
    assert_eq!(
        app("https://127.0.0.1:8081"),
        vec!["proxy.app: invalid URL \"https://127.0.0.1:8081\" (expected http://HOST:PORT)"]
    );
    assert_eq!(
        app("http://127.0.0.1:8081/app"),
        vec!["proxy.app: invalid URL \"http://127.0.0.1:8081/app\" (no path or query allowed)"]
    );
    assert_eq!(app("127.0.0.1:8081").len(), 1);
    assert_eq!(
        problems_with("[writes]\nprimary_url = \"{primary}:8080\"\n"),
        vec![
            "writes.primary_url: invalid URL \"{primary}:8080\" (expected http://HOST:PORT or \
             https://HOST:PORT, no path or query; {primary} stands for the primary's name)"
        ]
    );
    assert_eq!(
        problems_with("[writes]\nprimary_url = \"http://{primray}:8080\"\n").len(),
        1
    );
    // A fixed primary URL (e.g. a load balancer in front of the primary) is fine.
    ok(&format!(
        "{MINIMAL}[writes]\nprimary_url = \"http://primary.internal:8080\"\n"
    ));
    assert_eq!(
        problems_with("[cluster]\nsource = \"http\"\nurl = \"/status\"\n"),
        vec!["cluster.url: invalid URL \"/status\" (expected an absolute http:// or https:// URL)"]
    );
    assert_eq!(
        problems_with("[cluster]\napi = \"127.0.0.1:20202\"\n"),
        vec!["cluster.api: invalid URL \"127.0.0.1:20202\" (expected http://HOST:PORT or https://HOST:PORT)"]
    );
}

#[test]
fn bad_addresses() {
    assert_eq!(
        problems_with("[admin]\nlisten = \"localhost:9090\"\n"),
        vec![
            "admin.listen: invalid address \"localhost:9090\" (expected IP:PORT, e.g. \"0.0.0.0:8080\")"
        ]
    );
    assert_eq!(
        problems("[proxy]\napp = \"http://127.0.0.1:8081\"\nlisten = \"8080\"\n"),
        vec!["proxy.listen: invalid address \"8080\" (expected IP:PORT, e.g. \"0.0.0.0:8080\")"]
    );
    assert_eq!(
        problems_with("[admin]\nlisten = \"127.0.0.1:8080\"\n"),
        vec!["admin.listen: 127.0.0.1:8080 conflicts with proxy.listen 0.0.0.0:8080"]
    );
}

#[test]
fn rwproxys_own_headers_are_refused_as_the_token_header() {
    for name in [
        "rwproxy-timeline",
        "RWProxy-Timeline",
        "rwproxy-forwarded-by",
    ] {
        let text = format!("{MINIMAL}[consistency]\nheader = \"{name}\"\n");
        assert_eq!(
            problems(&text),
            vec![format!(
                "consistency.header: header name {name:?} is reserved (choose another name)"
            )]
        );
    }
}

#[test]
fn bad_names() {
    let text = format!(
        "{MINIMAL}node = \"\"\n[cluster]\ndatabases = [\"app.db\", \"a,b\", \"app.db\", \"\"]\n\
         [consistency]\ncookie = \"tx id\"\nheader = \"set-cookie\"\nmax_waiters = 0\n\
         cookie_max_age = \"0s\"\n[log]\nlevel = \" \"\n"
    );
    // `node = ""` after `[proxy]` is proxy.node: unknown.
    assert_eq!(
        problems(&text),
        vec![
            "proxy.node: unknown key",
            "cluster.databases: invalid database name \"a,b\" (must be non-empty, without '/', ',', '=' or whitespace)",
            "cluster.databases: \"app.db\" is listed twice",
            "cluster.databases: invalid database name \"\" (must be non-empty, without '/', ',', '=' or whitespace)",
            "consistency.cookie: invalid cookie name \"tx id\"",
            "consistency.max_waiters: must be greater than zero",
            "consistency.header: header name \"set-cookie\" is reserved (choose another name)",
            "consistency.cookie_max_age: must be greater than zero",
            "log.level: must not be empty (e.g. \"info\")",
        ]
    );
    assert_eq!(
        problems(&format!(
            "node = \"\"\n{MINIMAL}[cluster]\ndatabases = []\n"
        )),
        vec![
            "node: must not be empty",
            "cluster.databases: must name at least one database"
        ]
    );
}

#[test]
fn syntax_errors_give_a_position() {
    let errors = problems("[proxy]\napp = \"http://127.0.0.1:8081\"\nlisten = \n");
    assert_eq!(errors.len(), 1);
    assert!(
        errors[0].starts_with("line 3, column 10: invalid TOML: "),
        "{errors:?}"
    );
    let errors = problems("[proxy]\napp = \"a\"\napp = \"b\"\n");
    assert!(
        errors[0].starts_with("line 3, column 1: invalid TOML: "),
        "{errors:?}"
    );
}

#[test]
fn load_reads_a_file_and_names_it_on_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("rwproxy.toml");
    std::fs::write(&path, MINIMAL).expect("write");
    assert!(load(&path).is_ok());

    std::fs::write(&path, "[proxy\n").expect("write");
    let errors = load(&path).expect_err("syntax error");
    assert_eq!(errors.0.len(), 1);
    assert!(
        errors.0[0]
            .key
            .starts_with(&format!("{}:1:", path.display())),
        "{errors}"
    );

    let missing = dir.path().join("missing.toml");
    let errors = load(&missing).expect_err("missing");
    assert_eq!(errors.0.len(), 1);
    assert_eq!(errors.0[0].key, missing.display().to_string());
    assert!(
        errors.0[0]
            .message
            .starts_with("cannot read the configuration file: "),
        "{errors}"
    );
}

#[test]
fn errors_display_one_line_per_problem() {
    let errors = ConfigErrors(vec![
        Problem::new("writes.primary_wait", "invalid duration \"5 parsecs\""),
        Problem::new("proxy.lisen", "unknown key"),
    ]);
    assert_eq!(
        errors.to_string(),
        "writes.primary_wait: invalid duration \"5 parsecs\"\nproxy.lisen: unknown key"
    );
}

#[test]
fn health_and_agent_keys() {
    let c = ok(MINIMAL);
    assert_eq!((c.health.rise, c.health.fall), (2, 3));
    assert_eq!(c.health.app_path, None);
    assert_eq!(c.health.app_interval, Duration::from_secs(1));
    assert_eq!(c.health.app_timeout, Duration::from_secs(1));
    assert_eq!(c.admin.agent_listen, None);

    let c = ok(&format!(
        "{MINIMAL}[admin]\nagent_listen = \"0.0.0.0:9091\"\n[health]\nrise = 1\nfall = 5\n\
         app_path = \"/healthz?deep=1\"\napp_interval = \"500ms\"\napp_timeout = \"300ms\"\n"
    ));
    assert_eq!(c.admin.agent_listen, Some(addr("0.0.0.0:9091")));
    assert_eq!((c.health.rise, c.health.fall), (1, 5));
    assert_eq!(c.health.app_path.as_deref(), Some("/healthz?deep=1"));
    assert_eq!(c.health.app_interval, Duration::from_millis(500));
    assert_eq!(c.health.app_timeout, Duration::from_millis(300));
    let c = ok(&format!(
        "{MINIMAL}[admin]\nagent_listen = \"\"\n[health]\napp_path = \"\"\n"
    ));
    assert_eq!(c.admin.agent_listen, None);
    assert_eq!(c.health.app_path, None);
}

#[test]
fn bad_health_and_agent_keys() {
    assert_eq!(
        problems_with(
            "[admin]\nagent_listen = \"127.0.0.1:9090\"\n[health]\nrise = 0\nfall = 0\n\
             app_path = \"healthz\"\napp_interval = \"0s\"\napp_timeout = \"soon\"\n"
        ),
        vec![
            "admin.agent_listen: 127.0.0.1:9090 conflicts with admin.listen 127.0.0.1:9090",
            "health.rise: must be at least 1",
            "health.fall: must be at least 1",
            "health.app_path: invalid path \"healthz\" (must start with '/', e.g. \"/healthz\")",
            "health.app_interval: must be greater than zero",
            "health.app_timeout: invalid duration \"soon\"",
        ]
    );
    assert_eq!(
        problems_with("[health]\nfall = -1\n"),
        vec!["health.fall: invalid value: integer `-1`, expected u32"]
    );
}

#[test]
fn limits_and_the_shared_secret() {
    let c = ok("[proxy]\napp = \"http://127.0.0.1:8081\"\n");
    assert_eq!(c.proxy.max_connections, 10_000);
    assert_eq!(c.proxy.app_max_connections, 1024);
    assert_eq!(c.proxy.app_queue_timeout, std::time::Duration::from_secs(5));
    assert_eq!(c.proxy.header_timeout, std::time::Duration::from_secs(30));
    assert_eq!(c.cluster.secret, None);
    let c = ok(
        "[proxy]\napp = \"http://127.0.0.1:8081\"\nmax_connections = 5\nheader_timeout = \"2s\"\n\
         app_max_connections = 8\napp_queue_timeout = \"250ms\"\n\
         [cluster]\nsecret = \"0123456789abcdef\"\n",
    );
    assert_eq!(c.proxy.max_connections, 5);
    assert_eq!(c.proxy.app_max_connections, 8);
    assert_eq!(
        c.proxy.app_queue_timeout,
        std::time::Duration::from_millis(250)
    );
    assert_eq!(c.proxy.header_timeout, std::time::Duration::from_secs(2));
    assert_eq!(c.cluster.secret.as_deref(), Some("0123456789abcdef"));
    let p = problems(
        "[proxy]\napp = \"http://127.0.0.1:8081\"\nmax_connections = 0\nheader_timeout = \"0s\"\n\
         app_max_connections = 0\napp_queue_timeout = \"0s\"\n\
         [cluster]\nsecret = \"short\"\n",
    );
    for key in ["proxy.app_max_connections: ", "proxy.app_queue_timeout: "] {
        assert!(p.iter().any(|l| l.starts_with(key)), "{key} {p:?}");
    }
    assert!(
        p.iter().any(|l| l.starts_with("proxy.max_connections: ")),
        "{p:?}"
    );
    assert!(
        p.iter().any(|l| l.starts_with("proxy.header_timeout: ")),
        "{p:?}"
    );
    assert!(
        p.iter()
            .any(|l| l.starts_with("cluster.secret: must be at least 16")),
        "{p:?}"
    );
}

#[test]
fn underscores_in_header_names_are_dropped_unless_allowed() {
    assert!(!ok(MINIMAL).proxy.allow_underscores_in_headers);
    let allowed = ok(&format!("{MINIMAL}allow_underscores_in_headers = true\n"));
    assert!(allowed.proxy.allow_underscores_in_headers);
    assert_eq!(
        problems_with("allow_underscores_in_headers = \"on\"\n"),
        vec!["proxy.allow_underscores_in_headers: invalid type: string \"on\", expected a boolean"]
    );
}

#[test]
fn postgres_source_keys() {
    let c = ok(&format!(
        "{MINIMAL}[cluster]\nsource = \"postgres\"\nurl = \"postgres://rwproxy@127.0.0.1:5432/postgres\"\n\
         password_file = \"/run/secrets/pg\"\npoll = \"50ms\"\n"
    ));
    match &c.cluster.source {
        SourceConfig::Postgres {
            url,
            password_file,
            primary,
            poll,
            timeout,
        } => {
            assert_eq!(url, "postgres://rwproxy@127.0.0.1:5432/postgres");
            assert_eq!(
                password_file.as_deref(),
                Some(std::path::Path::new("/run/secrets/pg"))
            );
            assert_eq!(primary, &None);
            assert_eq!(*poll, Duration::from_millis(50));
            assert_eq!(*timeout, Duration::from_secs(1));
        }
        other => panic!("expected postgres, got {other:?}"),
    }
    assert_eq!(
        c.cluster.databases,
        vec!["wal"],
        "one WAL position, named wal"
    );
    assert_eq!(c.cluster.source.name(), "postgres");
}

#[test]
fn postgres_source_problems_name_the_key() {
    assert_eq!(
        problems_with("[cluster]\nsource = \"postgres\"\n"),
        vec![
            "cluster.url: required key missing (the local server's URL, e.g. \
             \"postgres://rwproxy@127.0.0.1:5432/postgres\", required when cluster.source = \
             \"postgres\")"
        ]
    );
    let bad = problems_with(
        "[cluster]\nsource = \"postgres\"\nurl = \"http://127.0.0.1:5432\"\n\
         databases = [\"a\", \"b\"]\nprimary = \"two words\"\n",
    );
    assert_eq!(bad.len(), 3, "{bad:?}");
    assert!(bad[0].starts_with("cluster.databases: the postgres source has one WAL position"));
    assert!(bad[1].starts_with("cluster.url: invalid URL \"http://127.0.0.1:5432\""));
    assert!(bad[2].starts_with("cluster.primary: invalid name"));
    let no_user =
        problems_with("[cluster]\nsource = \"postgres\"\nurl = \"postgres://db.internal/app\"\n");
    assert_eq!(
        no_user,
        vec!["cluster.url: the URL must name a user (postgres://USER@HOST/DBNAME)"]
    );
    let secret = problems_with(
        "[cluster]\nsource = \"postgres\"\nurl = \"postgres://u:hunter2@h/app?sslmode=verify-full\"\n",
    );
    assert!(secret[0].contains("needs sslrootcert"), "{secret:?}");
    assert!(!secret[0].contains("hunter2"), "{secret:?}");
    let secret =
        problems_with("[cluster]\nsource = \"postgres\"\nurl = \"postgres://u:hunter2@h:x/app\"\n");
    assert!(
        !secret[0].contains("hunter2"),
        "passwords never reach a message: {secret:?}"
    );
}

#[test]
fn patroni_source_keys() {
    let c = ok(&format!(
        "{MINIMAL}[cluster]\nsource = \"patroni\"\napi = \"http://127.0.0.1:8008\"\n\
         url = \"postgres://rwproxy@127.0.0.1:5432/postgres\"\nmember = \"pg-1\"\n\
         primary_from = \"name\"\npoll = \"50ms\"\n[cluster.members]\npg-2 = \"10.0.0.2\"\n"
    ));
    match &c.cluster.source {
        SourceConfig::Patroni {
            api,
            member,
            naming,
            url,
            poll,
            timeout,
            ..
        } => {
            assert_eq!(api.to_string(), "http://127.0.0.1:8008/");
            assert_eq!(member.as_deref(), Some("pg-1"));
            assert_eq!(naming.field, rwproxy_cluster::MemberField::Name);
            assert_eq!(
                naming.table.get("pg-2").map(String::as_str),
                Some("10.0.0.2")
            );
            assert_eq!(url, "postgres://rwproxy@127.0.0.1:5432/postgres");
            assert_eq!(*poll, Duration::from_millis(50));
            assert_eq!(*timeout, Duration::from_secs(1));
        }
        other => panic!("expected patroni, got {other:?}"),
    }
    assert_eq!(c.cluster.databases, vec!["wal"]);
    assert_eq!(c.cluster.source.name(), "patroni");
    // Defaults: the member is the node's name (None here), the leader is named by its host.
    let c = ok(&format!(
        "{MINIMAL}[cluster]\nsource = \"patroni\"\napi = \"http://127.0.0.1:8008\"\n\
         url = \"postgres://rwproxy@127.0.0.1:5432/postgres\"\n"
    ));
    match &c.cluster.source {
        SourceConfig::Patroni { member, naming, .. } => {
            assert_eq!(member, &None);
            assert_eq!(naming.field, rwproxy_cluster::MemberField::Host);
            assert!(naming.table.is_empty());
        }
        other => panic!("expected patroni, got {other:?}"),
    }
}

#[test]
fn mysql_source_keys() {
    let c = ok(&format!(
        "{MINIMAL}[cluster]\nsource = \"mysql\"\nurl = \"mysql://rwproxy@127.0.0.1:3306\"\n\
         password_file = \"/run/secrets/my\"\nflavor = \"mariadb\"\nprimary = \"db-1\"\n"
    ));
    match &c.cluster.source {
        SourceConfig::Mysql {
            url,
            password_file,
            primary,
            flavor,
            poll,
            timeout,
        } => {
            assert_eq!(url, "mysql://rwproxy@127.0.0.1:3306");
            assert_eq!(
                password_file.as_deref(),
                Some(std::path::Path::new("/run/secrets/my"))
            );
            assert_eq!(primary.as_deref(), Some("db-1"));
            assert_eq!(*flavor, Some(rwproxy_core::gtid::Flavor::MariaDb));
            assert_eq!(*poll, Duration::from_millis(100));
            assert_eq!(*timeout, Duration::from_secs(1));
        }
        other => panic!("expected mysql, got {other:?}"),
    }
    assert_eq!(c.cluster.databases, vec!["gtid"], "one GTID position");
    assert_eq!(c.cluster.source.name(), "mysql");
    for (text, expected) in [
        ("auto", None),
        ("mysql", Some(rwproxy_core::gtid::Flavor::MySql)),
    ] {
        let c = ok(&format!(
            "{MINIMAL}[cluster]\nsource = \"mysql\"\nurl = \"mysql://u@h\"\nflavor = \"{text}\"\n"
        ));
        assert!(
            matches!(&c.cluster.source, SourceConfig::Mysql { flavor, .. } if *flavor == expected),
            "{text}"
        );
    }
}

#[test]
fn patroni_source_problems_name_the_key() {
    assert_eq!(
        problems_with("[cluster]\nsource = \"patroni\"\n"),
        vec![
            "cluster.api: required key missing (this node's Patroni REST API, e.g. \
             \"http://127.0.0.1:8008\", required when cluster.source = \"patroni\")",
            "cluster.url: required key missing (this node's PostgreSQL URL, e.g. \
             \"postgres://rwproxy@127.0.0.1:5432/postgres\", required when cluster.source = \
             \"patroni\")",
        ]
    );
    let bad = problems_with(
        "[cluster]\nsource = \"patroni\"\napi = \"127.0.0.1:8008\"\n\
         url = \"http://127.0.0.1:5432\"\nprimary = \"pg-1\"\nmember = \"\"\n\
         primary_from = \"ip\"\npoll = \"0s\"\n[cluster.members]\npg-2 = \"two words\"\n",
    );
    assert_eq!(bad.len(), 7, "{bad:?}");
    assert!(bad[0].starts_with("cluster.api: invalid URL"), "{bad:?}");
    assert!(bad[1].starts_with("cluster.primary: not used with cluster.source = \"patroni\""));
    assert_eq!(bad[2], "cluster.member: must not be empty");
    assert_eq!(
        bad[3],
        "cluster.primary_from: invalid value \"ip\" (expected \"host\" or \"name\")"
    );
    assert!(bad[4].starts_with("cluster.members.pg-2: invalid name"));
    assert!(bad[5].starts_with("cluster.url: invalid URL"));
    assert_eq!(bad[6], "cluster.poll: must be greater than zero");
}

#[test]
fn a_backslash_escape_in_a_double_quoted_glob_is_explained() {
    let found = problems(
        "[proxy]\napp = \"http://127.0.0.1:8081\"\n[routing]\npassthrough = [\"/file\\?.txt\"]\n",
    );
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].starts_with("line 4, column "), "{found:?}");
    assert!(
        found[0].contains("single quotes ('/file\\?.txt')"),
        "{found:?}"
    );
    assert!(found[0].contains("(\"/file\\\\?.txt\")"), "{found:?}");
    // Both spellings it suggests parse, and mean a literal `?`.
    let single =
        ok("[proxy]\napp = \"http://127.0.0.1:8081\"\n[routing]\npassthrough = ['/file\\?.txt']\n");
    let double = ok(
        "[proxy]\napp = \"http://127.0.0.1:8081\"\n[routing]\npassthrough = [\"/file\\\\?.txt\"]\n",
    );
    assert_eq!(single.routing.passthrough, ["/file\\?.txt"]);
    assert_eq!(double.routing.passthrough, single.routing.passthrough);
    // Other syntax errors get no such hint.
    let other = problems("[proxy\n");
    assert!(!other[0].contains("backslash"), "{other:?}");
}

#[test]
fn slow_client_bounds_default_to_nginx_and_apache_values() {
    let c = ok("[proxy]\napp = \"http://127.0.0.1:8081\"\n");
    assert_eq!(c.proxy.body_timeout, Duration::from_secs(60));
    assert_eq!(c.proxy.body_min_rate, 500);
    assert_eq!(c.proxy.write_timeout, Duration::from_secs(60));
    assert!(!c.proxy.title_case_headers);
    let c = ok("[proxy]\napp = \"http://127.0.0.1:8081\"\nbody_timeout = \"0s\"\nbody_min_rate = 0\nwrite_timeout = \"5s\"\n");
    assert_eq!(c.proxy.body_timeout, Duration::ZERO);
    assert_eq!(c.proxy.body_min_rate, 0);
    assert_eq!(c.proxy.write_timeout, Duration::from_secs(5));
    let found = problems("[proxy]\napp = \"http://127.0.0.1:8081\"\nbody_timeout = \"soon\"\n");
    assert!(
        found.iter().any(|p| p.starts_with("proxy.body_timeout: ")),
        "{found:?}"
    );
}

#[test]
fn mysql_source_problems_name_the_key() {
    assert_eq!(
        problems_with("[cluster]\nsource = \"mysql\"\n"),
        vec![
            "cluster.url: required key missing (the local server's URL, e.g. \
             \"mysql://rwproxy@127.0.0.1:3306\", required when cluster.source = \"mysql\")"
        ]
    );
    let bad = problems_with(
        "[cluster]\nsource = \"mysql\"\nurl = \"postgres://u@h\"\n\
         databases = [\"a\", \"b\"]\nprimary = \"two words\"\nflavor = \"oracle\"\n",
    );
    assert_eq!(bad.len(), 4, "{bad:?}");
    assert!(bad[0].starts_with("cluster.databases: the mysql source has one GTID position"));
    assert!(bad[1].starts_with("cluster.url: invalid URL \"postgres://u@h\""));
    assert!(bad[2].starts_with("cluster.flavor: invalid value \"oracle\""));
    assert!(bad[3].starts_with("cluster.primary: invalid name"));
    assert_eq!(
        problems_with("[cluster]\nsource = \"mysql\"\nurl = \"mysql://db.internal\"\n"),
        vec!["cluster.url: the URL must name a user (mysql://USER@HOST:PORT)"]
    );
    let tls = problems_with(
        "[cluster]\nsource = \"mysql\"\nurl = \"mysql://u:hunter2@h?require_ssl=true\"\n",
    );
    assert!(tls[0].contains("TLS"), "{tls:?}");
    let secret = problems_with("[cluster]\nsource = \"mysql\"\nurl = \"mysql://u:hunter2@h:x\"\n");
    assert!(
        !secret[0].contains("hunter2"),
        "passwords never reach a message: {secret:?}"
    );
}
