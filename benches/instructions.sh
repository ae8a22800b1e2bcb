#!/usr/bin/env bash
# benches/instructions.sh: user-space instructions per request of keygate
# builds, counted by callgrind (issue 13, item 4).
#
# Why: on a shared machine, CPU time per request moves by 10-15% between
# runs of the same binary (other builds steal caches and cores), which
# hides a 10% change. Instructions retired are nearly immune to that; this
# machine's VM exposes no hardware counters, so valgrind's callgrind
# counts them instead. It sees user space only (the kernel's share, about
# 60% of keygate's CPU here, is the same for every build), and counts
# `rep movs`/`rep stos` per iteration, so memcpy and memset weigh more in
# its totals than on a real core; the report gives totals with and without
# them.
#
# What it does, for each binary (interleaved, ROUNDS times): an nginx
# upstream answering "ok", keygate (1 worker) under callgrind with
# instrumentation off, a key, a 3 s warm-up, then instrumentation on for
# a timed `wrk -t1 -c$CONNS` run (right key, then wrong key), off again,
# and Ir / requests.
#
# PROTO=h2 measures HTTP/2 over TLS instead: keygate serves a throwaway
# ECDSA P-256 certificate, the load is `h2load -t1 -c$CONNS -m8`, and the
# TLS handshakes of the timed run (h2load opens its connections inside
# it) are subtracted, so the figure is the steady state per request.
# KEEP=1 keeps the work directory (profiles for callgrind_annotate).
#
#   benches/instructions.sh OLD_BIN NEW_BIN [MORE_BINS...]
#   ROUNDS=2 SECS=8 CONNS=16 BASE_PORT=18600 PROTO=h1|h2 KEEP=
set -euo pipefail
(($# >= 1)) || {
    echo "usage: $0 KEYGATE_BIN..." >&2
    exit 2
}
ROUNDS=${ROUNDS:-2}
SECS=${SECS:-8}
CONNS=${CONNS:-16}
BASE_PORT=${BASE_PORT:-18600}
PATH_Q="/api/bench/items?page=2"
PROTO=${PROTO:-h1}
tools=(valgrind callgrind_control nginx curl)
case $PROTO in
h1) tools+=(wrk) ;;
h2) tools+=(h2load openssl) ;;
*)
    echo "instructions.sh: PROTO is h1 or h2" >&2
    exit 2
    ;;
esac
for tool in "${tools[@]}"; do
    command -v "$tool" >/dev/null || {
        echo "instructions.sh: needs $tool (apt-get install valgrind nginx-light wrk curl nghttp2-client openssl)" >&2
        exit 1
    }
done
UP=$BASE_PORT KG=$((BASE_PORT + 1)) ADM=$((BASE_PORT + 2))
WORK=$(mktemp -d /tmp/kg-instr.XXXXXX)
PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    [[ -n ${KEEP:-} ]] || rm -rf "$WORK"
}
trap cleanup EXIT

mkdir -p "$WORK/up"
cat >"$WORK/up/nginx.conf" <<EOC
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
    server { listen 127.0.0.1:$UP; location / { return 200 "ok"; } }
}
EOC
nginx -e "$WORK/up/error.log" -c "$WORK/up/nginx.conf" -g 'daemon off;' &
PIDS+=($!)

SCHEME=http TLS_CONF=""
if [[ $PROTO == h2 ]]; then
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
        -subj /CN=localhost -keyout "$WORK/key.pem" -out "$WORK/cert.pem" 2>/dev/null
    SCHEME=https
    TLS_CONF=$'[proxy.tls]\n'"cert = \"$WORK/cert.pem\""$'\n'"key = \"$WORK/key.pem\""
fi

# load SECONDS AUTH: the load for one run; prints the number of requests
# answered.
load() {
    local url="$SCHEME://127.0.0.1:$KG$PATH_Q" out
    if [[ $PROTO == h2 ]]; then
        out=$(h2load -t1 -c"$CONNS" -m8 -D"$1" -H "$2" "$url")
        printf '%s\n' "$out" | awk '/^requests:/ { print $6 }'
    else
        out=$(wrk -t1 -c"$CONNS" -d"${1}s" -H "$2" "$url")
        printf '%s\n' "$out" | awk '/requests in/ { print $1 }'
    fi
}

