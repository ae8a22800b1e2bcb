#!/usr/bin/env bash
# benches/load.sh: keygate against nginx auth_basic and HAProxy http-request
# auth, on this machine, loopback only (issue 6).
#
# What it does
#   1. Installs what is missing from Debian packages (wrk, nginx-light,
#      haproxy, curl, openssl, python3), after `apt-get update`.
#   2. Builds keygate (`cargo build --release`) and, for the 1,000,000-key
#      contender, seeds a store with `cargo bench --bench scale -- --seed`.
#   3. Starts, on 127.0.0.1 only, with configs generated in a temp dir:
#        upstream   nginx, one worker, answering 200 "ok" to everything
#        nginx      auth_basic with an {SHA} htpasswd (user haplo, the key),
#                   one worker, keep-alive pool to the upstream
#        haproxy    userlist + `http-request auth`, nbthread 1
#        keygate    one worker thread (proxy.worker_threads = 1), 1 key
#        kg-1M      the same with 1,000,000 keys in its store
#        kg-2w      two worker threads, 1 key
#      keygate runs with its access log off (like the others here, see LOGS)
#      and `throttle.max_failures = 4294967295`, so that the wrong-key run
#      measures full key verification rather than the cheaper THROTTLE exit.
#   4. Checks every server: the right key gets 200 "ok" from the upstream, a
#      wrong key gets 401/403. Any surprise stops the script before timing.
#   5. Timed runs, interleaved: ROUNDS rounds, each running every contender
#      once (the order rotates each round) with
#      `wrk -t1 -c64 -d10s --latency` and the same Basic credentials. The
#      server's CPU time (utime+stime of the process and its children, from
#      /proc/PID/stat) is read before and after each run.
#   6. Prints markdown tables (median over rounds, min-max spread):
#      throughput (req/s, share of direct, proxy CPU us/request, p99),
#      one connection (-c1: unloaded latency), and wrong-key refusals,
#      then the issue's targets as ratios measured in this same run, and
#      keygate's start-up time and resident memory with 1,000,000 keys.
#   `benches/load.sh churn` instead measures keygate (1M keys, 1 worker)
#   p99 under wrk -c64 with no admin traffic, with 50 admin reads/s
#   (control) and with 50 key writes/s (create, revoke, alternately) from a
#   keep-alive client, interleaved. `benches/load.sh all` runs both.
#   `AB_BINS="OLD NEW" benches/load.sh ab` compares two keygate binaries
#   (1 worker, 1 key each) side by side with HAProxy and nginx as the
#   references: interleaved loaded and wrong-key rounds, then NEW/OLD
#   ratios and each build's CPU per request against HAProxy's. This is
#   how a change is measured before it is committed: build the old and the
#   new binary, copy them aside, and run this.
#   `benches/load.sh tls` runs HAProxy, nginx and keygate with TLS
#   termination, all with the same ECDSA P-256 certificate (made here with
#   openssl), TLS 1.2 and 1.3, ALPN h2 and http/1.1, interleaved: HTTPS
#   keep-alive (`wrk -c$CONNS`), a full handshake per request (`wrk
#   -c$CLOSE_CONNS` with `Connection: close`; wrk never resumes a TLS
#   session), HTTP/2 over ALPN (`h2load -c$H2_CONNS -m$H2_STREAMS`) and
#   resumed sessions (`openssl s_time -reuse`, one client, unkeyed),
#   with each server's CPU per request and keygate's ratio to HAProxy's.
#   The upstream leg stays plain HTTP/1.1 for all three. With
#   `AB_BINS="OLD NEW"`, two keygate builds take keygate's place.
#   `benches/load.sh profile` runs one loaded run against keygate (1 worker,
#   1 key) under `perf record` and prints where its CPU goes (by area and
#   by symbol), then syscalls and context switches per request for
#   keygate, HAProxy and nginx (`perf stat`), to guide optimisation.
#
# Only absolute figures from one run are comparable with each other: the
# machine is shared, so compare ratios, not numbers across runs.
#
# Settings (environment):
#   ROUNDS=3 DURATION=10   rounds and seconds per timed run (-c64 runs)
#   C1_DURATION=5          seconds per one-connection run
#   CONNS=64               wrk connections for the loaded runs
#   KEYS_1M=1000000        keys for the big-store contender (0: skip it)
#   WORKERS2=1             include keygate with 2 worker threads (0: skip)
#   LOGS=0                 1: access logs on for all three proxies (nginx
#                          to a file, HAProxy to stdout, keygate's JSON log)
#   HYGIENE=0              1: nginx and HAProxy also drop Authorization and
#                          set X-Forwarded-For, as keygate always does
#   BASE_PORT=18400        first of 17 consecutive loopback ports used
#   CLOSE_CONNS=32         wrk connections for the handshake-per-request run
#   H2_CONNS=16 H2_STREAMS=8   h2load connections and streams per connection
#   TLS_KINDS="tls-ka tls-close h2 tls-resume"   the tls mode's runs
#   KEEP=0                 1: keep the temp dir (configs, logs, raw results)
#   KG_BIN=                a keygate binary to use instead of building one
# Default total runtime: about 7 minutes after the build (compare), about
# 2 minutes more for churn.
set -euo pipefail

MODE=${1:-compare}
case "$MODE" in compare | churn | all | profile | ab | tls) ;; *)
    echo "usage: $0 [compare|churn|all|profile|ab|tls]" >&2
    exit 2
    ;;
esac
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
C1_DURATION=${C1_DURATION:-5}
CONNS=${CONNS:-64}
KEYS_1M=${KEYS_1M:-1000000}
WORKERS2=${WORKERS2:-1}
LOGS=${LOGS:-0}
HYGIENE=${HYGIENE:-0}
BASE_PORT=${BASE_PORT:-18400}
KEEP=${KEEP:-0}
CLOSE_CONNS=${CLOSE_CONNS:-32}
H2_CONNS=${H2_CONNS:-16}
H2_STREAMS=${H2_STREAMS:-8}
TLS_KINDS=${TLS_KINDS:-tls-ka tls-close h2 tls-resume}
HOST=127.0.0.1 # the only address anything here listens on or sends to
PATH_Q="/api/bench/items?page=2"

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
say() { printf '%s\n' "$*" >&2; }
die() {
    say "load.sh: $*"
    exit 1
}

