#!/usr/bin/env bash
# End-to-end HTTP benchmark of lockstep against a direct backend and against nginx as a reverse
# proxy, with wrk as a closed-loop load generator. Everything listens on 127.0.0.1, on free ports
# picked at start; every process the script starts is stopped when it exits, also on failure.
#
# Usage: loadtest/bench.sh [--duration SECONDS] [--runs N] [--connections N] [--write-doc]
#
# See docs/benchmarks.md for what each row means and for the figures of a recorded run.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

DURATION=8        # seconds per wrk run
RUNS=3            # runs per row; the table shows the median
CONNECTIONS=32    # wrk connections (closed loop: each sends its next request after the answer)
WARMUP=2          # seconds of load per row before the first measured run
WRITE_DOC=0
DOC=docs/benchmarks.md

usage() {
    cat <<'USAGE'
Usage: loadtest/bench.sh [--duration SECONDS] [--runs N] [--connections N] [--write-doc]

Builds lockstep and lockstep-demo (release), starts demo backends, nginx (one worker) and
lockstep gateways (threads = 1) on free 127.0.0.1 ports, and measures each row with
`wrk -t1 -cCONNECTIONS -dDURATION --latency`, RUNS times, rows interleaved. Prints a Markdown
table of medians; with --write-doc, also replaces the part of docs/benchmarks.md between
<!-- bench:begin --> and <!-- bench:end --> with it.

Needs: cargo, curl, nginx (Debian: nginx-light or nginx) and wrk. Run as root on a system with
apt-get, it installs nginx-light and wrk when they are missing.

Options:
  --duration SECONDS   length of one measured run     (default 8)
  --runs N             measured runs per row          (default 3)
  --connections N      wrk connections                (default 32)
  --write-doc          write the results into docs/benchmarks.md
USAGE
}

while [[ $# -gt 0 ]]; do
    case "$1" in
    --duration) DURATION=$2; shift 2 ;;
    --runs) RUNS=$2; shift 2 ;;
    --connections) CONNECTIONS=$2; shift 2 ;;
    --write-doc) WRITE_DOC=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) echo "bench: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done

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
# nginx lives in /usr/sbin, which is not on every user's PATH.
PATH=$PATH:/usr/sbin:/sbin
command -v cargo >/dev/null 2>&1 || die "cargo is not installed (or not on PATH); install Rust with rustup"
need_debian curl curl "readiness checks"
need_debian wrk wrk "the load generator"
need_debian nginx nginx-light "the reference reverse proxy and the static backend"

say "building lockstep and lockstep-demo (release)"
cargo build --release -p lockstep -p lockstep-demo >&2
BIN=${CARGO_TARGET_DIR:-$root/target}/release
[[ -x $BIN/lockstep && -x $BIN/lockstep-demo ]] || die "release binaries not found in $BIN"

# ---------------------------------------------------------------------------------------------
# Temporary directory and cleanup
# ---------------------------------------------------------------------------------------------
TMP=$(mktemp -d "${TMPDIR:-/tmp}/lockstep-bench.XXXXXX")
chmod 755 "$TMP" # nginx workers run as an unprivileged user when started by root
if [[ "$(stat -f -c %T "$TMP")" == tmpfs ]]; then
    say "warning: $TMP is on tmpfs, so the journal's fsyncs cost nothing; set TMPDIR to a disk"
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

wait_http() { # wait_http URL: until it answers 2xx, at most 15 s
    local i
    for ((i = 0; i < 150; i++)); do
        curl -fsS -o /dev/null --max-time 1 "$1" 2>/dev/null && return
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
    [[ -n $DEMO_ADDR ]] || die "demo backend $name did not print its address within 10 s"
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
    nginx -e "$dir/error.log" -p "$dir" -c "$dir/nginx.conf" &
    NGINX_PID=$!
    PIDS+=("$NGINX_PID")
}

