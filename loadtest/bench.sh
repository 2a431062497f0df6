#!/usr/bin/env bash
# End-to-end HTTP benchmark of lockstep, side by side on one machine with the backend reached
# directly, Debian's nginx (a reverse proxy, and `mirror` to two backups) and HAProxy. The load
# generator is lockstep-load (closed loop); wrk measures a few rows again as a cross-check.
# Everything listens on 127.0.0.1, on free ports picked at start; every process the script starts
# is stopped when it exits, also on failure.
#
# Usage: loadtest/bench.sh [--quick] [--write-doc] [OPTIONS]   (see --help)
#
# See docs/benchmarks.md for what each row means and for the figures of a recorded run.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

DURATION=6        # seconds per measured run
RUNS=3            # measured runs per row; the tables show the median
CONNECTIONS=32    # connections of the load generator (closed loop)
WARMUP=2          # seconds of load per row before its first measured run
ACCOUNTS=16       # writes are spread over accounts 1..ACCOUNTS
MAX_OTHER=0.25    # CPU (in cores) other processes may use during a run: above, it is disturbed
QUIET_WAIT=60     # seconds to wait at most for other processes to calm down before a run
REDO=2            # disturbed runs are measured again at most this many times, at the end
BUDGET=1200       # seconds for the measured runs, waits and repetitions included
WRITE_DOC=0
ONLY=
PROFILE_DIR=
QUICK=0
DOC=docs/benchmarks.md

usage() {
    cat <<'USAGE'
Usage: loadtest/bench.sh [--quick] [--write-doc] [OPTIONS]

Builds lockstep, lockstep-demo, lockstep-load and the bare proxy example (release), starts
demo backends, a static backend, nginx (one worker: reverse proxy and mirror), HAProxy (one
thread), a bare pingora proxy (gateway/examples/bare_proxy.rs, one thread) and nine lockstep
gateways (threads = 1) on free 127.0.0.1 ports, and measures every row with
`lockstep-load -c CONNECTIONS` (closed loop, one thread), RUNS times, rows interleaved. A few GET
rows are measured with `wrk -t1 -cCONNECTIONS` as well, as a cross-check of the generator.
Before each run it waits (within a time budget) until other processes leave the CPU alone; runs
during which they did not are measured again at the end, and the least disturbed attempt is kept.
Prints Markdown tables of medians; with --write-doc, also replaces the part of docs/benchmarks.md
between <!-- bench:begin --> and <!-- bench:end --> with them.

Exits non-zero when a process does not start, a run fails or has errors (non-2xx answers,
socket errors), or a gateway's backups no longer agree with its primary at the end.

Needs: cargo, curl, ss, nginx (Debian: nginx-light or nginx), haproxy and wrk; perf for
--profile. Run as root on a system with apt-get, it installs the missing Debian packages.

Options:
  --quick              one run of 3 s per row, 1 s warm-up, 200 s budget (under 5 minutes)
  --duration SECONDS   length of one measured run         (default 6)
  --runs N             measured runs per row              (default 3)
  --connections N      connections of the load generator  (default 32)
  --max-other CORES    CPU other processes may use during a run before it counts as disturbed
                       (default 0.25; 0 turns the check, the waiting and the repeating off)
  --budget SECONDS     time for all measured runs, waiting for quiet moments and repeating
                       disturbed runs included (default 1200: a full run takes at most about
                       23 minutes with the build up to date); when the remaining runs need
                       the rest, the script stops waiting and repeating
  --only REGEX         measure only the rows whose id matches (ids: see the progress lines)
  --profile DIR        record the proxy (lockstep, nginx's worker, HAProxy) of every row with
                       `perf record -g` during its first run; writes DIR/ROW.txt
                       (`perf report`) and DIR/ROW.summary.txt (loadtest/bench/perf-summary.sh)
  --write-doc          write the results into docs/benchmarks.md
USAGE
}

while [[ $# -gt 0 ]]; do
    case "$1" in
    --quick) QUICK=1; RUNS=1; DURATION=3; WARMUP=1; QUIET_WAIT=20; REDO=1; BUDGET=200; shift ;;
    --duration) DURATION=$2; shift 2 ;;
    --runs) RUNS=$2; shift 2 ;;
    --connections) CONNECTIONS=$2; shift 2 ;;
    --max-other) MAX_OTHER=$2; shift 2 ;;
    --budget) BUDGET=$2; shift 2 ;;
    --only) ONLY=$2; shift 2 ;;
    --profile) PROFILE_DIR=$2; shift 2 ;;
    --write-doc) WRITE_DOC=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) echo "bench: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
[[ $DURATION =~ ^[1-9][0-9]*$ && $RUNS =~ ^[1-9][0-9]*$ && $CONNECTIONS =~ ^[1-9][0-9]*$ && $BUDGET =~ ^[0-9]+$ ]] ||
    { echo "bench: --duration, --runs, --connections and --budget take positive integers" >&2; exit 2; }
[[ $MAX_OTHER =~ ^[0-9]+(\.[0-9]+)?$ ]] || { echo "bench: --max-other takes a number of cores" >&2; exit 2; }
if [[ $WRITE_DOC -eq 1 && ( -n $ONLY || -n $PROFILE_DIR ) ]]; then
    echo "bench: --write-doc needs every row and no profiler; drop --only / --profile" >&2
    exit 2
fi