# ---------------------------------------------------------------- install
need=()
command -v wrk >/dev/null || need+=(wrk)
command -v nginx >/dev/null || need+=(nginx-light)
command -v haproxy >/dev/null || need+=(haproxy)
command -v curl >/dev/null || need+=(curl)
command -v openssl >/dev/null || need+=(openssl)
command -v python3 >/dev/null || need+=(python3)
[[ $MODE == profile ]] && ! command -v perf >/dev/null && need+=(linux-perf)
[[ $MODE == tls ]] && ! command -v h2load >/dev/null && need+=(nghttp2-client)
if ((${#need[@]})); then
    say "installing ${need[*]} from Debian packages"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

# ------------------------------------------------------------------ build
cd "$REPO"
AB=()
if [[ $MODE == ab || ($MODE == tls && -n ${AB_BINS:-}) ]]; then
    read -r -a AB <<<"${AB_BINS:-}"
    ((${#AB[@]} == 2)) || die "ab mode: set AB_BINS to two keygate binaries, old then new"
    for bin in "${AB[@]}"; do [[ -x $bin ]] || die "ab mode: no keygate binary at $bin"; done
    KG_BIN=${KG_BIN:-${AB[0]}}
fi
if [[ -n ${KG_BIN:-} ]]; then
    KG=$KG_BIN
else
    say "building keygate (release)"
    cargo build --release --quiet --bin keygate
    TARGET_DIR=$(cargo metadata --format-version 1 --no-deps |
        sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
    KG=$TARGET_DIR/release/keygate
fi
[[ -x $KG ]] || die "no keygate binary at $KG"

# ------------------------------------------------------------ processes
WORK=$(mktemp -d /tmp/kg-load.XXXXXX)
chmod 755 "$WORK" # nginx workers (user nobody) read the htpasswd here
PIDS=()
ADMIN_PID=
# shellcheck disable=SC2317  # invoked by the EXIT trap
cleanup() {
    local pid
    [[ -n $ADMIN_PID ]] && kill "$ADMIN_PID" 2>/dev/null
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    if [[ $KEEP == 1 ]]; then
        say "kept $WORK"
    else
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ulimit -n 65536 2>/dev/null || true # HAProxy wants 2 fds per connection

P_UP=$BASE_PORT
P_NGINX=$((BASE_PORT + 1))
P_HAPROXY=$((BASE_PORT + 2))
P_KG=$((BASE_PORT + 3))
P_KG_ADMIN=$((BASE_PORT + 4))
P_KGM=$((BASE_PORT + 5))
P_KGM_ADMIN=$((BASE_PORT + 6))
P_KG2=$((BASE_PORT + 7))
P_KG2_ADMIN=$((BASE_PORT + 8))
P_KGT=$((BASE_PORT + 11))
P_KGT_ADMIN=$((BASE_PORT + 12))
P_NGINX_TLS=$((BASE_PORT + 13))
P_HAPROXY_TLS=$((BASE_PORT + 14))
P_KGT2=$((BASE_PORT + 15))
P_KGT2_ADMIN=$((BASE_PORT + 16))
for port in $(seq "$BASE_PORT" $((BASE_PORT + 16))); do
    if ss -Hltn "sport = :$port" | grep -q .; then
        die "port $port is in use; set BASE_PORT to a free range"
    fi
done

wait_http() { # URL PID: until it answers at all (or PID dies)
    local url=$1 pid=$2 deadline=$((SECONDS + 30))
    until curl -s -o /dev/null --max-time 1 "$url"; do
        kill -0 "$pid" 2>/dev/null || die "the server for $url exited (logs in $WORK; KEEP=1 keeps them)"
        ((SECONDS < deadline)) || die "nothing answers at $url"
        sleep 0.02
    done
}

start_upstream() {
    mkdir -p "$WORK/up"
    cat >"$WORK/up/nginx.conf" <<EOF
worker_processes 1;
pid $WORK/up/nginx.pid;
error_log $WORK/up/error.log;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 100000000;
    keepalive_timeout 120s;
    client_body_temp_path $WORK/up/body;
    proxy_temp_path $WORK/up/proxy;
    server {
        listen $HOST:$P_UP;
        location / { return 200 "ok"; }
    }
}
EOF
    nginx -e "$WORK/up/error.log" -c "$WORK/up/nginx.conf" -g 'daemon off;' &
    PIDS+=($!)
    PID_UP=$!
    wait_http "http://$HOST:$P_UP/" "$PID_UP"
}

start_nginx_auth() {
    mkdir -p "$WORK/nginx"
    printf 'haplo:{SHA}%s\n' "$(printf '%s' "$KEY" | openssl dgst -binary -sha1 | base64)" \
        >"$WORK/nginx/htpasswd"
    chmod 755 "$WORK/nginx"
    chmod 644 "$WORK/nginx/htpasswd"
    local log=off hygiene=
    [[ $LOGS == 1 ]] && log="$WORK/nginx/access.log"
    # shellcheck disable=SC2016  # nginx's $remote_addr, not the shell's
    [[ $HYGIENE == 1 ]] && hygiene='proxy_set_header Authorization ""; proxy_set_header X-Forwarded-For $remote_addr;'
    cat >"$WORK/nginx/nginx.conf" <<EOF
worker_processes 1;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log;
events { worker_connections 4096; }
http {
    access_log $log;
    keepalive_requests 100000000;
    keepalive_timeout 120s;
    client_body_temp_path $WORK/nginx/body;
    proxy_temp_path $WORK/nginx/proxy;
    upstream app {
        server $HOST:$P_UP;
        keepalive 128;
        keepalive_requests 100000000;
    }
    server {
        listen $HOST:$P_NGINX;
        location / {
            auth_basic "keygate bench";
            auth_basic_user_file $WORK/nginx/htpasswd;
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            $hygiene
        }
    }
$(tls_nginx_server)
}
EOF
    nginx -e "$WORK/nginx/error.log" -c "$WORK/nginx/nginx.conf" -g 'daemon off;' &
    PIDS+=($!)
    PID_NGINX=$!
    wait_http "http://$HOST:$P_NGINX/" "$PID_NGINX"
}

start_haproxy() {
    mkdir -p "$WORK/haproxy"
    local log='' hygiene=''
    [[ $LOGS == 1 ]] && log=$'    log stdout format raw local0\n    option httplog'
    [[ $HYGIENE == 1 ]] && hygiene=$'    option forwardfor\n    http-request del-header Authorization'
    cat >"$WORK/haproxy/haproxy.cfg" <<EOF
global
    nbthread 1
    maxconn 4096
defaults
    mode http
$log
    timeout connect 5s
    timeout client 120s
    timeout server 120s
    timeout http-keep-alive 120s
userlist bench
    user haplo insecure-password $KEY
frontend fe
    bind $HOST:$P_HAPROXY
    http-request auth realm keygate-bench unless { http_auth(bench) }
$hygiene
    default_backend app
$(tls_haproxy_frontend)
backend app
    http-reuse always
    server up $HOST:$P_UP
EOF
    haproxy -db -f "$WORK/haproxy/haproxy.cfg" >"$WORK/haproxy/stdout" 2>"$WORK/haproxy/stderr" &
    PIDS+=($!)
    PID_HAPROXY=$!
    wait_http "http://$HOST:$P_HAPROXY/" "$PID_HAPROXY"
}

# start_keygate NAME WORKERS PORT ADMIN_PORT: sets STARTED_PID and
# STARTED_MS (exec to /readyz 200). Not to be called in $(...): the
# process must be this shell's child.
start_keygate() {
    local name=$1 workers=$2 port=$3 admin=$4 dir=$WORK/$1
    mkdir -p "$dir"
    local access=false
    [[ $LOGS == 1 ]] && access=true
    cat >"$dir/kg.toml" <<EOF
[proxy]
listen = "$HOST:$port"
upstream = "http://$HOST:$P_UP"
worker_threads = $workers
[admin]
listen = "$HOST:$admin"
[store]
path = "$dir/store.redb"
[throttle]
max_failures = 4294967295
[log]
access = $access
${KG_EXTRA:-}
EOF
    local t0 t1 pid
    t0=$(date +%s%N)
    RUST_LOG=warn "$KG" serve --config "$dir/kg.toml" \
        >"$dir/stdout" 2>"$dir/stderr" &
    pid=$!
    PIDS+=("$pid")
    local deadline=$((SECONDS + 120))
    until [[ $(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "http://$HOST:$admin/readyz") == 200 ]]; do
        kill -0 "$pid" 2>/dev/null || die "$name exited: $(cat "$dir/stderr")"
        ((SECONDS < deadline)) || die "$name not ready after 120 s"
        sleep 0.01
    done
    t1=$(date +%s%N)
    STARTED_PID=$pid
    STARTED_MS=$(((t1 - t0) / 1000000))
}

rss_mb() { awk '/^VmRSS/ {printf "%.0f", $2/1024}' "/proc/$1/status"; }
hwm_mb() { awk '/^VmHWM/ {printf "%.0f", $2/1024}' "/proc/$1/status"; }

# CPU ticks of PID and its children (nginx's worker): "utime+stime stime".
# The kernel's share is reported apart because it bounds what any proxy's
# own code can win: the same four socket calls per request cost every
# contender about the same.
cpu_ticks() {
    local total=0 sys=0 p t k
    for p in "$1" $(pgrep -P "$1" || true); do
        read -r t k < <(awk '{ sub(/^.*\) /, ""); print $12 + $13, $13 }' "/proc/$p/stat" 2>/dev/null || echo 0 0)
        total=$((total + t)) sys=$((sys + k))
    done
    echo "$total $sys"
}

# kernel_share SYSTICKS: appends the kernel's CPU µs per request (column
# 10) to the line `record` just wrote.
kernel_share() {
    local line
    line=$(tail -1 "$RESULTS")
    sed -i '$d' "$RESULTS"
    awk -F'\t' -v OFS='\t' -v ticks="$1" -v hz="$CLK_TCK" '{
        $10 = ($7 < 0 || $4 == 0) ? -1 : sprintf("%.2f", ticks / hz * 1e6 / $4); print }' \
        <<<"$line" >>"$RESULTS"
}
CLK_TCK=$(getconf CLK_TCK)

basic() { printf 'Basic %s' "$(printf 'haplo:%s' "$1" | base64 -w0)"; }

# ------------------------------------------------------------- contenders
declare -A PORT PID KEYOF
setup_common() {
    say "starting the upstream"
    start_upstream
    PORT[direct]=$P_UP
    PID[direct]=$PID_UP
}

setup_keygate_1() {
    start_keygate kg1 1 "$P_KG" "$P_KG_ADMIN"
    local ms=$STARTED_MS
    KEY=$("$KG" keys create --admin "http://$HOST:$P_KG_ADMIN" --user bench --name load-bench --path /api/)
    [[ ${#KEY} == 44 ]] || die "keys create did not print a key"
    PORT[keygate]=$P_KG
    PID[keygate]=$STARTED_PID
    KEYOF[keygate]=$KEY
    KEYOF[direct]=$KEY
    say "keygate (1 worker, 1 key) ready in ${ms} ms"
}

STARTUP_1M=
setup_keygate_1m() {
    ((KEYS_1M > 0)) || return 0
    mkdir -p "$WORK/kg1m"
    say "seeding a store with $KEYS_1M keys (cargo bench --bench scale -- --seed)"
    cargo bench --quiet --bench scale -- --seed "$WORK/kg1m/store.redb" "$KEYS_1M" "$WORK/kg1m.key" >&2
    start_keygate kg1m 1 "$P_KGM" "$P_KGM_ADMIN"
    STARTUP_1M=$STARTED_MS
    PORT[kg-1M]=$P_KGM
    PID[kg-1M]=$STARTED_PID
    KEYOF[kg-1M]=$(cat "$WORK/kg1m.key")
    say "keygate (1 worker, $KEYS_1M keys) ready in ${STARTUP_1M} ms"
}

setup_keygate_2w() {
    [[ $WORKERS2 == 1 ]] || return 0
    start_keygate kg2w 2 "$P_KG2" "$P_KG2_ADMIN"
    local ms=$STARTED_MS
    PORT[kg-2w]=$P_KG2
    PID[kg-2w]=$STARTED_PID
    KEYOF[kg-2w]=$("$KG" keys create --admin "http://$HOST:$P_KG2_ADMIN" --user bench --name load-bench --path /api/)
    say "keygate (2 workers, 1 key) ready in ${ms} ms"
}

setup_others() {
    start_nginx_auth
    PORT[nginx]=$P_NGINX
    PID[nginx]=$PID_NGINX
    KEYOF[nginx]=$KEY
    start_haproxy
    PORT[haproxy]=$P_HAPROXY
    PID[haproxy]=$PID_HAPROXY
    KEYOF[haproxy]=$KEY
}

# Right key: 200 "ok" from the upstream. Wrong key: 401 or 403.
check() {
    local name=$1 url="http://$HOST:${PORT[$1]}$PATH_Q" body code wrong
    body=$(curl -s --max-time 5 -H "Authorization: $(basic "${KEYOF[$name]}")" "$url")
    [[ $body == ok ]] || die "$name: the right key did not get the upstream's 200 \"ok\" (got: ${body:0:200})"
    [[ $name == direct ]] && return 0
    wrong=${KEYOF[$name]:0:16}$(printf 'A%.0s' {1..28})
    code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 -H "Authorization: $(basic "$wrong")" "$url")
    [[ $code == 401 || $code == 403 ]] || die "$name: a wrong key got $code, not 401/403"
    code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$url")
    [[ $code == 401 || $code == 403 ]] || die "$name: no key got $code, not 401/403"
    say "checked $name: right key 200 ok, wrong key and no key refused"
}

# ------------------------------------------------------------------ runs
RESULTS=$WORK/results.tsv
: >"$RESULTS"

# run KIND NAME CONNS SECONDS KEY [PORT PIDFORCPU]: one wrk run, one TSV line.
run() {
    local kind=$1 name=$2 conns=$3 secs=$4 key=$5 port=${6:-${PORT[$2]}} pid=${7:-${PID[$2]}}
    local out c0 c1 s0 s1
    read -r c0 s0 <<<"$(cpu_ticks "$pid")"
    out=$(wrk -t1 -c"$conns" -d"${secs}s" --latency -H "Authorization: $(basic "$key")" \
        "http://$HOST:$port$PATH_Q") || die "wrk failed against $name: $out"
    read -r c1 s1 <<<"$(cpu_ticks "$pid")"
    kill -0 "$pid" 2>/dev/null || die "$name (pid $pid) exited during its run; its logs are in $WORK (KEEP=1 keeps them)"
    printf '%s\n' "$out" >>"$WORK/wrk.log"
    record wrk "$kind" "$name" $((c1 - c0)) "$out"
    kernel_share $((s1 - s0))
    tail -1 "$RESULTS" | awk -F'\t' '{ printf "  %-8s %-12s %8s req/s  p99 %7s us  cpu %6s us/req (kernel %s)  non-2xx %s  socket errors %s\n", $1, $2, $3, $6, ($7 < 0 ? "-" : $7), ($10 < 0 ? "-" : $10), $8, $9 }' >&2
    sleep 1
}

# record TOOL KIND NAME TICKS OUTPUT: one TSV line from wrk's or h2load's
# report and the server's CPU ticks over the run.
record() {
    local tool=$1 kind=$2 name=$3 ticks=$4 out=$5
    if [[ $tool == s_time ]]; then
        # openssl s_time: connections over wall-clock seconds; no latency
        # figures, and its requests carry no key (every server refuses
        # them: the run measures TLS, not forwarding).
        printf '%s\n' "$out" | awk -v kind="$kind" -v name="$name" -v ticks="$ticks" -v hz="$CLK_TCK" '
            /connections in .* real seconds/ { reqs = $1; secs = $4 }
            END {
                cpu = (reqs == 0) ? -1 : ticks / hz * 1e6 / reqs
                printf "%s\t%s\t%.0f\t%d\t0\t0\t%.2f\t0\t0\n",
                    kind, name, (secs > 0 ? reqs / secs : 0), reqs, cpu
            }' >>"$RESULTS"
        return
    fi
    if [[ $tool == h2load ]]; then
        # h2load reports no percentiles: p50 is its mean request time and
        # p99 its maximum.
        printf '%s\n' "$out" | awk -v kind="$kind" -v name="$name" -v ticks="$ticks" -v hz="$CLK_TCK" '
            function us(v) {
                if (v ~ /us$/) return v + 0
                if (v ~ /ms$/) return (v + 0) * 1000
                if (v ~ /s$/) return (v + 0) * 1000000
                return v + 0
            }
            /^finished in/ { rps = $4 }
            /^requests:/ { reqs = $8; errs = $10 + $12 + $14 }
            /^status codes:/ { non2xx = $5 + $7 + $9 }
            /^time for request:/ { p50 = us($6); p99 = us($5) }
            END {
                cpu = (reqs == 0) ? -1 : ticks / hz * 1e6 / reqs
                printf "%s\t%s\t%.0f\t%d\t%.0f\t%.0f\t%.2f\t%d\t%d\n",
                    kind, name, rps, reqs, p50, p99, cpu, non2xx + 0, errs + 0
            }' >>"$RESULTS"
        return
    fi
    printf '%s\n' "$out" | awk -v kind="$kind" -v name="$name" -v ticks="$ticks" \
        -v hz="$CLK_TCK" -v direct="$([[ $name == direct* ]] && echo 1 || echo 0)" '
        function us(v) {
            if (v ~ /us$/) return v + 0
            if (v ~ /ms$/) return (v + 0) * 1000
            if (v ~ /s$/) return (v + 0) * 1000000
            return v + 0
        }
        /requests in/ { reqs = $1 }
        /Requests\/sec/ { rps = $2 }
        /^ +50%/ { p50 = us($2) }
        /^ +99%/ { p99 = us($2) }
        /Non-2xx/ { non2xx = $NF }
        /Socket errors/ { gsub(",", ""); errs = $4 + $6 + $8 + $10 }
        END {
            cpu = (direct || reqs == 0) ? -1 : ticks / hz * 1e6 / reqs
            printf "%s\t%s\t%.0f\t%d\t%.0f\t%.0f\t%.2f\t%d\t%d\n",
                kind, name, rps, reqs, p50, p99, cpu, non2xx + 0, errs + 0
        }' >>"$RESULTS"
}

# rounds KIND CONNS SECONDS KEYMODE NAMES...: interleaved, order rotating.
rounds() {
    local kind=$1 conns=$2 secs=$3 keymode=$4
    shift 4
    local names=("$@") n=$# r i j key
    for ((r = 0; r < ROUNDS; r++)); do
        say "$kind round $((r + 1))/$ROUNDS"
        for ((i = 0; i < n; i++)); do
            j=$(((i + r) % n))
            key=${KEYOF[${names[$j]}]}
            [[ $keymode == wrong ]] && key=${key:0:16}$(printf 'A%.0s' {1..28})
            run "$kind" "${names[$j]}" "$conns" "$secs" "$key"
        done
    done
}

# stats KIND NAME COLUMN -> "median min max"
stats() {
    awk -F'\t' -v k="$1" -v n="$2" -v c="$3" '$1 == k && $2 == n { print $c }' "$RESULTS" |
        sort -g | awk '{ v[NR] = $1 } END {
            if (NR == 0) { print "- - -"; exit }
            m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
            print m, v[1], v[NR] }'
}
fmt() { # median min max [decimals] -> "m (min-max)"
    awk -v m="$1" -v lo="$2" -v hi="$3" -v d="${4:-0}" 'BEGIN {
        if (m == "-" || m < 0) { print "-"; exit }
        f = "%." d "f"
        printf(f " (" f "-" f ")\n", m, lo, hi) }'
}
cell() { # KIND NAME COLUMN [decimals] -> "median (min-max)"
    local m lo hi
    read -r m lo hi <<<"$(stats "$1" "$2" "$3")"
    fmt "$m" "$lo" "$hi" "${4:-0}"
}
median() { stats "$@" | cut -d' ' -f1; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0 && a >= 0) printf "%.2f", a / b; else print "-" }'; }

label() {
    case $1 in
    direct) echo "straight to the upstream" ;;
    haproxy) echo "HAProxy userlist + http-request auth (nbthread 1)" ;;
    nginx) echo "nginx auth_basic {SHA} htpasswd (1 worker)" ;;
    keygate) echo "keygate, 1 worker thread, 1 key" ;;
    kg-1M) echo "keygate, 1 worker thread, $KEYS_1M keys" ;;
    kg-2w) echo "keygate, 2 worker threads, 1 key" ;;
    ab-old) echo "old: ${AB[0]}" ;;
    ab-new) echo "new: ${AB[1]}" ;;
    *) echo "$1" ;;
    esac
}

