#!/usr/bin/env bash
# User-space instructions per proxied request, counted by callgrind (exact and repeatable to
# ~±0.5% whatever else the machine does; see docs/benchmarks.md). Three cases, each against the
# load benchmark's app: GET and a 16-byte POST on the primary, and the same POST sent to a
# replica that forwards it to the primary (the replica is the process measured).
#
#   cargo build --profile profiling -p rwproxy -p rwproxy-benches
#   bash benches/callgrind.sh target/profiling/rwproxy target/profiling/load [SECONDS]
#
# Needs valgrind, wrk and curl. Counters are zeroed after a 2 s warm-up, then wrk -t1 -c10
# runs SECONDS (5) and the total is divided by the requests wrk completed. Loopback only;
# every process started here is stopped on exit.
set -euo pipefail

bin=$(realpath "$1")
load=$(realpath "$2")
secs=${3:-5}
dir=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$dir"
}
trap cleanup EXIT

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Waits (up to 60 s: valgrind starts slowly) until something answers HTTP on port $1.
wait_http() {
    for _ in $(seq 600); do
        if curl -s -o /dev/null "http://127.0.0.1:$1/"; then return 0; fi
        sleep 0.1
    done
    echo "nothing answers on port $1" >&2
    exit 1
}

config() { # node listen app primary admin
    cat <<EOF
node = "$1"
[proxy]
listen = "127.0.0.1:$2"
app = "http://127.0.0.1:$3"
workers = 1
[admin]
listen = "127.0.0.1:$5"
[cluster]
source = "static"
primary = "primary"
[writes]
primary_url = "http://127.0.0.1:$4"
[log]
access = false
level = "warn"
EOF
}

# The app exits when its stdin closes: this script holds the pipe open until it exits.
mkfifo "$dir/app.stdin"
"$load" --app <"$dir/app.stdin" >"$dir/app.port" &
pids+=($!)
exec 3>"$dir/app.stdin"
for _ in $(seq 100); do [[ -s $dir/app.port ]] && break; sleep 0.1; done
app=$(head -1 "$dir/app.port")

cat >"$dir/post.lua" <<'EOF'
wrk.method = "POST"
wrk.body = '{"note":"hello"}'
wrk.headers["Content-Type"] = "application/json"
EOF

primary=$(free_port)
config primary "$primary" "$app" "$primary" "$(free_port)" >"$dir/primary.toml"
replica=$(free_port)
config replica "$replica" "$app" "$primary" "$(free_port)" >"$dir/replica.toml"

# Runs case $1: the node of config $2 under callgrind, load on its port $3, wrk args after.
measure() {
    local name=$1 cfg=$2 port=$3
    shift 3
    valgrind --tool=callgrind --callgrind-out-file="$dir/cg.$name" "$bin" run -c "$cfg" \
        2>"$dir/valgrind.$name.log" &
    local pid=$!
    wait_http "$port"
    wrk -t1 -c10 -d2s "$@" "http://127.0.0.1:$port/" >/dev/null
    callgrind_control -z "$pid" >/dev/null 2>&1
    local requests
    requests=$(wrk -t1 -c10 -d"${secs}s" "$@" "http://127.0.0.1:$port/" |
        awk '/requests in/ { print $1 }')
    callgrind_control -d "$pid" >/dev/null 2>&1
    kill "$pid"
    wait "$pid" 2>/dev/null || true
    local total
    total=$(grep -h '^summary:\|^totals:' "$dir"/cg."$name".* | tail -1 | awk '{ print $2 }')
    printf '%-14s %10d requests %12d instructions per request\n' \
        "$name" "$requests" $((total / requests))
    if [[ -n ${KEEP:-} ]]; then cp "$dir"/cg."$name".* "$KEEP"/; fi
    rm -f "$dir"/cg."$name"*
}

# The primary, natively, for the forwarded case; then each case under callgrind.
measure get "$dir/primary.toml" "$primary"
measure post-local "$dir/primary.toml" "$primary" -s "$dir/post.lua"
"$bin" run -c "$dir/primary.toml" 2>"$dir/primary.log" &
pids+=($!)
wait_http "$primary"
measure post-fwd "$dir/replica.toml" "$replica" -s "$dir/post.lua"