say() { printf 'bench: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

# ---------------------------------------------------------------------------------------------
# Tools
# ---------------------------------------------------------------------------------------------
need_debian() { # need_debian COMMAND PACKAGE WHY
    command -v "$1" >/dev/null 2>&1 && return
    if [[ "$(id -u)" -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
        say "installing $2 ($3)"
        DEBIAN_FRONTEND=noninteractive apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null
        command -v "$1" >/dev/null 2>&1 || die "$2 is installed but $1 is still not on PATH"
        return
    fi
    say "missing: $1 ($3)"
    if command -v apt-get >/dev/null 2>&1; then
        say "install it with:  sudo apt-get install -y $2"
    else
        say "install $2 with your system's package manager, then run this script again"
    fi
    exit 1
}
# nginx and haproxy live in /usr/sbin, which is not on every user's PATH.
PATH=$PATH:/usr/sbin:/sbin
command -v cargo >/dev/null 2>&1 || die "cargo is not installed (or not on PATH); install Rust with rustup"
need_debian curl curl "readiness checks"
need_debian ss iproute2 "finding free ports"
need_debian wrk wrk "the cross-check load generator"
need_debian nginx nginx-light "the reference reverse proxy, its mirror, and the static backend"
need_debian haproxy haproxy "the second reference reverse proxy"
[[ -z $PROFILE_DIR ]] || need_debian perf linux-perf "--profile"

say "building lockstep, lockstep-demo and lockstep-load (release)"
cargo build --release -p lockstep -p lockstep-demo -p lockstep-loadtest >&2
cargo build --release -p lockstep --example bare_proxy >&2
BIN=${CARGO_TARGET_DIR:-$root/target}/release
for b in lockstep lockstep-demo lockstep-load examples/bare_proxy; do
    [[ -x $BIN/$b ]] || die "release binary $b not found in $BIN"
done
LOAD=$BIN/lockstep-load

# ---------------------------------------------------------------------------------------------
# Temporary directory and cleanup
# ---------------------------------------------------------------------------------------------
TMP=$(mktemp -d "${TMPDIR:-/tmp}/lockstep-bench.XXXXXX")
chmod 755 "$TMP" # nginx workers run as an unprivileged user when started by root
TMP_FS=$(stat -f -c %T "$TMP")
if [[ $TMP_FS == tmpfs ]]; then
    say "warning: $TMP is on tmpfs, so the journal's fsyncs cost nothing; set TMPDIR to a disk"
fi
if [[ -n $PROFILE_DIR ]]; then
    mkdir -p "$PROFILE_DIR"
    PROFILE_DIR=$(cd "$PROFILE_DIR" && pwd)
fi
PIDS=()
cleanup() {
    local pid i
    trap - EXIT INT TERM
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for ((i = 0; i < 50; i++)); do # at most 5 s
        local alive=0
        for pid in "${PIDS[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
        [[ $alive -eq 0 ]] && break
        sleep 0.1
    done
    for pid in "${PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------------------------------------
# Ports and processes
# ---------------------------------------------------------------------------------------------
USED_PORTS=" "
free_port() { # sets PORT to a port nobody listens on, not handed out before by this script
    local p i
    for ((i = 0; i < 200; i++)); do
        p=$((20000 + RANDOM % 12000))
        [[ $USED_PORTS == *" $p "* ]] && continue
        if [[ -z "$(ss -Htan "sport = :$p" 2>/dev/null)" ]]; then
            USED_PORTS+="$p "
            PORT=$p
            return
        fi
    done
    die "no free port found"
}

wait_http() { # wait_http URL [PID]: until it answers 2xx, at most 15 s; fails early if PID died
    local i
    for ((i = 0; i < 150; i++)); do
        curl -fsS -o /dev/null --max-time 1 "$1" 2>/dev/null && return
        [[ -z ${2:-} ]] || kill -0 "$2" 2>/dev/null || die "the process serving $1 exited (see its log in the output above)"
        sleep 0.1
    done
    die "$1 did not answer within 15 s"
}

# start_demo NAME: starts a memory demo backend, sets DEMO_ADDR to its address.
start_demo() {
    local name=$1 out=$TMP/demo-$1.out i
    "$BIN/lockstep-demo" --listen 127.0.0.1:0 --implementation memory \
        >"$out" 2>"$TMP/demo-$name.log" &
    PIDS+=($!)
    DEMO_ADDR=
    for ((i = 0; i < 100; i++)); do # at most 10 s
        if [[ -s $out ]]; then
            DEMO_ADDR=$(sed -n 's/^listening on //p' "$out" | head -1)
            [[ -n $DEMO_ADDR ]] && break
        fi
        sleep 0.1
    done
    [[ -n $DEMO_ADDR ]] || die "demo backend $name did not print its address within 10 s: $(cat "$TMP/demo-$name.log")"
}

# start_nginx NAME CONF_BODY: writes TMP/NAME/nginx.conf (one worker) and starts it; sets NGINX_PID.
start_nginx() {
    local name=$1 body=$2 dir=$TMP/$1
    mkdir -p "$dir"
    chmod 755 "$dir"
    cat >"$dir/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $dir/body;
    proxy_temp_path $dir/proxy;
    fastcgi_temp_path $dir/fastcgi;
    uwsgi_temp_path $dir/uwsgi;
    scgi_temp_path $dir/scgi;
$body
}
EOF
    nginx -t -q -e "$dir/error.log" -p "$dir" -c "$dir/nginx.conf" 2>&1 >/dev/null ||
        die "nginx $name: invalid configuration: $(cat "$dir/error.log")"
    nginx -e "$dir/error.log" -p "$dir" -c "$dir/nginx.conf" &
    NGINX_PID=$!
    PIDS+=("$NGINX_PID")
}

# start_lockstep NAME FSYNC DISPATCH LANES PRIMARY_ADDR [BACKUP_ADDR...]; sets LOCKSTEP_PID,
# LOCKSTEP_PORT and LOCKSTEP_ADMIN. LANES is 1 (the single global lane) or "account" (a lane per
# account: POST /accounts/{id}/** in lane "{id}").
start_lockstep() {
    local name=$1 fsync=$2 dispatch=$3 lanes=$4 primary=$5 dir=$TMP/$1 i=0 addr
    shift 5
    mkdir -p "$dir/journal"
    free_port; LOCKSTEP_PORT=$PORT
    free_port; LOCKSTEP_ADMIN=$PORT
    {
        cat <<EOF
[gateway]
listen = "127.0.0.1:$LOCKSTEP_PORT"
threads = 1
grace_period = "0s"

[admin]
listen = "127.0.0.1:$LOCKSTEP_ADMIN"

[journal]
dir = "$dir/journal"
fsync = "$fsync"

[replication]
ack = "all"
dispatch = "$dispatch"

[health]
interval = "1s"
timeout = "500ms"

[log]
level = "warn"

[[verify.probes]]
request = "GET /accounts"
EOF
        if [[ $lanes == account ]]; then
            printf '\n[[routes]]\nmatch = "POST /accounts/{id}/**"\nlane = "{id}"\n'
        fi
        printf '\n[[backends]]\nname = "p"\nurl = "http://%s"\nrole = "primary"\n' "$primary"
        for addr in "$@"; do
            i=$((i + 1))
            printf '\n[[backends]]\nname = "b%d"\nurl = "http://%s"\nrole = "backup"\n' "$i" "$addr"
        done
    } >"$dir/lockstep.toml"
    "$BIN/lockstep" check-config "$dir/lockstep.toml" >/dev/null 2>"$dir/check.log" ||
        die "gateway $name: invalid configuration: $(cat "$dir/check.log")"
    "$BIN/lockstep" run --config "$dir/lockstep.toml" 2>"$dir/lockstep.log" &
    LOCKSTEP_PID=$!
    PIDS+=("$LOCKSTEP_PID")
}

# ---------------------------------------------------------------------------------------------
# The setup
# ---------------------------------------------------------------------------------------------
# Demo backends. d serves the direct, nginx, HAProxy and lockstep-0-backups rows and is the
# primary of the nginx mirror, whose two mirror targets are m1 and m2. Each gateway with backups
# has backends of its own, since a write sent around a gateway would make its backups disagree
# with its primary.
say "starting the backends, nginx, HAProxy and the gateways"
start_demo d; DEMO_D=$DEMO_ADDR
start_demo m1; DEMO_M1=$DEMO_ADDR
start_demo m2; DEMO_M2=$DEMO_ADDR

free_port; STATIC_PORT=$PORT
start_nginx static "    server {
        listen 127.0.0.1:$STATIC_PORT;
        location / { default_type application/json; return 200 '{\"ok\":true}'; }
    }"
STATIC_PID=$NGINX_PID

free_port; NGX_DEMO_PORT=$PORT
free_port; NGX_STATIC_PORT=$PORT
free_port; NGX_MIRROR_PORT=$PORT
proxy_opts='proxy_http_version 1.1; proxy_set_header Connection "";'
start_nginx proxy "    upstream demo { server $DEMO_D; keepalive 64; }
    upstream static { server 127.0.0.1:$STATIC_PORT; keepalive 64; }
    upstream mirror1 { server $DEMO_M1; keepalive 64; }
    upstream mirror2 { server $DEMO_M2; keepalive 64; }
    server { listen 127.0.0.1:$NGX_DEMO_PORT; location / { proxy_pass http://demo; $proxy_opts } }
    server { listen 127.0.0.1:$NGX_STATIC_PORT; location / { proxy_pass http://static; $proxy_opts } }
    server {
        listen 127.0.0.1:$NGX_MIRROR_PORT;
        location / { mirror /_m1; mirror /_m2; proxy_pass http://demo; $proxy_opts }
        location = /_m1 { internal; proxy_pass http://mirror1\$request_uri; $proxy_opts }
        location = /_m2 { internal; proxy_pass http://mirror2\$request_uri; $proxy_opts }
    }"
NGX_PID=$NGINX_PID

free_port; HAP_DEMO_PORT=$PORT
free_port; HAP_STATIC_PORT=$PORT
mkdir -p "$TMP/haproxy"
cat >"$TMP/haproxy/haproxy.cfg" <<EOF
global
    nbthread 1
    maxconn 4096

defaults
    mode http
    option http-keep-alive
    http-reuse always
    timeout connect 1s
    timeout client 30s
    timeout server 30s
    timeout http-keep-alive 30s

frontend demo
    bind 127.0.0.1:$HAP_DEMO_PORT
    default_backend demo

frontend static
    bind 127.0.0.1:$HAP_STATIC_PORT
    default_backend static

backend demo
    server d $DEMO_D

backend static
    server s 127.0.0.1:$STATIC_PORT
EOF
haproxy -c -q -f "$TMP/haproxy/haproxy.cfg" >"$TMP/haproxy/check.log" 2>&1 ||
    die "haproxy: invalid configuration: $(cat "$TMP/haproxy/check.log")"
haproxy -db -f "$TMP/haproxy/haproxy.cfg" >"$TMP/haproxy/haproxy.log" 2>&1 &
HAP_PID=$!
PIDS+=("$HAP_PID")

# The framework's floor: pingora forwarding every request to one upstream and nothing else
# (gateway/examples/bare_proxy.rs), one worker thread like the gateways.
free_port; BARE_DEMO_PORT=$PORT
"$BIN/examples/bare_proxy" "127.0.0.1:$BARE_DEMO_PORT" "$DEMO_D" 1 >"$TMP/bare-demo.log" 2>&1 &
BARE_DEMO_PID=$!
PIDS+=("$BARE_DEMO_PID")
free_port; BARE_STATIC_PORT=$PORT
"$BIN/examples/bare_proxy" "127.0.0.1:$BARE_STATIC_PORT" "127.0.0.1:$STATIC_PORT" 1 >"$TMP/bare-static.log" 2>&1 &
BARE_STATIC_PID=$!
PIDS+=("$BARE_STATIC_PID")

# Gateways: NAME FSYNC DISPATCH LANES and their backends (the first one is the primary).
GATEWAYS=()      # "name|port|admin|pid|backups"
start_gateway() { # start_gateway NAME FSYNC DISPATCH LANES BACKUPS [PRIMARY_ADDR]
    local name=$1 fsync=$2 dispatch=$3 lanes=$4 backups=$5 primary=${6:-} addrs=() i
    if [[ -z $primary ]]; then
        start_demo "$name-p"; primary=$DEMO_ADDR
    fi
    for ((i = 1; i <= backups; i++)); do
        start_demo "$name-b$i"; addrs+=("$DEMO_ADDR")
    done
    start_lockstep "$name" "$fsync" "$dispatch" "$lanes" "$primary" "${addrs[@]}"
    GATEWAYS+=("$name|$LOCKSTEP_PORT|$LOCKSTEP_ADMIN|$LOCKSTEP_PID|$backups")
    printf -v "GW_PORT_${name//-/_}" '%s' "$LOCKSTEP_PORT"
    printf -v "GW_PID_${name//-/_}" '%s' "$LOCKSTEP_PID"
}
start_gateway ls0 batch sequential 1 0 "$DEMO_D"
start_gateway lsstatic batch sequential 1 0 "127.0.0.1:$STATIC_PORT"
start_gateway ls1 batch sequential 1 1
start_gateway ls2 batch sequential 1 2
start_gateway ls2always always sequential 1 2
start_gateway ls2never never sequential 1 2
start_gateway ls2par batch parallel 1 2
start_gateway ls2lanes batch sequential account 2
start_gateway ls2lanespar batch parallel account 2

wait_http "http://127.0.0.1:$STATIC_PORT/" "$STATIC_PID"
wait_http "http://127.0.0.1:$NGX_DEMO_PORT/health" "$NGX_PID"
wait_http "http://127.0.0.1:$NGX_STATIC_PORT/" "$NGX_PID"
wait_http "http://127.0.0.1:$NGX_MIRROR_PORT/health" "$NGX_PID"
wait_http "http://127.0.0.1:$HAP_DEMO_PORT/health" "$HAP_PID"
wait_http "http://127.0.0.1:$HAP_STATIC_PORT/" "$HAP_PID"
wait_http "http://127.0.0.1:$BARE_DEMO_PORT/health" "$BARE_DEMO_PID"
wait_http "http://127.0.0.1:$BARE_STATIC_PORT/" "$BARE_STATIC_PID"
for gw in "${GATEWAYS[@]}"; do
    IFS='|' read -r name port _ pid _ <<<"$gw"
    wait_http "http://127.0.0.1:$port/health" "$pid"
done

# Accounts 1..ACCOUNTS on every set of backends: through the gateways, so that their backups
# have them too (ls0 creates them on d), and directly on the mirror targets.
create_accounts() { # create_accounts BASE_URL
    local i
    for ((i = 1; i <= ACCOUNTS; i++)); do
        curl -fsS -o /dev/null --max-time 5 -X POST "$1/accounts" \
            -H 'Content-Type: application/json' -d "{\"owner\":\"bench-$i\"}" ||
            die "cannot create account $i through $1"
    done
    curl -fsS -o /dev/null --max-time 5 "$1/accounts/$ACCOUNTS" ||
        die "account $ACCOUNTS is not there through $1 (was the backend used before?)"
}
for gw in "${GATEWAYS[@]}"; do
    IFS='|' read -r name port _ _ _ <<<"$gw"
    [[ $name == lsstatic ]] || create_accounts "http://127.0.0.1:$port"
done
create_accounts "http://$DEMO_M1"
create_accounts "http://$DEMO_M2"

# ---------------------------------------------------------------------------------------------
# Rows: id|group|label|tool|method|url|pids of the proxy (empty: none)|reference row
#   group: get (demo reads), static (static backend reads), post (writes), xcheck (wrk)
#   reference: reads are compared with the nginx proxy, writes with the nginx mirror, and the
#   wrk rows with the lockstep-load row of the same target, which runs just before them.
# ---------------------------------------------------------------------------------------------
GET_PATH=/accounts/1
POST_PATH="/accounts/{random:1..$ACCOUNTS}/deposit"
POST_BODY='{"amount":1}'
L=127.0.0.1
ROWS=(
    "get-direct|get|demo, direct|load|GET|http://$DEMO_D$GET_PATH||"
    "get-nginx|get|nginx proxy|load|GET|http://$L:$NGX_DEMO_PORT$GET_PATH|$NGX_PID|"
    "wrk-get-nginx|xcheck|demo, nginx proxy|wrk|GET|http://$L:$NGX_DEMO_PORT$GET_PATH|$NGX_PID|get-nginx"
    "get-haproxy|get|HAProxy|load|GET|http://$L:$HAP_DEMO_PORT$GET_PATH|$HAP_PID|get-nginx"
    "get-bare|get|pingora, bare proxy|load|GET|http://$L:$BARE_DEMO_PORT$GET_PATH|$BARE_DEMO_PID|get-nginx"
    "get-ls0|get|lockstep, 0 backups|load|GET|http://$L:$GW_PORT_ls0$GET_PATH|$GW_PID_ls0|get-nginx"
    "wrk-get-ls0|xcheck|demo, lockstep 0 backups|wrk|GET|http://$L:$GW_PORT_ls0$GET_PATH|$GW_PID_ls0|get-ls0"
    "get-ls2|get|lockstep, 2 backups|load|GET|http://$L:$GW_PORT_ls2$GET_PATH|$GW_PID_ls2|get-nginx"
    "static-direct|static|static nginx, direct|load|GET|http://$L:$STATIC_PORT/||"
    "wrk-static-direct|xcheck|static nginx, direct|wrk|GET|http://$L:$STATIC_PORT/||static-direct"
    "static-nginx|static|nginx proxy|load|GET|http://$L:$NGX_STATIC_PORT/|$NGX_PID|"
    "static-haproxy|static|HAProxy|load|GET|http://$L:$HAP_STATIC_PORT/|$HAP_PID|static-nginx"
    "static-bare|static|pingora, bare proxy|load|GET|http://$L:$BARE_STATIC_PORT/|$BARE_STATIC_PID|static-nginx"
    "static-ls0|static|lockstep, 0 backups|load|GET|http://$L:$GW_PORT_lsstatic/|$GW_PID_lsstatic|static-nginx"
    "post-direct|post|demo, direct|load|POST|http://$DEMO_D||post-mirror"
    "post-nginx|post|nginx proxy (no copies)|load|POST|http://$L:$NGX_DEMO_PORT|$NGX_PID|post-mirror"
    "post-haproxy|post|HAProxy (no copies)|load|POST|http://$L:$HAP_DEMO_PORT|$HAP_PID|post-mirror"
    "post-mirror|post|nginx mirror to 2 backups|load|POST|http://$L:$NGX_MIRROR_PORT|$NGX_PID|"
    "post-ls0|post|lockstep, 0 backups, batch, sequential, 1 lane|load|POST|http://$L:$GW_PORT_ls0|$GW_PID_ls0|post-mirror"
    "post-ls1|post|lockstep, 1 backup, batch, sequential, 1 lane|load|POST|http://$L:$GW_PORT_ls1|$GW_PID_ls1|post-mirror"
    "post-ls2|post|lockstep, 2 backups, batch, sequential, 1 lane|load|POST|http://$L:$GW_PORT_ls2|$GW_PID_ls2|post-mirror"
    "post-ls2always|post|lockstep, 2 backups, always, sequential, 1 lane|load|POST|http://$L:$GW_PORT_ls2always|$GW_PID_ls2always|post-mirror"
    "post-ls2never|post|lockstep, 2 backups, never, sequential, 1 lane|load|POST|http://$L:$GW_PORT_ls2never|$GW_PID_ls2never|post-mirror"
    "post-ls2par|post|lockstep, 2 backups, batch, parallel, 1 lane|load|POST|http://$L:$GW_PORT_ls2par|$GW_PID_ls2par|post-mirror"
    "post-ls2lanes|post|lockstep, 2 backups, batch, sequential, 16 lanes|load|POST|http://$L:$GW_PORT_ls2lanes|$GW_PID_ls2lanes|post-mirror"
    "post-ls2lanespar|post|lockstep, 2 backups, batch, parallel, 16 lanes|load|POST|http://$L:$GW_PORT_ls2lanespar|$GW_PID_ls2lanespar|post-mirror"
)
# The label of the 16-lane rows follows ACCOUNTS.
ROWS=("${ROWS[@]//16 lanes/$ACCOUNTS lanes}")
if [[ -n $ONLY ]]; then
    selected=()
    for row in "${ROWS[@]}"; do [[ ${row%%|*} =~ $ONLY ]] && selected+=("$row"); done
    [[ ${#selected[@]} -gt 0 ]] || die "--only $ONLY matches no row"
    ROWS=("${selected[@]}")
fi

# ---------------------------------------------------------------------------------------------
# CPU accounting
# ---------------------------------------------------------------------------------------------
CLK_TCK=$(getconf CLK_TCK)
# snapshot FILE: "pid ppid ticks" (utime + stime, every thread) of every process, then
# "machine TICKS": user + nice + system + steal time of all CPUs. A process's own times include
# the moments its virtual CPU was stolen by the hypervisor, so steal is counted here too;
# interrupt time is left out, as it is in the processes' times.
snapshot() {
    { cat /proc/[0-9]*/stat 2>/dev/null || true; } |
        awk '{ pid = $1; sub(/^.*\) /, ""); print pid, $2, $12 + $13 }' >"$1"
    awk '$1 == "cpu" { print "machine", $2 + $3 + $4 + $9 }' /proc/stat >>"$1"
}
# cpu_delta BEFORE AFTER "PROXY_PIDS": prints "proxy mine kernel machine others" ticks between
# the two snapshots. proxy: the given processes and their children (nginx workers); mine: every
# process this script started and their children; kernel: kernel threads (ksoftirqd, kworkers:
# mostly the loopback traffic of the run); machine: every CPU; others: the processes seen in the
# second snapshot that are none of these (nor this script and the load generator it runs).
cpu_delta() {
    awk -v proxy=" $3 " -v mine=" ${PIDS[*]} " -v self="$$" '
        FNR == 1 { file++ }
        $1 == "machine" { m[file] = $2; next }
        { t[file, $1] = $3; parent[$1] = $2; seen[$1] = 1 }
        function under(pid, set,   i) { # pid or one of its ancestors is in set
            for (i = 0; i < 6 && pid + 0 > 1; i++) { if (index(set, " " pid " ")) return 1; pid = parent[pid] }
            return 0
        }
        END {
            for (pid in seen) {
                if (!((2, pid) in t)) continue
                d = t[2, pid] - t[1, pid]
                if (d < 0) d = 0
                p = parent[pid]
                if (index(proxy, " " pid " ") || (p != "" && index(proxy, " " p " "))) px += d
                if (under(pid, mine)) mn += d
                else if (pid == 2 || p == 2) kt += d
                else if (!under(pid, " " self " ")) ot += d
            }
            printf "%d %d %d %d %d\n", px, mn, kt, m[2] - m[1], ot
        }' "$1" "$2"
}
# Other processes' CPU, in ticks, from "proxy mine kernel machine others" and the generator's
# CPU seconds: the larger of two estimates that each miss a part. The processes' own times miss
# processes that started and ended between the snapshots (a compiler's short jobs); the machine's
# total less this script's processes misses nothing but counts too little, since the softirq time
# spent on loopback traffic is charged to the processes yet left out of the machine's total.
OTHER_TICKS='{ r = $4 - $2 - $3 - g * hz; o = ($5 > r ? $5 : r); if (o < 0) o = 0 }'
# other_cores SECONDS: CPU (in cores) used by processes this script did not start, over SECONDS.
other_cores() {
    snapshot "$TMP/q1"
    sleep "$1"
    snapshot "$TMP/q2"
    cpu_delta "$TMP/q1" "$TMP/q2" "" |
        awk -v s="$1" -v hz="$CLK_TCK" -v g=0 "$OTHER_TICKS"' { printf "%.2f", o / hz / s }'
}
# slack: seconds of the budget left once the runs still to make are counted (RUNS_LEFT of them,
# this one included, at about DURATION + 2 s each).
slack() {
    echo $((BUDGET - (SECONDS - START) - RUNS_LEFT * (DURATION + 2)))
}
# wait_quiet: waits until other processes use at most MAX_OTHER cores: QUIET_WAIT s at most, and
# during the rounds at most four times this run's share of the budget's slack, so that a long
# busy spell does not use it all up (disturbed runs are measured again at the end).
wait_quiet() {
    local waited=0 other cap=$QUIET_WAIT share
    [[ $MAX_OTHER == 0 ]] && return
    share=$(slack)
    [[ $RUNS_LEFT -gt 0 ]] && share=$((share * 4 / RUNS_LEFT))
    [[ $share -lt $cap ]] && cap=$share
    while :; do
        other=$(other_cores 0.5)
        awk -v o="$other" -v m="$MAX_OTHER" 'BEGIN { exit !(o <= m) }' && return
        if [[ $waited -ge $cap ]]; then
            say "  other processes use $other cores; measuring anyway (waited ${waited} s)"
            return
        fi
        [[ $waited -eq 0 ]] && say "  other processes use $other cores; waiting for a quiet moment"
        sleep 2
        waited=$((waited + 2))
    done
}

# ---------------------------------------------------------------------------------------------
# Load generators
# ---------------------------------------------------------------------------------------------
cat >"$TMP/post.lua" <<'EOF'
wrk.method = "POST"
wrk.body = '{"amount":1}'
wrk.headers["Content-Type"] = "application/json"
EOF

gen_cmd() { # gen_cmd TOOL METHOD URL SECONDS: the command line, one word per line
    if [[ $1 == wrk ]]; then
        printf '%s\n' wrk -t1 "-c$CONNECTIONS" "-d${4}s" --latency
        if [[ $2 == POST ]]; then printf '%s\n' -s "$TMP/post.lua"; fi
        printf '%s\n' "$3"
    else
        printf '%s\n' "$LOAD" run "$3" -c "$CONNECTIONS" -d "${4}s" --json -q
        if [[ $2 == POST ]]; then printf '%s\n' -X POST --path "$POST_PATH" --body "$POST_BODY"; fi
    fi
}
shown_cmd() { # the command as the doc shows it
    gen_cmd "$@" | sed -e "s|^$LOAD\$|lockstep-load|" -e "s|^$TMP/||" | while IFS= read -r w; do
        if [[ $w =~ [^A-Za-z0-9_./:=-] ]]; then printf "'%s' " "$w"; else printf '%s ' "$w"; fi
    done | sed 's/ $//'
}

# parse_load FILE / parse_wrk FILE: "rps p50_ms p99_ms errors"
parse_load() {
    awk '
        /^ *"[^"]+": *\{/ { match($0, /"[^"]+"/); sect = substr($0, RSTART + 1, RLENGTH - 2); next }
        /^ *\}/ { sect = ""; next }
        {
            line = $0; gsub(/[",]/, "", line); n = split(line, kv, ":")
            k = kv[1]; gsub(/ /, "", k); v = kv[2]; gsub(/ /, "", v)
            if (sect == "" && k == "throughput_rps") rps = v
            if (sect == "latency_ms" && k == "p50") p50 = v
            if (sect == "latency_ms" && k == "p99") p99 = v
            if (sect == "errors") err += v
            if (sect == "" && k == "unsent") err += v
        }
        END { if (rps == "") exit 1; printf "%s %s %s %d\n", rps, p50 + 0, p99 + 0, err }' "$1"
}
parse_wrk() {
    awk '
        function ms(v) {
            if (v ~ /us$/) return substr(v, 1, length(v) - 2) / 1000
            if (v ~ /ms$/) return substr(v, 1, length(v) - 2) + 0
            if (v ~ /m$/) return substr(v, 1, length(v) - 1) * 60000
            if (v ~ /s$/) return substr(v, 1, length(v) - 1) * 1000
            return v + 0
        }
        /^Requests\/sec:/ { rps = $2 }
        $1 == "50%" { p50 = ms($2) }
        $1 == "99%" { p99 = ms($2) }
        /Non-2xx or 3xx responses:/ { err += $NF }
        /Socket errors:/ { gsub(",", ""); err += $4 + $6 + $8 + $10 }
        END { if (rps == "") exit 1; printf "%s %s %s %d\n", rps, p50, p99, err }' "$1"
}

# run_gen TOOL METHOD URL SECONDS OUT: runs the generator; sets GEN_CPU (its CPU seconds).
run_gen() {
    local cmd=() rc=0 TIMEFORMAT='%3U %3S'
    mapfile -t cmd < <(gen_cmd "$1" "$2" "$3" "$4")
    { time timeout $(($4 + 30)) "${cmd[@]}" >"$5" 2>"$5.err"; } 2>"$5.time" || rc=$?
    [[ $rc -eq 0 ]] || die "the load generator failed (exit $rc): ${cmd[*]}: $(tail -3 "$5.err")"
    GEN_CPU=$(awk '{ printf "%.2f", $1 + $2 }' "$5.time")
}

# ---------------------------------------------------------------------------------------------
# Measuring
# ---------------------------------------------------------------------------------------------
RESULTS=$TMP/results.tsv
: >"$RESULTS"
FAILED=0
# measure ROW RUN ATTEMPT: one measured run; appends to RESULTS
# "id run attempt kept rps p50 p99 proxy_cpu_s generator_cpu_s other_cores errors", kept = 1.
measure() {
    local id group label tool method url pids ref out vals cpu rps p50 p99 errs other
    local perf_pid= t0 t1 run=$2 attempt=$3
    IFS='|' read -r id group label tool method url pids ref <<<"$1"
    wait_quiet
    out=$TMP/out-$id-$run-$attempt
    if [[ -n $PROFILE_DIR && $run -eq 1 && $attempt -eq 1 && -n $pids ]]; then
        # The proxy and its children (nginx's worker).
        perf record -g -o "$PROFILE_DIR/$id.data" \
            -p "$(ps -o pid= --ppid "$pids" | xargs | tr ' ' ',' | sed "s/^/$pids,/; s/,\$//")" \
            >"$PROFILE_DIR/$id.record.log" 2>&1 &
        perf_pid=$!
        sleep 0.5
    fi
    snapshot "$out.cpu1"
    t0=$EPOCHREALTIME
    run_gen "$tool" "$method" "$url" "$DURATION" "$out"
    t1=$EPOCHREALTIME
    snapshot "$out.cpu2"
    if [[ -n $perf_pid ]]; then
        kill -INT "$perf_pid" 2>/dev/null || true
        wait "$perf_pid" 2>/dev/null || true
        perf report -i "$PROFILE_DIR/$id.data" --no-children --percent-limit 2 --stdio \
            >"$PROFILE_DIR/$id.txt" 2>/dev/null || say "perf report failed for $id"
        "$root/loadtest/bench/perf-summary.sh" "$PROFILE_DIR/$id.data" \
            >"$PROFILE_DIR/$id.summary.txt" 2>&1 || say "perf-summary failed for $id"
        say "  profile written to $PROFILE_DIR/$id.txt and $id.summary.txt"
    fi
    if [[ $tool == wrk ]]; then vals=$(parse_wrk "$out"); else vals=$(parse_load "$out"); fi ||
        die "could not read the load generator's report for $id: $(head -c 600 "$out")"
    read -r rps p50 p99 errs <<<"$vals"
    [[ -z ${BENCH_DEBUG:-} ]] || say "  ticks (proxy mine kernel machine others): $(cpu_delta "$out.cpu1" "$out.cpu2" "$pids")"
    read -r cpu other <<<"$(cpu_delta "$out.cpu1" "$out.cpu2" "$pids" |
        awk -v g="$GEN_CPU" -v hz="$CLK_TCK" -v s="$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')" \
            "$OTHER_TICKS"' { printf "%.2f %.2f\n", $1 / hz, o / hz / s }')"
    [[ -n $pids ]] || cpu=-
    printf '%s\t%s\t%s\t1\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$id" "$run" "$attempt" \
        "$rps" "$p50" "$p99" "$cpu" "$GEN_CPU" "$other" "$errs" >>"$RESULTS"
    printf 'bench:   %.0f req/s, p50 %s ms, p99 %s ms, proxy CPU %s s, generator CPU %s s, other processes %s cores%s, errors %s\n' \
        "$rps" "$p50" "$p99" "$cpu" "$GEN_CPU" "$other" \
        "$(awk -v o="$other" -v m="$MAX_OTHER" 'BEGIN { if (m > 0 && o > m) printf " (disturbed)" }')" "$errs" >&2
    if [[ $errs -ne 0 ]]; then
        say "  ERROR: $errs requests failed in this run (see $(basename "$out"))"
        cp "$out" "$out.err" "$TMP/failed-$id-$run.txt" 2>/dev/null || true
        FAILED=1
    fi
}

# The rows measured together: a wrk row and the lockstep-load row it is compared with run back
# to back, and are measured again together.
unit_of() { # unit_of ID: the ids of its unit, in measuring order
    local row rid rgroup rref
    for row in "${ROWS[@]}"; do
        IFS='|' read -r rid rgroup _ _ _ _ _ rref <<<"$row"
        if [[ $rgroup == xcheck && $rid == "$1" ]]; then echo "$rref $rid"; return; fi
        if [[ $rgroup == xcheck && $rref == "$1" ]]; then echo "$1 $rid"; return; fi
    done
    echo "$1"
}
row_of() { # row_of ID
    local row
    for row in "${ROWS[@]}"; do [[ ${row%%|*} == "$1" ]] && { echo "$row"; return; }; done
    die "no row $1"
}
# settle RUN ID...: of the attempts at RUN of these rows, keeps the one during which other
# processes used the least CPU (for a unit, the most any of its rows saw).
settle() {
    local run=$1
    shift
    awk -F'\t' -v OFS='\t' -v run="$run" -v ids=" $* " '
        FNR == NR { if ($2 == run && index(ids, " " $1 " ")) { if (!($3 in worst) || $10 > worst[$3]) worst[$3] = $10 }; next }
        FNR == 1 { best = ""; for (a in worst) if (best == "" || worst[a] + 0 < worst[best] + 0) best = a }
        $2 == run && index(ids, " " $1 " ") { $4 = ($3 == best) ? 1 : 0 }
        { print }' "$RESULTS" "$RESULTS" >"$RESULTS.new"
    mv "$RESULTS.new" "$RESULTS"
}

LOADAVG=$(cut -d' ' -f1-3 /proc/loadavg)
nrows=${#ROWS[@]}
est=$(((nrows * (WARMUP + 1) + RUNS * nrows * (DURATION + 2)) / 60 + 1))
say "${nrows} rows, ${RUNS} run(s) of ${DURATION} s each, rows interleaved; about ${est} minutes if the machine stays quiet, at most $(((nrows * (WARMUP + 1) + BUDGET) / 60 + 1)) if not"
say "warming up every row for ${WARMUP} s"
for row in "${ROWS[@]}"; do
    IFS='|' read -r id _ _ tool method url _ _ <<<"$row"
    run_gen "$tool" "$method" "$url" "$WARMUP" "$TMP/warmup-$id"
done
START=$SECONDS
RUNS_LEFT=$((RUNS * nrows))
for ((run = 1; run <= RUNS; run++)); do
    i=0
    for row in "${ROWS[@]}"; do
        i=$((i + 1))
        IFS='|' read -r id group label tool _ _ _ _ <<<"$row"
        elapsed=$((SECONDS - START))
        say "[run $run/$RUNS, row $i/$nrows, $((elapsed / 60))m$((elapsed % 60))s] $id: $group, $label ($tool)"
        measure "$row" "$run" 1
        RUNS_LEFT=$((RUNS_LEFT - 1))
    done
done

# Disturbed runs (other processes above MAX_OTHER) are measured again, most disturbed first, up
# to REDO more times each and while the budget lasts; the least disturbed attempt is kept.
if [[ $MAX_OTHER != 0 ]]; then
    for ((pass = 2; pass <= REDO + 1; pass++)); do
        mapfile -t todo < <(awk -F'\t' -v m="$MAX_OTHER" '$4 == 1 && $10 > m { print $10 "\t" $1 "\t" $2 }' "$RESULTS" | sort -rn | cut -f2,3)
        [[ ${#todo[@]} -gt 0 ]] || break
        say "measuring ${#todo[@]} disturbed run(s) again (attempt $pass)"
        done_units=" "
        for item in "${todo[@]}"; do
            IFS=$'\t' read -r id run <<<"$item"
            unit=$(unit_of "$id")
            [[ $done_units == *" $run:${unit// /+} "* ]] && continue
            done_units+="$run:${unit// /+} "
            if [[ $(slack) -lt $((DURATION + 2)) ]]; then
                say "the budget (--budget $BUDGET) is used up; keeping the disturbed runs left"
                break 2
            fi
            for uid in $unit; do
                row=$(row_of "$uid")
                IFS='|' read -r _ group label tool _ _ _ _ <<<"$row"
                say "[again, run $run, $(((SECONDS - START) / 60))m$(((SECONDS - START) % 60))s] $uid: $group, $label ($tool)"
                measure "$row" "$run" "$pass"
            done
            # shellcheck disable=SC2086
            settle "$run" $unit
        done
    done
fi

# At the end, every gateway's backups must still be in sync and show the primary's view: a
# backup ejected during the runs would have made the rows after it faster than they should be.
say "checking that every gateway's backups agree with its primary"
for gw in "${GATEWAYS[@]}"; do
    IFS='|' read -r name _ admin _ backups <<<"$gw"
    [[ $backups -gt 0 ]] || continue
    status=$(curl -fsS --max-time 5 "http://127.0.0.1:$admin/status") ||
        { say "ERROR: gateway $name: no /status"; FAILED=1; continue; }
    states=$(grep -o '"state" *: *"[a-z_-]*"' <<<"$status" | sed 's/.*: *"\(.*\)"/\1/' | sort | uniq -c | xargs)
    if [[ $states != "$((backups + 1)) in-sync" ]]; then
        say "ERROR: gateway $name: not every backend is in sync (states: $states)"
        FAILED=1
    fi
    if ! "$LOAD" verify --admin "http://127.0.0.1:$admin" --timeout 60s >"$TMP/verify-$name.txt" 2>&1; then
        say "ERROR: gateway $name: backups differ from the primary: $(cat "$TMP/verify-$name.txt")"
        FAILED=1
    fi
done

# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------
ROWDEFS=$TMP/rows.tsv
for row in "${ROWS[@]}"; do
    IFS='|' read -r id group label tool method url pids ref <<<"$row"
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$id" "$group" "$label" "$tool" "$method" "${pids:+1}" "$ref"
done >"$ROWDEFS"

REPORT=$TMP/report.md
awk -F'\t' -v dur="$DURATION" -v accounts="$ACCOUNTS" '
    function median(key,   n, i, j, t, a) {
        n = split(vals[key], a, " ")
        if (n == 0) return ""
        for (i = 2; i <= n; i++) for (j = i; j > 1 && a[j - 1] + 0 > a[j] + 0; j--) { t = a[j]; a[j] = a[j - 1]; a[j - 1] = t }
        return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
    }
    function fmt_int(x,   s, r) {
        s = sprintf("%.0f", x); r = ""
        while (length(s) > 3) { r = "," substr(s, length(s) - 2) r; s = substr(s, 1, length(s) - 3) }
        return s r
    }
    function ratio(a, b) { return (a != "" && b != "" && b > 0) ? sprintf("%.2f", a / b) : "—" }
    function has(id) { return (id in rps) && rps[id] != "" }
    function table(grp, title, refname,   i, id, r, n) {
        for (i = 1; i <= nrows; i++) if (group[ids[i]] == grp && has(ids[i])) n++
        if (!n) return
        printf "%s\n\n", title
        printf "| target | requests/s | p50 ms | p99 ms | proxy CPU s | proxy CPU µs/request | requests/s vs %s | p99 vs %s | errors |\n", refname, refname
        printf "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n"
        for (i = 1; i <= nrows; i++) {
            id = ids[i]
            if (group[id] != grp || !has(id)) continue
            r = ref[id]
            printf "| %s | %s | %.2f | %.2f | %s | %s | %s | %s | %d |\n", label[id], fmt_int(rps[id]),
                p50[id], p99[id],
                (hasproxy[id] ? sprintf("%.2f", cpu[id]) : "—"),
                (hasproxy[id] ? sprintf("%.0f", cpureq[id]) : "—"),
                (r != "" && has(r) ? ratio(rps[id], rps[r]) : "—"),
                (r != "" && has(r) ? ratio(p99[id], p99[r]) : "—"),
                bad[id]
        }
        printf "\n"
    }
    function goal(text, id, refid, need, kind,   v, ok) {
        if (!has(id) || !has(refid)) return
        if (kind == "rps") {
            v = rps[id] / rps[refid]
            ok = v >= need
            printf "| %s | %.2f× (%s against %s requests/s) | %s |\n", text, v, fmt_int(rps[id]), fmt_int(rps[refid]), ok ? "**yes**" : "**no**"
        } else {
            ok = p99[id] <= p99[refid]
            printf "| %s | %.2f ms against %.2f ms | %s |\n", text, p99[id], p99[refid], ok ? "**yes**" : "**no**"
        }
    }
    FNR == NR { ids[++nrows] = $1; group[$1] = $2; label[$1] = $3; tool[$1] = $4; method[$1] = $5; hasproxy[$1] = $6; ref[$1] = $7; next }
    $4 == 1 {
        id = $1
        vals[id, "rps"] = vals[id, "rps"] " " $5
        vals[id, "p50"] = vals[id, "p50"] " " $6
        vals[id, "p99"] = vals[id, "p99"] " " $7
        if ($8 != "-") {
            vals[id, "cpu"] = vals[id, "cpu"] " " $8
            vals[id, "cpureq"] = vals[id, "cpureq"] " " ($5 > 0 ? $8 * 1e6 / ($5 * dur) : 0)
        }
        bad[id] += $11
    }
    END {
        for (i = 1; i <= nrows; i++) {
            id = ids[i]
            rps[id] = median(id SUBSEP "rps"); p50[id] = median(id SUBSEP "p50"); p99[id] = median(id SUBSEP "p99")
            if (hasproxy[id]) { cpu[id] = median(id SUBSEP "cpu"); cpureq[id] = median(id SUBSEP "cpureq") }
        }
        table("get", "Reads of the demo service, `GET /accounts/1`:", "nginx")
        table("static", "Reads of the static backend (nginx answering `{\"ok\":true}` itself), `GET /`:", "nginx")
        table("post", "Writes, `POST /accounts/{random:1.." accounts "}/deposit` with `{\"amount\":1}`; every lockstep row with `ack = \"all\"`:", "mirror")
        printf "Cross-check of the load generator, closed-loop GET, same target, runs interleaved:\n\n"
        printf "| target | lockstep-load requests/s | wrk requests/s | wrk / lockstep-load | p50 ms (lockstep-load / wrk) | p99 ms (lockstep-load / wrk) | within 10%%? |\n"
        printf "| --- | ---: | ---: | ---: | ---: | ---: | --- |\n"
        for (i = 1; i <= nrows; i++) {
            id = ids[i]
            if (group[id] != "xcheck" || !has(id) || !has(ref[id])) continue
            r = ref[id]; q = rps[id] / rps[r]
            printf "| %s | %s | %s | %.2f | %.2f / %.2f | %.2f / %.2f | %s |\n", label[id], fmt_int(rps[r]), fmt_int(rps[id]), q,
                p50[r], p50[id], p99[r], p99[id], (q >= 0.9 && q <= 1.1) ? "yes" : "**no**"
        }
        printf "\nThe targets (a benchmark, not a test):\n\n"
        printf "| target | measured | met? |\n| --- | --- | --- |\n"
        goal("reads ≥ 1.25× nginx proxy, demo service", "get-ls0", "get-nginx", 1.25, "rps")
        goal("reads ≥ 1.25× nginx proxy, static backend", "static-ls0", "static-nginx", 1.25, "rps")
        goal("read p99 ≤ nginx proxy, demo service", "get-ls0", "get-nginx", 0, "p99")
        goal("read p99 ≤ nginx proxy, static backend", "static-ls0", "static-nginx", 0, "p99")
        goal("writes, 2 backups, ack all, batch ≥ 2× nginx mirror (sequential, 1 lane)", "post-ls2", "post-mirror", 2, "rps")
        goal("writes, 2 backups, ack all, batch ≥ 2× nginx mirror (parallel, 1 lane)", "post-ls2par", "post-mirror", 2, "rps")
        goal("writes as above with " accounts " lanes ≥ 4× nginx mirror (sequential)", "post-ls2lanes", "post-mirror", 4, "rps")
        goal("writes as above with " accounts " lanes ≥ 4× nginx mirror (parallel)", "post-ls2lanespar", "post-mirror", 4, "rps")
        if (has("post-ls2") && has("post-ls2never"))
            printf "\n2 backups, 1 lane: `fsync = \"batch\"` / `\"never\"` = **%.2f**, `\"always\"` / `\"never\"` = **%.2f** (requests/s).\n", rps["post-ls2"] / rps["post-ls2never"], (has("post-ls2always") ? rps["post-ls2always"] / rps["post-ls2never"] : 0)
    }' "$ROWDEFS" "$RESULTS" >"$REPORT"

# Per-run requests/s and the CPU other processes used, to show the spread behind each median.
{
    printf '\nEach run (rows interleaved, in this order): requests/s, and in brackets the CPU other\nprocesses of the machine used during it, in cores (%s):\n\n' \
        "$(if [[ $MAX_OTHER == 0 ]]; then printf 'not checked'; else printf 'runs above %s were measured again at the end, up to %s more times while the budget lasted, and the least disturbed attempt kept; *discarded* counts the others' "$MAX_OTHER" "$REDO"; fi)"
    printf '| row | tool |'
    for ((run = 1; run <= RUNS; run++)); do printf ' run %d |' "$run"; done
    printf ' discarded |\n| --- | --- |'
    for ((run = 1; run <= RUNS; run++)); do printf ' ---: |'; done
    printf ' ---: |\n'
    awk -F'\t' 'FNR == NR { ids[++n] = $1; label[$1] = $3; tool[$1] = ($4 == "wrk" ? "wrk" : "lockstep-load"); grp[$1] = $2; next }
        $4 == 1 { r[$1] = r[$1] sprintf(" %.0f (%.2f) |", $5, $10) }
        $4 == 0 { d[$1]++ }
        END {
            for (i = 1; i <= n; i++) {
                id = ids[i]; g = grp[id]
                name = (g == "get" ? "demo GET: " : g == "static" ? "static GET: " : g == "post" ? "POST: " : "GET: ") label[id]
                printf "| %s | %s |%s %d |\n", name, tool[id], r[id], d[id]
            }
        }' "$ROWDEFS" "$RESULTS"
} >>"$REPORT"

machine() {
    local model
    model=$(lscpu | sed -n 's/^Model name: *//p' | head -1)
    printf -- '- `nproc`: %s; CPU: %s' "$(nproc)" "${model:-unknown}"
    lscpu | sed -n 's/^Hypervisor vendor: *\(.*\)/ (virtual machine, \1)/p' | head -1 | tr -d '\n'
    printf '\n- kernel: %s\n' "$(uname -sr)"
    printf -- '- %s; HAProxy %s; wrk %s; %s; %s\n' "$(nginx -v 2>&1 | sed 's/^nginx version: //')" \
        "$(haproxy -v 2>&1 | head -1 | awk '{print $3}')" \
        "$(wrk -v 2>&1 | head -1 | awk '{print $2}')" "$(rustc -V 2>/dev/null || echo 'rustc unknown')" \
        "$("$LOAD" --version 2>/dev/null || echo 'lockstep-load')"
    printf -- '- journals on %s; load average when the run started: %s\n' "$TMP_FS" "$LOADAVG"
    awk -F'\t' '$4 == 1 { s += $10; n++; if ($10 > m) m = $10 } $4 == 0 { d++ }
        END { if (n) printf "- CPU used by other processes during the kept runs: %.2f cores on average, %.2f at most; %d runs measured again\n", s / n, m, d }' "$RESULTS"
}

BLOCK=$TMP/block.md
{
    printf 'Generated by `loadtest/bench.sh%s`: %s measured run(s) of %s s per row (rows interleaved, after a %s s warm-up of each), closed loop with %s connections, medians.\n\n' \
        "$([[ $QUICK -eq 1 ]] && printf ' --quick')" "$RUNS" "$DURATION" "$WARMUP" "$CONNECTIONS"
    machine
    printf '\nCommands (ports are picked at run time; `post.lua` sets method `POST`, body `{"amount":1}` and `Content-Type: application/json`):\n\n```sh\n'
    shown_cmd load GET "http://127.0.0.1:PORT$GET_PATH" "$DURATION"; printf '\n'
    shown_cmd load POST "http://127.0.0.1:PORT" "$DURATION"; printf '\n'
    shown_cmd wrk GET "http://127.0.0.1:PORT$GET_PATH" "$DURATION"; printf '\n'
    printf '```\n\n'
    cat "$REPORT"
} >"$BLOCK"

echo
cat "$BLOCK"

if [[ $FAILED -ne 0 ]]; then
    say "FAILED: some runs had errors or a gateway's backups disagree (see above); $DOC not written"
    exit 1
fi

if [[ $WRITE_DOC -eq 1 ]]; then
    grep -q '^<!-- bench:begin -->$' "$DOC" && grep -q '^<!-- bench:end -->$' "$DOC" ||
        die "$DOC has no <!-- bench:begin --> / <!-- bench:end --> lines to write between"
    awk -v block="$BLOCK" '
        /^<!-- bench:begin -->$/ { print; while ((getline line < block) > 0) print line; skip = 1; next }
        /^<!-- bench:end -->$/ { skip = 0 }
        !skip { print }' "$DOC" >"$TMP/doc.md"
    cat "$TMP/doc.md" >"$DOC"
    say "wrote the results into $DOC"
fi
say "done in $(((SECONDS) / 60))m$((SECONDS % 60))s"