table_loaded() {
    local kind=$1
    shift
    local direct
    direct=$(median "$kind" direct 3)
    echo "| contender | req/s | share of direct | proxy CPU µs/request | of which kernel | p99 µs | non-2xx | socket errors |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|"
    local name
    for name in "$@"; do
        read -r m lo hi <<<"$(stats "$kind" "$name" 3)"
        local share="-"
        [[ -n $direct && $direct != "-" ]] && share=$(awk -v a="$m" -v b="$direct" 'BEGIN { printf "%.0f%%", 100 * a / b }')
        local nonok errs
        nonok=$(awk -F'\t' -v k="$kind" -v n="$name" '$1 == k && $2 == n { s += $8 } END { print s + 0 }' "$RESULTS")
        errs=$(awk -F'\t' -v k="$kind" -v n="$name" '$1 == k && $2 == n { s += $9 } END { print s + 0 }' "$RESULTS")
        echo "| $(label "$name") | $(fmt "$m" "$lo" "$hi") | $share | $(cell "$kind" "$name" 7 1) | $(cell "$kind" "$name" 10 1) | $(cell "$kind" "$name" 6) | $nonok | $errs |"
    done
}

table_c1() {
    echo "| contender | req/s | p50 µs | p99 µs | proxy CPU µs/request |"
    echo "|---|---:|---:|---:|---:|"
    local name
    for name in "$@"; do
        echo "| $(label "$name") | $(cell c1 "$name" 3) | $(cell c1 "$name" 5) | $(cell c1 "$name" 6) | $(cell c1 "$name" 7 1) |"
    done
}