# measure BIN KIND: prints "Ir requests memfns".
measure() {
    local bin=$1 kind=$2 dir vg key auth out reqs file
    dir=$(mktemp -d "$WORK/kg.XXXX")
    cat >"$dir/kg.toml" <<EOC
[proxy]
listen = "127.0.0.1:$KG"
upstream = "http://127.0.0.1:$UP"
worker_threads = 1
$TLS_CONF
[admin]
listen = "127.0.0.1:$ADM"
[store]
path = "$dir/store.redb"
[throttle]
max_failures = 4294967295
[log]
access = false
EOC
    RUST_LOG=warn valgrind --tool=callgrind --instr-atstart=no \
        --callgrind-out-file="$dir/cg.out" "$bin" serve --config "$dir/kg.toml" >"$dir/log" 2>&1 &
    vg=$!
    local deadline=$((SECONDS + 120))
    until curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$ADM/readyz"; do
        kill -0 "$vg" 2>/dev/null || { cat "$dir/log" >&2; exit 1; }
        ((SECONDS < deadline)) || { echo "keygate not ready" >&2; exit 1; }
        sleep 0.1
    done
    key=$("$bin" keys create --admin "http://127.0.0.1:$ADM" --user bench --name bench --path /api/ 2>/dev/null)
    [[ $kind == wrong ]] && key=${key:0:16}$(printf 'A%.0s' {1..28})
    auth="authorization: Basic $(printf 'haplo:%s' "$key" | base64 -w0)"
    load 3 "$auth" >/dev/null
    callgrind_control -i on "$vg" >/dev/null 2>&1
    reqs=$(load "$SECS" "$auth")
    callgrind_control -i off "$vg" >/dev/null 2>&1
    callgrind_control -d "$vg" >/dev/null 2>&1
    kill "$vg"
    wait "$vg" 2>/dev/null || true
    file=$(ls -S "$dir"/cg.out* | head -1)
    local ir mem
    ir=$(awk '/^totals:/ { print $2 }' "$file")
    if [[ $PROTO == h2 ]]; then
        local handshakes
        handshakes=$(callgrind_annotate --inclusive=yes "$file" 2>/dev/null |
            awk '/MidHandshake<.*>::poll/ { gsub(",", "", $1); print $1; exit }')
        ir=$((ir - ${handshakes:-0}))
    fi
    mem=$(callgrind_annotate --threshold=100 "$file" 2>/dev/null |
        awk '/__mem(cpy|move|set)/ { gsub(",", "", $1); s += $1 } END { print s + 0 }')
    echo "$ir $reqs $mem"
}

RESULTS=$WORK/results
: >"$RESULTS"
for ((r = 1; r <= ROUNDS; r++)); do
    for kind in right wrong; do
        for bin in "$@"; do
            read -r ir reqs mem <<<"$(measure "$bin" "$kind")"
            echo "$bin $kind $ir $reqs $mem" >>"$RESULTS"
            awk -v b="$bin" -v k="$kind" -v i="$ir" -v n="$reqs" -v m="$mem" -v r="$r" 'BEGIN {
                printf "round %d %-6s %s: %d requests, %.0f Ir/request, %.0f without mem*\n", r, k, b, n, i / n, (i - m) / n }' >&2
        done
    done
done

echo
echo "## User-space instructions per request (callgrind; $(date -u +%Y-%m-%dT%H:%MZ))"
echo
echo "$PROTO: $([[ $PROTO == h2 ]] && echo "h2load -t1 -c$CONNS -m8 -D$SECS over TLS, handshakes subtracted" || echo "wrk -t1 -c$CONNS -d${SECS}s") per measurement, $ROUNDS rounds, mean over rounds. \"without mem*\" leaves out memcpy/memmove/memset, which callgrind counts per byte-ish iteration."
echo
echo "| build | right key: Ir/request | without mem* | wrong key: Ir/request | without mem* |"
echo "|---|---:|---:|---:|---:|"
for bin in "$@"; do
    awk -v b="$bin" '$1 == b { ir[$2] += $3; n[$2] += $4; m[$2] += $5 } END {
        printf "| %s | %.0f | %.0f | %.0f | %.0f |\n", b,
            ir["right"] / n["right"], (ir["right"] - m["right"]) / n["right"],
            ir["wrong"] / n["wrong"], (ir["wrong"] - m["wrong"]) / n["wrong"] }' "$RESULTS"
done