# start_lockstep NAME LISTEN_PORT FSYNC PRIMARY_ADDR [BACKUP_ADDR...]; sets LOCKSTEP_PID.
start_lockstep() {
    local name=$1 port=$2 fsync=$3 primary=$4 dir=$TMP/$1 i=0 addr
    shift 4
    mkdir -p "$dir/journal"
    free_port
    local admin_port=$PORT
    {
        cat <<EOF
[gateway]
listen = "127.0.0.1:$port"
threads = 1
grace_period = "0s"

[admin]
listen = "127.0.0.1:$admin_port"

[journal]
dir = "$dir/journal"
fsync = "$fsync"

[replication]
ack = "all"

[log]
level = "warn"

[[backends]]
name = "p"
url = "http://$primary"
role = "primary"
EOF
        for addr in "$@"; do
            i=$((i + 1))
            printf '\n[[backends]]\nname = "b%d"\nurl = "http://%s"\nrole = "backup"\n' "$i" "$addr"
        done
    } >"$dir/lockstep.toml"
    "$BIN/lockstep" run --config "$dir/lockstep.toml" 2>"$dir/lockstep.log" &
    LOCKSTEP_PID=$!
    PIDS+=("$LOCKSTEP_PID")
}

# ---------------------------------------------------------------------------------------------
# The setup
# ---------------------------------------------------------------------------------------------
# Demo backends: d (direct, nginx, lockstep 0 backups); r1..r3 (lockstep, 2 backups, batch);
# n1..n3 (lockstep, 2 backups, never). Each gateway with backups has its own backends, since a
# write sent around a gateway would make its backups disagree with the primary.
start_demo d; DEMO_D=$DEMO_ADDR
start_demo r1; DEMO_R1=$DEMO_ADDR
start_demo r2; DEMO_R2=$DEMO_ADDR
start_demo r3; DEMO_R3=$DEMO_ADDR
start_demo n1; DEMO_N1=$DEMO_ADDR
start_demo n2; DEMO_N2=$DEMO_ADDR
start_demo n3; DEMO_N3=$DEMO_ADDR

free_port; STATIC_PORT=$PORT
start_nginx static "    server {
        listen 127.0.0.1:$STATIC_PORT;
        location / { default_type application/json; return 200 '{\"ok\":true}'; }
    }"