machine_note() {
    echo "Machine: $(nproc) cores, load average before the runs: $LOAD_BEFORE; after: $(cut -d' ' -f1-3 /proc/loadavg)."
    echo "Shared machine: absolute figures move between runs; compare ratios within one run."
    echo "wrk -t1 -c$CONNS -d${DURATION}s --latency, $ROUNDS interleaved rounds, median (min-max). Request: GET $PATH_Q with Basic haplo:<44-char key>."
    local rev
    if rev=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null); then
        git -C "$REPO" diff --quiet HEAD -- src Cargo.toml Cargo.lock || rev="$rev + uncommitted changes"
    else
        rev="(not a git checkout)"
    fi
    echo "Versions: $(nginx -v 2>&1 | sed 's/.*: //'), $(haproxy -v | head -1 | cut -d' ' -f1-3), keygate $rev, $(wrk --version 2>&1 | head -1 | cut -d' ' -f1-2)."
}

# ----------------------------------------------------------- compare mode
compare() {
    local loaded=(direct haproxy nginx keygate)
    [[ -n ${PORT[kg-1M]:-} ]] && loaded+=(kg-1M)
    [[ -n ${PORT[kg-2w]:-} ]] && loaded+=(kg-2w)
    local unloaded=(direct haproxy nginx keygate)
    [[ -n ${PORT[kg-1M]:-} ]] && unloaded+=(kg-1M)
    local wrong=(haproxy nginx keygate)

    rounds loaded "$CONNS" "$DURATION" right "${loaded[@]}"
    rounds c1 1 "$C1_DURATION" right "${unloaded[@]}"
    rounds wrong "$CONNS" "$DURATION" wrong "${wrong[@]}"

    echo
    echo "## keygate vs HAProxy and nginx Basic auth ($(date -u +%Y-%m-%dT%H:%MZ))"
    echo
    machine_note
    echo
    table_loaded loaded "${loaded[@]}"
    echo
    echo "### One connection (wrk -t1 -c1 -d${C1_DURATION}s): unloaded latency"
    echo
    table_c1 "${unloaded[@]}"
    echo
    echo "### Wrong key (same id, wrong secret): refusals under load"
    echo
    table_loaded wrong "${wrong[@]}"
    echo
    echo "### Issue 6 targets, as ratios from this run (medians)"
    echo
    local kg hp ng kgc hpc kgw hpw kgwc hpwc kgm kg2
    kg=$(median loaded keygate 3)
    hp=$(median loaded haproxy 3)
    ng=$(median loaded nginx 3)
    kgc=$(median loaded keygate 7)
    hpc=$(median loaded haproxy 7)
    kgw=$(median wrong keygate 3)
    hpw=$(median wrong haproxy 3)
    kgwc=$(median wrong keygate 7)
    hpwc=$(median wrong haproxy 7)
    echo "| target | measured | met |"
    echo "|---|---:|---|"
    verdict() { awk -v v="$1" -v op="$2" -v t="$3" 'BEGIN { if (v == "-") { print "?"; exit } ok = (op == ">=") ? v >= t : v <= t; print ok ? "yes" : "**no**" }'; }
    local r
    r=$(ratio "$kg" "$hp")
    echo "| throughput ≥ 1.15 × HAProxy | $r × | $(verdict "$r" '>=' 1.15) |"
    r=$(ratio "$kg" "$ng")
    echo "| throughput ≥ 1.4 × nginx | $r × | $(verdict "$r" '>=' 1.4) |"
    r=$(ratio "$kgc" "$hpc")
    echo "| proxy CPU/request ≤ 0.8 × HAProxy | $r × | $(verdict "$r" '<=' 0.8) |"
    r=$(ratio "$kgwc" "$hpwc")
    echo "| refusal CPU/request ≤ HAProxy's | $r × | $(verdict "$r" '<=' 1.0) |"
    r=$(ratio "$kgw" "$hpw")
    echo "| refusal throughput ≥ HAProxy's | $r × | $(verdict "$r" '>=' 1.0) |"
    if [[ -n ${PORT[kg-1M]:-} ]]; then
        kgm=$(median loaded kg-1M 3)
        r=$(ratio "$kgm" "$kg")
        echo "| flat in keys: throughput at $KEYS_1M keys / at 1 key | $r × | $(verdict "$r" '>=' 0.95) (≥ 0.95 taken as flat) |"
        r=$(ratio "$(median loaded kg-1M 7)" "$kgc")
        echo "| flat in keys: CPU/request at $KEYS_1M keys / at 1 key | $r × | $(verdict "$r" '<=' 1.05) (≤ 1.05 taken as flat) |"
        echo "| start-up with $KEYS_1M keys (exec to /readyz 200) | ${STARTUP_1M} ms | $(verdict "$STARTUP_1M" '<=' 3000) |"
        echo "| resident memory with $KEYS_1M keys, after the runs (VmRSS; peak VmHWM $(hwm_mb "${PID[kg-1M]}") MB) | $(rss_mb "${PID[kg-1M]}") MB | $(verdict "$(rss_mb "${PID[kg-1M]}")" '<=' 200) |"
    fi
    if [[ -n ${PORT[kg-2w]:-} ]]; then
        kg2=$(median loaded kg-2w 3)
        echo "| scales with workers: throughput 2 workers / 1 worker | $(ratio "$kg2" "$kg") × | ? (on 2 cores wrk and the upstream hold the other core; CPU/request 2 workers / 1: $(ratio "$(median loaded kg-2w 7)" "$kgc") ×) |"
    fi
    echo
    echo "keygate 1-key RSS after the runs: $(rss_mb "${PID[keygate]}") MB."
}

