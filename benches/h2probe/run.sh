#!/usr/bin/env bash
# benches/h2probe/run.sh: the issue-14 probes against a TLS keygate with a
# slow upstream, loopback only.
#
#   bash benches/h2probe/run.sh [all|reset|idle|sweep|hold]...    (default: all)
#
# Starts in a temp dir, on 127.0.0.1 only:
#   upstream  benches/h2probe/upstream.py, HTTP/1.1, sleeps SLEEP (2) s per
#             request, counts requests in flight (GET /__stats on it)
#   keygate   [proxy.tls] with a throwaway openssl EC certificate,
#             [proxy.http2] max_concurrent_streams = 100,
#             header_timeout_secs = 5, trusted_proxies = ["127.0.0.1"]
#             (so 127.0.0.2 is an untrusted peer), access log to a file
# Probes (benches/h2probe/probe.py, Python hyperframe + hpack from PyPI's h2):
#   reset  batch of 100 HEADERS, ~5 ms, RST_STREAM the batch, for 11 s; then
#          the classic back-to-back HEADERS+RST_STREAM rapid reset. After
#          each: upstream max in flight and total (after the sleeps end).
#   idle   an h2 connection that opens no stream (answering PINGs; once
#          also sending a PING every 1 s); a HEADERS without END_HEADERS
#          and no CONTINUATION. Time until GOAWAY / close, and the code.
#   sweep  Host / :authority values, client-address header spellings from
#          a trusted and an untrusted peer, Upgrade / Connection variants,
#          :authority vs host, empty cookie crumbs: keygate's status and
#          what the upstream received (upstream restarted with no sleep).
# Needs python3 with h2 (pip install h2), openssl, curl. KG_BIN= uses a
# given keygate binary instead of building. BASE_PORT=18700, KEEP=1 keeps
# the temp dir (keygate's log, raw JSON lines).
set -euo pipefail
STEPS=("$@")
((${#STEPS[@]})) || STEPS=(all)
want() { [[ " ${STEPS[*]} " == *" all "* || " ${STEPS[*]} " == *" $1 "* ]]; }
BASE_PORT=${BASE_PORT:-18700}
SLEEP=${SLEEP:-2}
KEEP=${KEEP:-0}
HOST=127.0.0.1
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
say() { printf '%s\n' "$*" >&2; }
die() {
    say "h2probe: $*"
    exit 1
}
python3 -c 'import hyperframe, hpack' 2>/dev/null || pip install -q h2
if [[ -n ${KG_BIN:-} ]]; then KG=$KG_BIN; else
    (cd "$REPO" && cargo build --release --quiet --bin keygate)
    KG=$REPO/target/release/keygate
fi
WORK=$(mktemp -d /tmp/kg-h2probe.XXXXXX)
PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    if [[ $KEEP == 1 ]]; then say "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
P_UP=$BASE_PORT
P_KG=$((BASE_PORT + 1))
P_ADMIN=$((BASE_PORT + 2))

start_upstream() { # SLEEP
    [[ -n ${UP_PID:-} ]] && { kill "$UP_PID" 2>/dev/null || true; wait "$UP_PID" 2>/dev/null || true; }
    python3 "$HERE/upstream.py" "$P_UP" "$1" >>"$WORK/upstream.log" 2>&1 &
    UP_PID=$!
    PIDS+=("$UP_PID")
    for _ in $(seq 100); do curl -s -o /dev/null "http://$HOST:$P_UP/__stats" && return 0; sleep 0.05; done
    die "upstream did not start"
}
stats() { curl -s --max-time 5 "http://$HOST:$P_UP/__stats"; }

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -subj /CN=localhost -addext subjectAltName=DNS:localhost \
    -keyout "$WORK/key.pem" -out "$WORK/cert.pem" 2>/dev/null
cat >"$WORK/kg.toml" <<EOF
[proxy]
listen = "$HOST:$P_KG"
upstream = "http://$HOST:$P_UP"
header_timeout_secs = 5
trusted_proxies = ["127.0.0.1"]
[proxy.tls]
cert = "$WORK/cert.pem"
key = "$WORK/key.pem"
[proxy.http2]
max_concurrent_streams = 100
[admin]
listen = "$HOST:$P_ADMIN"
[store]
path = "$WORK/store.redb"
EOF
start_upstream "$SLEEP"
RUST_LOG=info "$KG" serve --config "$WORK/kg.toml" >"$WORK/access.log" 2>"$WORK/keygate.err" &
KG_PID=$!
PIDS+=("$KG_PID")
for _ in $(seq 200); do
    [[ $(curl -s -o /dev/null -w '%{http_code}' "http://$HOST:$P_ADMIN/readyz") == 200 ]] && break
    kill -0 "$KG_PID" || die "keygate exited: $(cat "$WORK/keygate.err")"
    sleep 0.05
done
KEY=$("$KG" keys create --admin "http://$HOST:$P_ADMIN" --user probe --name h2probe --path /api/)
code=$(curl -s -o /dev/null -w '%{http_code}' --http2 -k -u "haplo:$KEY" "https://localhost:$P_KG/api/check" --resolve "localhost:$P_KG:$HOST")
[[ $code == 200 ]] || die "a right key over h2 got $code"
say "keygate $(git -C "$REPO" rev-parse --short HEAD) pid $KG_PID on https://$HOST:$P_KG, upstream sleeps ${SLEEP}s"
PROBE="python3 $HERE/probe.py"

if want reset; then
    curl -s "http://$HOST:$P_UP/__reset" >/dev/null
    echo "== B1 reset-batch: $PROBE reset-batch --port $P_KG --key \$KEY --batch 100 --wait-ms 5 --secs 11"
    $PROBE reset-batch --port "$P_KG" --key "$KEY" --batch 100 --wait-ms 5 --secs 11 | tee -a "$WORK/probes.jsonl"
    sleep $(awk -v s="$SLEEP" 'BEGIN { print s + 1.5 }')
    echo "   upstream: $(stats)"
    echo "   keygate still serves: $(curl -s -o /dev/null -w '%{http_code}' --http2 -k -u "haplo:$KEY" "https://localhost:$P_KG/api/after" --resolve "localhost:$P_KG:$HOST")"
    curl -s "http://$HOST:$P_UP/__reset" >/dev/null
    echo "== B1 rapid reset: $PROBE rapid-reset --port $P_KG --key \$KEY --streams 20000 --secs 11"
    $PROBE rapid-reset --port "$P_KG" --key "$KEY" --streams 20000 --secs 11 | tee -a "$WORK/probes.jsonl"
    sleep $(awk -v s="$SLEEP" 'BEGIN { print s + 1.5 }')
    echo "   upstream: $(stats)"
    curl -s "http://$HOST:$P_UP/__reset" >/dev/null
    for w in ${WAITS:-1 20 50 200 2000}; do
        curl -s "http://$HOST:$P_UP/__reset" >/dev/null
        echo "== B1 reset-batch variant: $PROBE reset-batch --port $P_KG --key \$KEY --batch 100 --wait-ms $w --secs 11"
        $PROBE reset-batch --port "$P_KG" --key "$KEY" --batch 100 --wait-ms "$w" --secs 11 | tee -a "$WORK/probes.jsonl"
        sleep $(awk -v s="$SLEEP" 'BEGIN { print s + 1.5 }')
        echo "   upstream: $(stats)"
    done
    curl -s "http://$HOST:$P_UP/__reset" >/dev/null
    echo "== B1 reset-batch, a new connection after each GOAWAY: $PROBE reset-batch --port $P_KG --key \$KEY --batch 100 --wait-ms 5 --secs 3 --connections 20"
    $PROBE reset-batch --port "$P_KG" --key "$KEY" --batch 100 --wait-ms 5 --secs 3 --connections 20 | tee -a "$WORK/probes.jsonl"
    sleep $(awk -v s="$SLEEP" 'BEGIN { print s + 1.5 }')
    echo "   upstream: $(stats)"
    echo "   keygate CPU so far: $(awk '{ sub(/^.*\) /, ""); print ($12 + $13) / 100 " s" }' /proc/$KG_PID/stat), RSS $(awk '/^VmRSS/ {print $2/1024 " MB"}' /proc/$KG_PID/status)"
fi
if want idle; then
    echo "== B2 idle: $PROBE idle --port $P_KG --secs 30"
    $PROBE idle --port "$P_KG" --secs 30 | tee -a "$WORK/probes.jsonl"
    echo "== B2 idle, client PING every 1 s: $PROBE idle --port $P_KG --secs 30 --client-ping 1"
    $PROBE idle --port "$P_KG" --secs 30 --client-ping 1 | tee -a "$WORK/probes.jsonl"
    echo "== B2 open header block: $PROBE open-headers --port $P_KG --key \$KEY --secs 30"
    $PROBE open-headers --port "$P_KG" --key "$KEY" --secs 30 | tee -a "$WORK/probes.jsonl"
    echo "== B2 open header block, client PING every 1 s"
    $PROBE open-headers --port "$P_KG" --key "$KEY" --secs 30 --client-ping 1 | tee -a "$WORK/probes.jsonl"
fi
if want sweep; then
    start_upstream 0
    echo "== B3 sweep: $PROBE sweep --port $P_KG --key \$KEY --trusted-src 127.0.0.1 --untrusted-src 127.0.0.2"
    $PROBE sweep --port "$P_KG" --key "$KEY" --trusted-src 127.0.0.1 --untrusted-src 127.0.0.2 >"$WORK/sweep.jsonl"
    $PROBE table --sweep "$WORK/sweep.jsonl" --access "$WORK/access.log"
fi
if [[ " ${STEPS[*]} " == *" hold "* ]]; then
    # For probes by hand: the services stay up for HOLD seconds (600).
    printf 'PORT=%s\nUPSTREAM=%s\nADMIN=%s\nKEY=%s\n' "$P_KG" "$P_UP" "$P_ADMIN" "$KEY" >"$WORK/env"
    say "holding for ${HOLD:-600} s: source $WORK/env"
    sleep "${HOLD:-600}" &
    wait $!
fi
if [[ $KEEP == 1 ]]; then cp "$WORK/access.log" "$WORK/access.keep" 2>/dev/null || true; fi