free_port; NGX_DEMO_PORT=$PORT
free_port; NGX_STATIC_PORT=$PORT
proxy_opts='proxy_http_version 1.1; proxy_set_header Connection "";'
start_nginx proxy "    upstream demo { server $DEMO_D; keepalive 64; }
    upstream static { server 127.0.0.1:$STATIC_PORT; keepalive 64; }
    server { listen 127.0.0.1:$NGX_DEMO_PORT; location / { proxy_pass http://demo; $proxy_opts } }
    server { listen 127.0.0.1:$NGX_STATIC_PORT; location / { proxy_pass http://static; $proxy_opts } }"
PROXY_NGINX_PID=$NGINX_PID

free_port; LS0_PORT=$PORT
start_lockstep ls0 "$LS0_PORT" batch "$DEMO_D"
LS0_PID=$LOCKSTEP_PID
free_port; LS2_PORT=$PORT
start_lockstep ls2 "$LS2_PORT" batch "$DEMO_R1" "$DEMO_R2" "$DEMO_R3"
LS2_PID=$LOCKSTEP_PID
free_port; LS2N_PORT=$PORT
start_lockstep ls2never "$LS2N_PORT" never "$DEMO_N1" "$DEMO_N2" "$DEMO_N3"
LS2N_PID=$LOCKSTEP_PID
free_port; LSS_PORT=$PORT
start_lockstep lsstatic "$LSS_PORT" batch "127.0.0.1:$STATIC_PORT"
LSS_PID=$LOCKSTEP_PID

wait_http "http://127.0.0.1:$STATIC_PORT/"
wait_http "http://127.0.0.1:$NGX_DEMO_PORT/health"
wait_http "http://127.0.0.1:$NGX_STATIC_PORT/"
for port in "$LS0_PORT" "$LS2_PORT" "$LS2N_PORT"; do wait_http "http://127.0.0.1:$port/health"; done
wait_http "http://127.0.0.1:$LSS_PORT/"

# Account 1 on every set of backends (through the gateways, so that backups have it too).
for base in "http://127.0.0.1:$LS0_PORT" "http://127.0.0.1:$LS2_PORT" "http://127.0.0.1:$LS2N_PORT"; do
    curl -fsS -o /dev/null --max-time 5 -X POST "$base/accounts" \
        -H 'Content-Type: application/json' -d '{"owner":"bench"}' ||
        die "cannot create account 1 through $base"
done

cat >"$TMP/post.lua" <<'EOF'
wrk.method = "POST"
wrk.body = '{"amount":1}'
wrk.headers["Content-Type"] = "application/json"
EOF

# ---------------------------------------------------------------------------------------------
# Rows: id|label|method|url|pids of the proxy (empty: none)|nginx row it is compared with
# ---------------------------------------------------------------------------------------------
GET_PATH=/accounts/1
POST_PATH=/accounts/1/deposit
ROWS=(
    "get-direct|demo, direct|GET|http://$DEMO_D$GET_PATH||"
    "get-nginx|demo, nginx proxy|GET|http://127.0.0.1:$NGX_DEMO_PORT$GET_PATH|$PROXY_NGINX_PID|"
    "get-ls0|demo, lockstep 0 backups|GET|http://127.0.0.1:$LS0_PORT$GET_PATH|$LS0_PID|get-nginx"
    "get-ls2|demo, lockstep 2 backups|GET|http://127.0.0.1:$LS2_PORT$GET_PATH|$LS2_PID|get-nginx"
    "post-direct|demo, direct|POST|http://$DEMO_D$POST_PATH||"
    "post-nginx|demo, nginx proxy|POST|http://127.0.0.1:$NGX_DEMO_PORT$POST_PATH|$PROXY_NGINX_PID|"
    "post-ls0|demo, lockstep 0 backups, batch|POST|http://127.0.0.1:$LS0_PORT$POST_PATH|$LS0_PID|post-nginx"
    "post-ls2|demo, lockstep 2 backups, batch|POST|http://127.0.0.1:$LS2_PORT$POST_PATH|$LS2_PID|post-nginx"
    "post-ls2never|demo, lockstep 2 backups, never|POST|http://127.0.0.1:$LS2N_PORT$POST_PATH|$LS2N_PID|post-nginx"
    "static-direct|static nginx, direct|GET|http://127.0.0.1:$STATIC_PORT/||"
    "static-nginx|static nginx, nginx proxy|GET|http://127.0.0.1:$NGX_STATIC_PORT/|$PROXY_NGINX_PID|"
    "static-ls0|static nginx, lockstep 0 backups|GET|http://127.0.0.1:$LSS_PORT/|$LSS_PID|static-nginx"
)

CLK_TCK=$(getconf CLK_TCK)
cpu_ticks() { # cpu_ticks PID: utime + stime of PID and its children processes (nginx workers)
    local pid total=0 t
    for pid in "$1" $(ps -o pid= --ppid "$1" 2>/dev/null); do
        t=$(sed 's/^.*) //' "/proc/$pid/stat" 2>/dev/null | awk '{print $12 + $13}') || t=0
        total=$((total + ${t:-0}))
    done
    echo "$total"
}

wrk_cmd() { # wrk_cmd METHOD URL SECONDS
    local cmd=(wrk -t1 "-c$CONNECTIONS" "-d${3}s" --latency)
    [[ $1 == POST ]] && cmd+=(-s "$TMP/post.lua")
    cmd+=("$2")
    echo "${cmd[@]}"
}

RESULTS=$TMP/results.tsv
: >"$RESULTS"
# measure ROW RUN: one wrk run; appends "id run rps p50_ms p99_ms cpu_s non2xx errors" to RESULTS.
measure() {
    local id label method url pids ref cmd out before after cpu
    IFS='|' read -r id label method url pids ref <<<"$1"
    cmd=$(wrk_cmd "$method" "$url" "$DURATION")
    say "[$id run $2] $cmd"
    before=0
    [[ -n $pids ]] && before=$(cpu_ticks "$pids")
    # shellcheck disable=SC2086
    out=$(timeout $((DURATION + 30)) $cmd) || die "wrk failed for $id: $out"
    after=0
    [[ -n $pids ]] && after=$(cpu_ticks "$pids")
    echo "$out" >"$TMP/wrk-$id-$2.txt"
    awk -v id="$id" -v run="$2" -v cpu="$(((after - before)))" -v hz="$CLK_TCK" -v has="${pids:+1}" '
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
        /Non-2xx or 3xx responses:/ { non2xx = $NF }
        /Socket errors:/ { gsub(",", ""); errors = $4 + $6 + $8 + $10 }
        END {
            printf "%s\t%s\t%s\t%s\t%s\t%s\t%d\t%d\n", id, run, rps, p50, p99,
                (has ? cpu / hz : "-"), non2xx, errors
        }' <<<"$out" >>"$RESULTS"
    tail -1 "$RESULTS" | awk -F'\t' '{ printf "bench:   %s req/s, p50 %s ms, p99 %s ms, proxy CPU %s s, non-2xx %s, socket errors %s\n", $3, $4, $5, $6, $7, $8 }' >&2
}

LOADAVG=$(cut -d' ' -f1-3 /proc/loadavg)
say "warming up every row for ${WARMUP} s"
for row in "${ROWS[@]}"; do
    IFS='|' read -r _ _ method url _ _ <<<"$row"
    # shellcheck disable=SC2046
    timeout $((WARMUP + 30)) $(wrk_cmd "$method" "$url" "$WARMUP") >/dev/null || die "warm-up failed for $url"
done
for ((run = 1; run <= RUNS; run++)); do
    for row in "${ROWS[@]}"; do measure "$row" "$run"; done
done

# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------
ROWDEFS=$TMP/rows.tsv
for row in "${ROWS[@]}"; do
    IFS='|' read -r id label method url pids ref <<<"$row"
    printf '%s\t%s\t%s\t%s\t%s\n' "$id" "$label" "$method" "${pids:+1}" "$ref"
done >"$ROWDEFS"

REPORT=$TMP/report.md
# Medians per row; CPU per request = proxy CPU seconds / (requests/s * duration) of the same run.
awk -F'\t' -v dur="$DURATION" '
    function median(key,   n, i, j, t, a) {
        n = split(vals[key], a, " ")
        for (i = 2; i <= n; i++) for (j = i; j > 1 && a[j - 1] + 0 > a[j] + 0; j--) { t = a[j]; a[j] = a[j - 1]; a[j - 1] = t }
        return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
    }
    function fmt_int(x,   s, r) {
        s = sprintf("%.0f", x); r = ""
        while (length(s) > 3) { r = "," substr(s, length(s) - 2) r; s = substr(s, 1, length(s) - 3) }
        return s r
    }
    FNR == NR { ids[++nrows] = $1; label[$1] = $2; method[$1] = $3; hasproxy[$1] = $4; ref[$1] = $5; next }
    {
        id = $1
        vals[id, "rps"] = vals[id, "rps"] " " $3
        vals[id, "p50"] = vals[id, "p50"] " " $4
        vals[id, "p99"] = vals[id, "p99"] " " $5
        if ($6 != "-") {
            vals[id, "cpu"] = vals[id, "cpu"] " " $6
            vals[id, "cpureq"] = vals[id, "cpureq"] " " ($3 > 0 ? $6 * 1e6 / ($3 * dur) : 0)
        }
        bad[id] += $7 + $8
    }
    END {
        printf "| row | request | requests/s | p50 ms | p99 ms | proxy CPU s | proxy CPU µs/request | requests/s vs nginx | CPU/request vs nginx | errors |\n"
        printf "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n"
        for (i = 1; i <= nrows; i++) {
            id = ids[i]
            rps[id] = median(id SUBSEP "rps")
            if (hasproxy[id]) { cpu[id] = median(id SUBSEP "cpu"); cpureq[id] = median(id SUBSEP "cpureq") }
        }
        for (i = 1; i <= nrows; i++) {
            id = ids[i]
            r = ref[id]
            req = (method[id] == "POST") ? "POST /accounts/1/deposit" : ((id ~ /^static/) ? "GET /" : "GET /accounts/1")
            printf "| %s | %s | %s | %.2f | %.2f | %s | %s | %s | %s | %d |\n", label[id], req,
                fmt_int(rps[id]), median(id SUBSEP "p50"), median(id SUBSEP "p99"),
                (hasproxy[id] ? sprintf("%.2f", cpu[id]) : "—"),
                (hasproxy[id] ? sprintf("%.0f", cpureq[id]) : "—"),
                (r != "" ? sprintf("%.2f", rps[id] / rps[r]) : "—"),
                ((r != "" && cpureq[r] > 0) ? sprintf("%.2f", cpureq[id] / cpureq[r]) : "—"),
                bad[id]
        }
        printf "\nPOST through lockstep with 2 backups, `fsync = \"batch\"` / `\"never\"` (requests/s): **%.2f**\n", rps["post-ls2"] / rps["post-ls2never"]
    }' "$ROWDEFS" "$RESULTS" >"$REPORT"

# Per-run requests/s, to show the spread behind each median.
{
    printf '\nRequests/s of each run (in the order they ran; rows were interleaved):\n\n'
    printf '| row | request |'
    for ((run = 1; run <= RUNS; run++)); do printf ' run %d |' "$run"; done
    printf '\n| --- | --- |'
    for ((run = 1; run <= RUNS; run++)); do printf ' ---: |'; done
    printf '\n'
    awk -F'\t' 'FNR == NR { ids[++n] = $1; label[$1] = $2; m[$1] = $3; next }
        { r[$1] = r[$1] sprintf(" %.0f |", $3) }
        END { for (i = 1; i <= n; i++) printf "| %s | %s |%s\n", label[ids[i]], m[ids[i]], r[ids[i]] }' \
        "$ROWDEFS" "$RESULTS"
} >>"$REPORT"

machine() {
    local model
    model=$(lscpu | sed -n 's/^Model name: *//p' | head -1)
    printf -- '- `nproc`: %s; CPU: %s' "$(nproc)" "${model:-unknown}"
    lscpu | sed -n 's/^Hypervisor vendor: *\(.*\)/ (virtual machine, \1)/p' | head -1 | tr -d '\n'
    printf '\n- kernel: %s\n' "$(uname -sr)"
    printf -- '- %s; wrk %s; %s\n' "$(nginx -v 2>&1 | sed 's/^nginx version: //')" \
        "$(wrk -v 2>&1 | head -1 | awk '{print $2}')" "$(rustc -V 2>/dev/null || echo 'rustc unknown')"
    printf -- '- load average when the run started: %s\n' "$LOADAVG"
    if rev=$(git -C "$root" rev-parse --short HEAD 2>/dev/null); then
        git -C "$root" diff --quiet HEAD -- 2>/dev/null || rev+=", with uncommitted changes"
        printf -- '- lockstep at commit %s\n' "$rev"
    fi
}

BLOCK=$TMP/block.md
{
    printf 'Generated by `loadtest/bench.sh`: %s measured runs of %s s per row (rows interleaved, after a %s s warm-up of each), `wrk -t1 -c%s`, medians.\n\n' \
        "$RUNS" "$DURATION" "$WARMUP" "$CONNECTIONS"
    machine
    printf '\nCommands (ports are picked at run time; `post.lua` sets method `POST`, body `{"amount":1}` and `Content-Type: application/json`):\n\n```sh\n'
    printf '%s\n' "$(wrk_cmd GET "http://127.0.0.1:PORT$GET_PATH" "$DURATION" | sed "s|$TMP/||")"
    printf '%s\n' "$(wrk_cmd POST "http://127.0.0.1:PORT$POST_PATH" "$DURATION" | sed "s|$TMP/||")"
    printf '%s\n```\n\n' "$(wrk_cmd GET "http://127.0.0.1:PORT/" "$DURATION" | sed "s|$TMP/||")"
    cat "$REPORT"
} >"$BLOCK"

echo
cat "$BLOCK"

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