# ---------------------------------------------------------------- ab mode
setup_ab() {
    local i name port admin
    for i in 0 1; do
        name=$([[ $i == 0 ]] && echo ab-old || echo ab-new)
        port=$([[ $i == 0 ]] && echo "$P_KGM" || echo "$P_KG2")
        admin=$([[ $i == 0 ]] && echo "$P_KGM_ADMIN" || echo "$P_KG2_ADMIN")
        KG=${AB[$i]} start_keygate "$name" 1 "$port" "$admin"
        PORT[$name]=$port
        PID[$name]=$STARTED_PID
        KEYOF[$name]=$("${AB[$i]}" keys create --admin "http://$HOST:$admin" --user bench --name load-bench --path /api/)
        say "$name (${AB[$i]}) ready"
    done
}

ab() {
    local names=(haproxy nginx ab-old ab-new)
    rounds loaded "$CONNS" "$DURATION" right "${names[@]}"
    rounds wrong "$CONNS" "$DURATION" wrong "${names[@]}"
    echo
    echo "## A/B: two keygate builds, 1 worker thread each ($(date -u +%Y-%m-%dT%H:%MZ))"
    echo
    machine_note
    echo
    table_loaded loaded "${names[@]}"
    echo
    echo "Wrong key (refusals):"
    echo
    table_loaded wrong "${names[@]}"
    echo
    echo "new / old (medians): throughput $(ratio "$(median loaded ab-new 3)" "$(median loaded ab-old 3)") ×," \
        "CPU/request $(ratio "$(median loaded ab-new 7)" "$(median loaded ab-old 7)") ×," \
        "refusal CPU/request $(ratio "$(median wrong ab-new 7)" "$(median wrong ab-old 7)") ×."
    echo "CPU/request against HAProxy's (medians): old $(ratio "$(median loaded ab-old 7)" "$(median loaded haproxy 7)") ×," \
        "new $(ratio "$(median loaded ab-new 7)" "$(median loaded haproxy 7)") ×;" \
        "refusals: old $(ratio "$(median wrong ab-old 7)" "$(median wrong haproxy 7)") ×," \
        "new $(ratio "$(median wrong ab-new 7)" "$(median wrong haproxy 7)") ×."
}

# -------------------------------------------------------------- tls mode
# The certificate all three serve: ECDSA P-256, as in issue 13's table.
setup_tls_cert() {
    mkdir -p "$WORK/tls"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
        -subj /CN=localhost -addext "subjectAltName=DNS:localhost,IP:$HOST" \
        -keyout "$WORK/tls/key.pem" -out "$WORK/tls/cert.pem" 2>/dev/null ||
        die "openssl could not make the test certificate"
    cat "$WORK/tls/cert.pem" "$WORK/tls/key.pem" >"$WORK/tls/haproxy.pem"
    chmod 644 "$WORK/tls/"*.pem
}

# Printed into nginx's and HAProxy's configs: a TLS listener beside the
# plain one, in tls mode only. Same auth, same upstream pool.
tls_nginx_server() {
    [[ $MODE == tls ]] || return 0
    cat <<EOF
    server {
        listen $HOST:$P_NGINX_TLS ssl http2;
        ssl_certificate $WORK/tls/cert.pem;
        ssl_certificate_key $WORK/tls/key.pem;
        ssl_protocols TLSv1.2 TLSv1.3;
        location / {
            auth_basic "keygate bench";
            auth_basic_user_file $WORK/nginx/htpasswd;
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
EOF
}

tls_haproxy_frontend() {
    [[ $MODE == tls ]] || return 0
    cat <<EOF
frontend fe_tls
    bind $HOST:$P_HAPROXY_TLS ssl crt $WORK/tls/haproxy.pem alpn h2,http/1.1 ssl-min-ver TLSv1.2
    http-request auth realm keygate-bench unless { http_auth(bench) }
    default_backend app
EOF
}

declare -A TPORT TPID
TLS_NAMES=(haproxy nginx)
setup_tls() {
    TPORT[haproxy]=$P_HAPROXY_TLS
    TPID[haproxy]=${PID[haproxy]}
    TPORT[nginx]=$P_NGINX_TLS
    TPID[nginx]=${PID[nginx]}
    local names=(keygate) bins=("$KG") ports=("$P_KGT") admins=("$P_KGT_ADMIN") i name
    if ((${#AB[@]} == 2)); then
        names=(ab-old ab-new)
        bins=("${AB[@]}")
        ports=("$P_KGT" "$P_KGT2")
        admins=("$P_KGT_ADMIN" "$P_KGT2_ADMIN")
    fi
    KG_EXTRA=$'[proxy.tls]\n'"cert = \"$WORK/tls/cert.pem\""$'\n'"key = \"$WORK/tls/key.pem\""
    for i in "${!names[@]}"; do
        name=${names[$i]}
        KG=${bins[$i]} start_keygate "$name-tls" 1 "${ports[$i]}" "${admins[$i]}"
        TPORT[$name]=${ports[$i]}
        TPID[$name]=$STARTED_PID
        KEYOF[$name-tls]=$("${bins[$i]}" keys create --admin "http://$HOST:${admins[$i]}" --user bench --name load-bench --path /api/)
        TLS_NAMES+=("$name")
    done
    KG_EXTRA=
    local url body proto
    for name in "${TLS_NAMES[@]}"; do
        url="https://$HOST:${TPORT[$name]}$PATH_Q"
        body=$(curl -sk --max-time 5 -H "Authorization: $(basic "$(tls_key "$name")")" "$url")
        [[ $body == ok ]] || die "$name over TLS: the right key did not get \"ok\" (got: ${body:0:200})"
        proto=$(curl -sk --http2 --max-time 5 -o /dev/null -w '%{http_version}' \
            -H "Authorization: $(basic "$(tls_key "$name")")" "$url")
        [[ $proto == 2 ]] || die "$name over TLS: ALPN did not give HTTP/2 (got HTTP/$proto)"
        say "checked $name over TLS: 200 ok, HTTP/2 by ALPN"
    done
}

tls_key() { echo "${KEYOF[$1-tls]:-$KEY}"; }

# run_tls KIND NAME SECONDS: one run of KIND (ka, close or h2) against the
# TLS listener of NAME.
run_tls() {
    local kind=$1 name=$2 secs=$3 port=${TPORT[$2]} pid=${TPID[$2]}
    local url="https://$HOST:$port$PATH_Q" auth out c0 c1 s0 s1 tool=wrk
    auth="Authorization: $(basic "$(tls_key "$name")")"
    read -r c0 s0 <<<"$(cpu_ticks "$pid")"
    case $kind in
    tls-ka) out=$(wrk -t1 -c"$CONNS" -d"${secs}s" --latency -H "$auth" "$url") ;;
    tls-close) out=$(wrk -t1 -c"$CLOSE_CONNS" -d"${secs}s" --latency -H "$auth" -H "Connection: close" "$url") ;;
    tls-resume)
        tool=s_time
        out=$(openssl s_time -connect "$HOST:$port" -www "$PATH_Q" -reuse -time "$secs" 2>&1)
        ;;
    h2)
        tool=h2load
        out=$(h2load -t1 -c"$H2_CONNS" -m"$H2_STREAMS" -D"$secs" -H "authorization: $(basic "$(tls_key "$name")")" "$url" 2>&1)
        ;;
    esac || die "$tool failed against $name: $out"
    read -r c1 s1 <<<"$(cpu_ticks "$pid")"
    kill -0 "$pid" 2>/dev/null || die "$name (pid $pid) exited during its run (KEEP=1 keeps its logs)"
    printf '%s\n' "$out" >>"$WORK/wrk.log"
    record "$tool" "$kind" "$name" $((c1 - c0)) "$out"
    kernel_share $((s1 - s0))
    tail -1 "$RESULTS" | awk -F'\t' '{ printf "  %-9s %-8s %8s req/s  p99 %7s us  cpu %6s us/req (kernel %s)  non-2xx %s  errors %s\n", $1, $2, $3, $6, ($7 < 0 ? "-" : $7), ($10 < 0 ? "-" : $10), $8, $9 }' >&2
    sleep 1
}

tls_mode() {
    local names=("${TLS_NAMES[@]}") kind r i n=${#TLS_NAMES[@]} kg
    for kind in $TLS_KINDS; do
        for ((r = 0; r < ROUNDS; r++)); do
            say "$kind round $((r + 1))/$ROUNDS"
            for ((i = 0; i < n; i++)); do
                run_tls "$kind" "${names[$(((i + r) % n))]}" "$DURATION"
            done
        done
    done
    echo
    echo "## TLS termination: keygate vs HAProxy and nginx ($(date -u +%Y-%m-%dT%H:%MZ))"
    echo
    machine_note
    echo "TLS: one ECDSA P-256 certificate for all three; TLS 1.3 negotiated (OpenSSL clients). keygate: rustls (ring); HAProxy and nginx: OpenSSL $(openssl version | cut -d' ' -f2)."
    echo
    local title
    for kind in $TLS_KINDS; do
        case $kind in
        tls-ka) title="HTTPS keep-alive (wrk -t1 -c$CONNS)" ;;
        tls-close) title="A full TLS handshake per request (wrk -t1 -c$CLOSE_CONNS, Connection: close)" ;;
        h2) title="HTTP/2 over ALPN (h2load -t1 -c$H2_CONNS -m$H2_STREAMS; p50 is h2load's mean, p99 its maximum)" ;;
        tls-resume) title="Resumed TLS sessions, one connection per request (openssl s_time -reuse, no key: refused by all; CPU per connection)" ;;
        esac
        echo "### $title"
        echo
        table_loaded "$kind" "${names[@]}"
        echo
        for kg in "${names[@]:2}"; do
            echo "$(label "$kg") CPU/request against HAProxy's: $(ratio "$(median "$kind" "$kg" 7)" "$(median "$kind" haproxy 7)") ×; against nginx's: $(ratio "$(median "$kind" "$kg" 7)" "$(median "$kind" nginx 7)") ×."
            echo
        done
        if [[ -n ${TPORT[ab-new]:-} ]]; then
            echo "new / old: throughput $(ratio "$(median "$kind" ab-new 3)" "$(median "$kind" ab-old 3)") ×, CPU/request $(ratio "$(median "$kind" ab-new 7)" "$(median "$kind" ab-old 7)") ×."
            echo
        fi
    done
}

# ------------------------------------------------------------- churn mode
churn() {
    local admin=$P_KGM_ADMIN name=kg-1M
    if [[ -z ${PORT[kg-1M]:-} ]]; then
        admin=$P_KG_ADMIN
        name=keygate
    fi
    cat >"$WORK/admin_client.py" <<'EOF'
# Steady admin traffic at RATE requests/s for SECONDS: "write" alternates
# POST /v1/keys and DELETE of the key it created; "read" GETs /healthz.
import http.client, json, sys, time
port, rate, seconds, mode = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
def call(method, path, body=None):
    conn.request(method, path, body=body, headers={"Content-Type": "application/json"} if body else {})
    r = conn.getresponse()
    return r.status, r.read()
lat, pending, n, bad = [], [], 0, 0
start = time.monotonic()
while True:
    due = start + n / rate
    if due - start >= seconds:
        break
    now = time.monotonic()
    if due > now:
        time.sleep(due - now)
    t0 = time.monotonic()
    if mode == "write" and n % 2 == 0:
        status, body = call("POST", "/v1/keys", json.dumps({"user": "churn", "name": "churn %d" % n, "path": "/api/"}))
        if status == 201:
            pending.append(json.loads(body)["id"])
        else:
            bad += 1
    elif mode == "write":
        status, _ = call("DELETE", "/v1/keys/" + pending.pop(0)) if pending else (204, b"")
        bad += status != 204
    else:
        status, _ = call("GET", "/healthz")
        bad += status != 200
    lat.append(time.monotonic() - t0)
    n += 1
for key_id in pending:
    call("DELETE", "/v1/keys/" + key_id)
lat.sort()
pct = lambda p: lat[min(len(lat) - 1, int(len(lat) * p))] * 1e3 if lat else 0
print("%s %d requests in %.1f s (%.1f/s), failed %d, latency p50 %.2f ms p99 %.2f ms max %.2f ms"
      % (mode, n, time.monotonic() - start, n / (time.monotonic() - start), bad, pct(0.5), pct(0.99), lat[-1] * 1e3 if lat else 0))
EOF
    local r variant kpid=${PID[$name]}
    for ((r = 0; r < ROUNDS; r++)); do
        say "churn round $((r + 1))/$ROUNDS"
        for variant in quiet read write; do
            if [[ $variant != quiet ]]; then
                python3 "$WORK/admin_client.py" "$admin" 50 "$DURATION" "$variant" >>"$WORK/admin.log" 2>&1 &
                ADMIN_PID=$!
            fi
            run churn "$variant" "$CONNS" "$DURATION" "${KEYOF[$name]}" "${PORT[$name]}" "$kpid"
            if [[ -n $ADMIN_PID ]]; then
                wait "$ADMIN_PID" || true
                ADMIN_PID=
            fi
        done
    done
    echo
    echo "## keygate p99 under admin writes ($(label "$name"))"
    echo
    machine_note
    echo
    echo "| admin traffic during the run | req/s | p50 µs | p99 µs | proxy CPU µs/request |"
    echo "|---|---:|---:|---:|---:|"
    for variant in quiet read write; do
        local what
        case $variant in
        quiet) what="none" ;;
        read) what="50 GET /healthz per s (control: a client, no writes)" ;;
        write) what="50 key writes per s (create / revoke alternately)" ;;
        esac
        echo "| $what | $(cell churn "$variant" 3) | $(cell churn "$variant" 5) | $(cell churn "$variant" 6) | $(cell churn "$variant" 7 1) |"
    done
    echo
    local q r w
    q=$(median churn quiet 6)
    r=$(median churn read 6)
    w=$(median churn write 6)
    echo "p99 with writes / without: $(ratio "$w" "$q") × (target ≤ 1.10)."
    # On a machine whose cores wrk, the upstream and keygate already fill,
    # any extra process raises p99; the read control separates that from
    # the cost of the writes themselves.
    echo "p99 with writes / with the read-only control client: $(ratio "$w" "$r") ×."
    echo
    echo "Admin client, per run:"
    echo
    sed 's/^/    /' "$WORK/admin.log"
}

# ----------------------------------------------------------- profile mode
profile() {
    local pid=${PID[keygate]} data=$WORK/perf.data
    say "profiling keygate (pid $pid) for ${DURATION}s under wrk -c$CONNS"
    perf record -q -F 1999 -o "$data" -p "$pid" -- sleep "$DURATION" 2>"$WORK/perf.err" &
    local perf_pid=$!
    run profile keygate "$CONNS" "$DURATION" "${KEYOF[keygate]}"
    wait "$perf_pid" || die "perf record failed: $(cat "$WORK/perf.err")"
    perf report -i "$data" --no-children --sort dso,symbol --stdio -g none 2>/dev/null |
        grep '%' | grep -v '^#' | sed 's/ *$//' >"$WORK/symbols.txt" || true
    echo
    echo "## keygate profile (1 worker, wrk -t1 -c$CONNS, ${DURATION}s; perf record -F 1999, self time)"
    echo
    machine_note
    echo
    echo "By area:"
    echo
    echo '```'
    awk '{
        pct = $1; sub(/%/, "", pct); dso = $2
        sym = $0; sub(/^[^]]*\] /, "", sym); sub(/^</, "", sym)
        if (dso ~ /kernel/) area = "kernel (syscalls, TCP, scheduler)"
        else if (dso ~ /^libc/ && sym ~ /malloc|free|_int_|consolidate|tcache|realloc/) area = "libc malloc/free"
        else if (dso ~ /^libc/ && sym ~ /mem(cpy|move|set|cmp)/) area = "libc memcpy/memmove"
        else if (dso ~ /^libc/) area = "libc other (syscall wrappers)"
        else if (sym ~ /^[a-z_0-9]+::/) { area = sym; sub(/::.*/, "", area); area = "rust: " area }
        else area = dso ": " substr(sym, 1, 30)
        t[area] += pct
    } END { for (a in t) printf "%6.2f%%  %s\n", t[a], a }' "$WORK/symbols.txt" | sort -rn | head -20 || true
    echo '```'
    echo
    echo "Hottest symbols:"
    echo
    echo '```'
    head -30 "$WORK/symbols.txt" | cut -c1-150 || true
    echo '```'
    echo
    echo "### syscalls and context switches per request (perf stat, same load)"
    echo
    echo "| server | req/s | syscalls/request | context switches/request | CPU µs/request |"
    echo "|---|---:|---:|---:|---:|"
    local name pids st
    for name in haproxy nginx keygate; do
        pids=${PID[$name]}
        [[ $name == nginx ]] && pids=$(pgrep -P "${PID[nginx]}" | paste -sd, -)
        st=$WORK/stat-$name
        perf stat -x, -e raw_syscalls:sys_enter,context-switches -p "$pids" -o "$st" -- sleep "$DURATION" &
        perf_pid=$!
        run stat "$name" "$CONNS" "$DURATION" "${KEYOF[$name]}"
        wait "$perf_pid" || true
        awk -F'\t' -v n="$name" -v f="$st" 'BEGIN {
                while ((getline line < f) > 0) {
                    split(line, c, ",")
                    if (c[3] ~ /sys_enter/) sys = c[1]
                    if (c[3] ~ /context-switches/) cs = c[1]
                }
            }
            $1 == "stat" && $2 == n { reqs = $4; rps = $3; cpu = $7 }
            END { printf "| %s | %.0f | %.2f | %.3f | %.1f |\n", n, rps, sys / reqs, cs / reqs, cpu }' "$RESULTS"
    done
    if [[ $KEEP == 1 ]]; then
        say "perf data: $data (perf report -i $data)"
    fi
}

# ------------------------------------------------------------------- main
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
[[ $MODE == tls ]] && setup_tls_cert
setup_common
setup_keygate_1
[[ $MODE == ab ]] && setup_ab
[[ $MODE != profile && $MODE != ab && $MODE != tls ]] && setup_keygate_1m
[[ $MODE == compare || $MODE == all ]] && setup_keygate_2w
[[ $MODE != churn ]] && setup_others
for name in "${!PORT[@]}"; do check "$name"; done
# Warm-up: fill the pools and caches of every server.
for name in "${!PORT[@]}"; do
    wrk -t1 -c"$CONNS" -d1s -H "Authorization: $(basic "${KEYOF[$name]}")" "http://$HOST:${PORT[$name]}$PATH_Q" >/dev/null
done
[[ $MODE == tls ]] && setup_tls
[[ $MODE == compare || $MODE == all ]] && compare
[[ $MODE == churn || $MODE == all ]] && churn
[[ $MODE == profile ]] && profile
[[ $MODE == ab ]] && ab
[[ $MODE == tls ]] && tls_mode
exit 0
