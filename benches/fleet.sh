#!/usr/bin/env bash
# benches/fleet.sh: what fleet mode (SPEC 10, issue 11 item 8) costs, on
# this machine, loopback only.
#
#   bash benches/fleet.sh [all|propagation|join|cpu]...   (default: all)
#
# Starts, in a temp dir, on 127.0.0.1 only:
#   postgres   a throwaway cluster (Debian's PostgreSQL binaries, run as the
#              postgres user via runuser, fsync=off), as tests/support/
#              postgres.rs and benches/haplo.sh do; one database per step
#              (one fleet per database), owned by the login role `keygate`
#              (it creates its keygate_* tables itself).
#   upstream   nginx, one worker, answering 200 "ok" to everything (`return
#              200`, as benches/load.sh does: on this machine it is about
#              twice as fast as serving the same 2 bytes from a file, and
#              the upstream shares the 2 cores with the proxy measured).
#   keygates   each with its own config: own [store] path, `database =
#              "postgres://keygate:...@127.0.0.1:PORT/DB"` (none for the
#              single-node contender), worker_threads = 1, [log] access =
#              false, throttle.max_failures = 4294967295 (the propagation
#              probe makes 1,000 refusals from 127.0.0.1 per replica; the
#              throttle must not answer them instead of the key check).
# Steps (each prints its figures and the commands behind them):
#   propagation  replicas A, B, C. For each gap in PROP_GAPS: 1,000 keys
#                created through A (benches/fleet/propagation.rs create),
#                wait until all three /readyz fleet.synced_seq agree, then
#                for each key: B and C polled with it (one kept-alive
#                connection each, GAP_US between polls) until both answer
#                200, DELETE on A, time from A's 204 until B and C each
#                answer 403 (benches/fleet/propagation.rs revoke). p50/p99/
#                max for B and C; A's DELETE round trip p50/p99. The first
#                gap is the headline; the others show how much the polling
#                itself moves the figures.
#   join         seeds 1,000,000 keys: `cargo bench --bench scale -- --seed`
#                writes a redb store (or SEED_STORE=FILE reuses one seeded
#                that way, SEED_KEY its key file), a keygate S opens a copy
#                of it against the empty fleet database and uploads its keys
#                (replica.rs `join`: one append of 1,000,000 changes);
#                timed until S's /readyz is 200. Then JOIN_ROUNDS times:
#                (a) replica J with an empty directory, exec until /readyz
#                200 (it copies the table from PostgreSQL), VmRSS/VmHWM at
#                that moment and after SETTLE s; the seeded key answers 200
#                through J; (b) J stopped (SIGTERM) and restarted on its
#                warm redb file: the same figures. A single-node keygate
#                opening the seeded file is timed alongside, for reference.
#                Then, at 1,000,000 keys, the propagation probe again with
#                JOIN_PROP_KEYS keys (0: skip) and the first PROP_GAPS gap:
#                S (restarted warm) as A, J (warm) as B, K (a third replica,
#                joined with an empty file) as C.
#   cpu          plain keygate (no database) vs one replica of a fleet, same
#                config otherwise, and a second plain keygate as a control
#                (what two identical processes differ by here); wrk -t1 -c64
#                -d${DURATION}s --latency with a valid key, ROUNDS rounds,
#                the order rotating each round; CPU us/request from
#                /proc/PID/stat (utime+stime, all threads); postgres's CPU
#                (all its processes) during each run too.
# Needs: wrk, nginx, curl, postgresql, python3, rustc (apt-get install -y
# wrk nginx-light curl postgresql; rustc from the toolchain that builds
# keygate). Installs the Debian packages if missing. Builds keygate unless
# KG_BIN is set, and copies the binary into the temp dir, so a build
# during the run does not change it.
#
# The machine is shared and has 2 cores: wrk, nginx, postgres and the
# keygates compete for them, so only ratios within one run mean anything.
#
# One run (0ddaa1d, this 2-core shared machine, about 7 minutes; ROUNDS=7
# for the CPU line):
#   propagation, 1,000 revocations, gap 200 us: B p50 0.35 / p99 1.8 / max
#     5.0 ms, C 0.40 / 1.6 / 4.4 ms after A's 204; A's DELETE p50 3.7 /
#     p99 5.9 ms. At 1,000,000 keys: B 0.44 / 2.0 / 2.5 ms, C 0.41 / 2.0 /
#     2.4 ms; A's DELETE 4.4 / 9.1 ms.
#   join at 1,000,000 keys: empty file 6.9-7.7 s to ready, VmRSS 332-335 MB
#     (VmHWM 733 MB), staying there until a restart; warm file 1.8-2.1 s,
#     178 MB (a single node on the same keys: 1.8 s, 178 MB). Seeding the
#     empty fleet database from a 1M-key file: 22.7 s, and that replica
#     stays at 1.1 GB resident (VmHWM 1.5 GB).
#   forwarding CPU, fleet replica / single node: 0.97 (control, a second
#     single node: 0.96); per-round ratios spread 0.82-1.16 either way.
#
# Settings: PROP_KEYS=1000 PROP_GAPS="200 1000 0" ROUNDS=3 DURATION=10
#   JOIN_KEYS=1000000 JOIN_ROUNDS=2 SETTLE=5 SEED_STORE= SEED_KEY=
#   JOIN_PROP_KEYS=1000 BASE_PORT=18700 KEEP=0 KG_BIN=
set -euo pipefail

PROP_KEYS=${PROP_KEYS:-1000}
PROP_GAPS=${PROP_GAPS:-"200 1000 0"}
JOIN_PROP_KEYS=${JOIN_PROP_KEYS:-1000}
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
JOIN_KEYS=${JOIN_KEYS:-1000000}
JOIN_ROUNDS=${JOIN_ROUNDS:-2}
SETTLE=${SETTLE:-5}
BASE_PORT=${BASE_PORT:-18700}
KEEP=${KEEP:-0}
HOST=127.0.0.1
STEPS=("$@")
((${#STEPS[@]})) || STEPS=(all)
want() { [[ " ${STEPS[*]} " == *" all "* || " ${STEPS[*]} " == *" $1 "* ]]; }

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
say() { printf '%s\n' "$*" >&2; }
die() {
    say "fleet.sh: $*"
    exit 1
}

need=()
command -v wrk >/dev/null || need+=(wrk)
command -v nginx >/dev/null || need+=(nginx-light)
command -v curl >/dev/null || need+=(curl)
command -v python3 >/dev/null || need+=(python3)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
if ((${#need[@]})); then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
command -v rustc >/dev/null || die "rustc is needed for benches/fleet/propagation.rs"
PG_BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)

WORK=$(mktemp -d /tmp/kg-fleet.XXXXXX)
chmod 755 "$WORK"
PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    if [[ $KEEP == 1 ]]; then say "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

cd "$REPO"
if [[ -z ${KG_BIN:-} ]]; then
    cargo build --release --quiet --bin keygate
    KG_BIN=$REPO/target/release/keygate
fi
cp "$KG_BIN" "$WORK/keygate"
KG=$WORK/keygate
rustc -O --edition 2021 benches/fleet/propagation.rs -o "$WORK/propagation"

P_PG=$BASE_PORT
P_UP=$((BASE_PORT + 1))
# Replicas: proxy port, admin port = proxy + 1.
P_A=$((BASE_PORT + 2)) P_B=$((BASE_PORT + 4)) P_C=$((BASE_PORT + 6))
P_S=$((BASE_PORT + 8)) P_J=$((BASE_PORT + 10)) P_R=$((BASE_PORT + 12))
P_PLAIN=$((BASE_PORT + 14)) P_FL=$((BASE_PORT + 16)) P_K=$((BASE_PORT + 18))
for port in $(seq "$BASE_PORT" $((BASE_PORT + 19))); do
    ss -Hltn "sport = :$port" | grep -q . && die "port $port is in use; set BASE_PORT"
done
CLK_TCK=$(getconf CLK_TCK)
cpu_ticks() { awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"; }
pg_ticks() { # the cluster: postmaster (with its reaped children) and live backends
    local pm total p
    pm=$(head -1 "$PGDIR/data/postmaster.pid")
    total=$(awk '{ sub(/^.*\) /, ""); print $12 + $13 + $14 + $15 }' "/proc/$pm/stat")
    for p in $(pgrep -P "$pm" || true); do
        total=$((total + $(awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$p/stat" 2>/dev/null || echo 0)))
    done
    echo "$total"
}
basic() { printf 'Basic %s' "$(printf 'haplo:%s' "$1" | base64 -w0)"; }
ms_now() { echo $(($(date +%s%N) / 1000000)); }
code_of() { curl -s -o /dev/null -w '%{http_code}' --max-time 5 -H "Authorization: $(basic "$2")" "http://$HOST:$1/api/check"; }
kb() { awk -v f="$2" '$1 == f":" { print $2 }' "/proc/$1/status"; }
readyz() { curl -s --max-time 5 "http://$HOST:$1/readyz"; }
json() { python3 -c 'import json,sys; d=json.load(sys.stdin); print(eval(sys.argv[1], {}, {"d": d}))' "$1"; }

echo "# benches/fleet.sh: $(date -u +%FT%TZ), repo HEAD $(git -C "$REPO" rev-parse --short HEAD) (binary: $KG_BIN, copied to $KG)"
echo "machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg) at start"

# ------------------------------------------------------------- postgres
PGDIR=$WORK/pg
mkdir -p "$PGDIR/sock"
chown -R postgres: "$PGDIR"
PW=kg$RANDOM$RANDOM$RANDOM
runuser -u postgres -- "$PG_BIN/initdb" -D "$PGDIR/data" -U postgres --auth-local=trust \
    --auth-host=scram-sha-256 --no-sync --no-instructions -E UTF8 --locale=C >/dev/null
runuser -u postgres -- "$PG_BIN/postgres" -D "$PGDIR/data" -p "$P_PG" -k "$PGDIR/sock" \
    -c listen_addresses=$HOST -c fsync=off -c full_page_writes=off -c shared_buffers=128MB \
    -c max_connections=100 >"$PGDIR/log" 2>&1 &
PIDS+=($!)
for _ in $(seq 300); do
    "$PG_BIN/pg_isready" -q -h $HOST -p "$P_PG" && break
    sleep 0.1
done
"$PG_BIN/pg_isready" -q -h $HOST -p "$P_PG" || die "postgres did not start: $(cat "$PGDIR/log")"
sql() { "$PG_BIN/psql" -XqAt -v ON_ERROR_STOP=1 -U postgres -h "$PGDIR/sock" -p "$P_PG" -d "${DB:-postgres}" -c "$1"; }
DB=postgres sql "CREATE ROLE keygate LOGIN PASSWORD '$PW'"
for db in prop joindb cpu; do DB=postgres sql "CREATE DATABASE $db OWNER keygate"; done
url() { echo "postgres://keygate:$PW@$HOST:$P_PG/$1"; }
echo "postgres $("$PG_BIN/postgres" --version | awk '{print $3}') on $HOST:$P_PG (fsync=off, shared_buffers=128MB); databases prop, joindb, cpu"

# ------------------------------------------------------------- upstream
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
    server {
        listen $HOST:$P_UP;
        location / { return 200 "ok"; }
    }
}
EOF
nginx -e "$WORK/up/error.log" -c "$WORK/up/nginx.conf" -g 'daemon off;' &
PIDS+=($!)

# start_keygate NAME PORT DB [LOG]: config in $WORK/NAME (store path
# $WORK/NAME/keygate.redb), admin on PORT+1, DB "" for a single node.
# Sets STARTED_PID and STARTED_MS (exec until /readyz 200). Must not run in
# $(...): the process has to be this shell's child.
start_keygate() {
    local name=$1 port=$2 db=$3 dir=$WORK/$1 admin=$(($2 + 1))
    mkdir -p "$dir"
    {
        printf '[proxy]\nlisten = "%s:%s"\nupstream = "http://%s:%s"\nworker_threads = 1\n' "$HOST" "$port" "$HOST" "$P_UP"
        printf '[admin]\nlisten = "%s:%s"\n' "$HOST" "$admin"
        printf '[store]\npath = "%s/keygate.redb"\n' "$dir"
        [[ -n $db ]] && printf 'database = "%s"\n' "$(url "$db")"
        printf '[throttle]\nmax_failures = 4294967295\n[log]\naccess = false\n'
    } >"$dir/kg.toml"
    local t0 t1
    t0=$(date +%s%N)
    RUST_LOG=${4:-info} "$KG" serve --config "$dir/kg.toml" >>"$dir/stdout" 2>>"$dir/stderr" &
    STARTED_PID=$!
    PIDS+=("$STARTED_PID")
    local deadline=$((SECONDS + 600))
    until [[ $(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "http://$HOST:$admin/readyz") == 200 ]]; do
        kill -0 "$STARTED_PID" 2>/dev/null || die "$name exited: $(tail -5 "$dir/stderr")"
        ((SECONDS < deadline)) || die "$name not ready after 600 s: $(readyz "$admin"); log: $(tail -5 "$dir/stderr")"
        sleep 0.01
    done
    t1=$(date +%s%N)
    STARTED_MS=$(((t1 - t0) / 1000000))
}
stop_keygate() { # PID: SIGTERM, wait (bounded)
    kill "$1" 2>/dev/null || true
    for _ in $(seq 300); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$1" 2>/dev/null && die "pid $1 did not stop within 30 s of SIGTERM"
    wait "$1" 2>/dev/null || true
}
synced() { readyz $(($1 + 1)) | json 'd["fleet"]["synced_seq"]'; }
wait_agree() { # PORT...: until every replica's fleet.synced_seq is the same (bounded)
    local deadline=$((SECONDS + 120)) seqs
    while :; do
        seqs=$(for p in "$@"; do synced "$p"; done | sort -u)
        [[ $(wc -l <<<"$seqs") == 1 ]] && { echo "$seqs"; return 0; }
        ((SECONDS < deadline)) || die "replicas on $* never agreed on fleet.synced_seq: $(tr '\n' ' ' <<<"$seqs")"
        sleep 0.05
    done
}

# ---------------------------------------------------------- propagation
if want propagation; then
    echo
    echo "## Propagation of revocations across three replicas"
    echo
    for r in A B C; do
        p=P_$r
        start_keygate "$r" "${!p}" prop
        declare "PID_$r=$STARTED_PID"
    done
    echo "replicas A $P_A, B $P_B, C $P_C (admin = port + 1), database prop; each started and ready"
    for gap in $PROP_GAPS; do
        keys=$WORK/prop-keys-$gap
        echo
        echo "\$ propagation create $((P_A + 1)) $PROP_KEYS $keys"
        "$WORK/propagation" create $((P_A + 1)) "$PROP_KEYS" "$keys"
        t0=$(ms_now)
        seq=$(wait_agree "$P_A" "$P_B" "$P_C")
        echo "all three at fleet.synced_seq $seq (checked $(($(ms_now) - t0)) ms after the last create returned; each check is curl + python per replica, so this is no latency figure)"
        c0=$(pg_ticks)
        echo "\$ propagation revoke $((P_A + 1)) $P_B $P_C $keys $gap $WORK/prop-raw-$gap"
        "$WORK/propagation" revoke $((P_A + 1)) "$P_B" "$P_C" "$keys" "$gap" "$WORK/prop-raw-$gap" || {
            rc=$?
            [[ $rc == 3 ]] && die "propagation: a replica did not refuse a revoked key within 5 s (see above)"
            die "propagation probe failed ($rc)"
        }
        echo "postgres CPU during the revocations: $(awk -v t=$(($(pg_ticks) - c0)) -v hz="$CLK_TCK" -v n="$PROP_KEYS" 'BEGIN { printf "%.2f s (%.0f us per revocation)", t / hz, t / hz * 1e6 / n }')"
        seq=$(wait_agree "$P_A" "$P_B" "$P_C")
        echo "after: all three at fleet.synced_seq $seq"
    done
    for r in A B C; do
        p=PID_$r
        stop_keygate "${!p}"
    done
fi

# ----------------------------------------------------------------- join
if want join; then
    echo
    echo "## A replica joining at $JOIN_KEYS keys"
    echo
    if [[ -n ${SEED_STORE:-} ]]; then
        [[ -f $SEED_STORE && -f ${SEED_KEY:-} ]] || die "SEED_STORE needs SEED_KEY (the key file the seeder wrote)"
        echo "seeded store: $SEED_STORE (reused; seeded by cargo bench --bench scale -- --seed FILE N KEYFILE)"
        seed=$SEED_STORE seedkey=$(cat "$SEED_KEY")
    else
        echo "\$ cargo bench --bench scale -- --seed $WORK/seed.redb $JOIN_KEYS $WORK/seed.key"
        cargo bench --quiet --bench scale -- --seed "$WORK/seed.redb" "$JOIN_KEYS" "$WORK/seed.key" >&2
        seed=$WORK/seed.redb seedkey=$(cat "$WORK/seed.key")
    fi
    # Single node on the seeded file: the reference for start-up and memory.
    mkdir -p "$WORK/R" && cp "$seed" "$WORK/R/keygate.redb"
    start_keygate R "$P_R" ""
    echo "single node on a copy of the seeded file (no database): ready in $STARTED_MS ms, VmRSS $(($(kb "$STARTED_PID" VmRSS) / 1024)) MB, VmHWM $(($(kb "$STARTED_PID" VmHWM) / 1024)) MB"
    stop_keygate "$STARTED_PID"

    # S: the seeded file joins the empty fleet database and uploads it.
    mkdir -p "$WORK/S" && cp "$seed" "$WORK/S/keygate.redb"
    c0=$(pg_ticks)
    start_keygate S "$P_S" joindb
    PID_S=$STARTED_PID
    echo "S (copy of the seeded file) joining the empty database joindb, uploading its keys: ready in $STARTED_MS ms (postgres CPU $(awk -v t=$(($(pg_ticks) - c0)) -v hz="$CLK_TCK" 'BEGIN { printf "%.1f s", t / hz }'), S's CPU $(awk -v t="$(cpu_ticks "$PID_S")" -v hz="$CLK_TCK" 'BEGIN { printf "%.1f s", t / hz }')), VmRSS $(($(kb "$PID_S" VmRSS) / 1024)) MB"
    sleep "$SETTLE"
    echo "S after ${SETTLE} s idle: VmRSS $(($(kb "$PID_S" VmRSS) / 1024)) MB, VmHWM $(($(kb "$PID_S" VmHWM) / 1024)) MB"
    grep -h "seeded the fleet" "$WORK/S/stderr" "$WORK/S/stdout" | tail -1 | cut -c1-200 || true
    DB=joindb sql "SELECT 'joindb: keygate_keys ' || (SELECT count(*) FROM keygate_keys) || ' rows, keygate_changes ' || (SELECT count(*) FROM keygate_changes) || ' rows, head ' || (SELECT seq FROM keygate_head) || ', database ' || pg_size_pretty(pg_database_size('joindb'))"
    [[ $(DB=joindb sql "SELECT count(*) FROM keygate_keys") == "$JOIN_KEYS" ]] || die "the fleet database does not hold $JOIN_KEYS keys after S joined"
    stop_keygate "$PID_S"

    echo
    echo "| round | J start | ready after exec | J CPU | postgres CPU | VmRSS at ready | VmRSS after ${SETTLE} s | VmHWM | seeded key through J |"
    echo "|---|---|---:|---:|---:|---:|---:|---:|---|"
    for ((round = 1; round <= JOIN_ROUNDS; round++)); do
        rm -rf "$WORK/J"
        for start in "empty file (copies from PostgreSQL)" "warm redb copy (restart)"; do
            g0=$(pg_ticks)
            start_keygate J "$P_J" joindb
            pid=$STARTED_PID ms=$STARTED_MS rss=$(kb "$STARTED_PID" VmRSS)
            cpu=$(awk -v t="$(cpu_ticks "$pid")" -v g=$(($(pg_ticks) - g0)) -v hz="$CLK_TCK" 'BEGIN { printf "%.1f s | %.1f s", t / hz, g / hz }')
            sleep "$SETTLE"
            code=$(code_of "$P_J" "$seedkey")
            keys=$(readyz $((P_J + 1)) | json 'd["keys"]')
            [[ $code == 200 && $keys == "$JOIN_KEYS" ]] || die "J ($start): seeded key answered $code, /readyz keys $keys"
            printf '| %d | %s | %d ms | %s | %d MB | %d MB | %d MB | %s, %s keys |\n' "$round" "$start" "$ms" "$cpu" \
                $((rss / 1024)) $(($(kb "$pid" VmRSS) / 1024)) $(($(kb "$pid" VmHWM) / 1024)) "$code" "$keys"
            stop_keygate "$pid"
        done
    done
    grep -h "copied the fleet" "$WORK/J/stderr" "$WORK/J/stdout" | head -1 | cut -c1-200 || true
    echo "J's redb file after the rounds: $(du -m "$WORK/J/keygate.redb" | cut -f1) MB; the seeded file: $(du -m "$seed" | cut -f1) MB"

    if ((JOIN_PROP_KEYS > 0)); then
        gap=${PROP_GAPS%% *}
        echo
        echo "### Propagation at $JOIN_KEYS keys: S as A, J as B, K (joined empty) as C"
        echo
        start_keygate S "$P_S" joindb
        PID_S=$STARTED_PID ms_s=$STARTED_MS
        start_keygate J "$P_J" joindb
        PID_J=$STARTED_PID ms_j=$STARTED_MS
        start_keygate K "$P_K" joindb
        PID_K=$STARTED_PID
        echo "ready after exec: S (warm) $ms_s ms, J (warm) $ms_j ms, K (empty file) $STARTED_MS ms"
        keys=$WORK/prop1m-keys
        echo "\$ propagation create $((P_S + 1)) $JOIN_PROP_KEYS $keys"
        "$WORK/propagation" create $((P_S + 1)) "$JOIN_PROP_KEYS" "$keys"
        seq=$(wait_agree "$P_S" "$P_J" "$P_K")
        echo "all three at fleet.synced_seq $seq"
        echo "\$ propagation revoke $((P_S + 1)) $P_J $P_K $keys $gap $WORK/prop1m-raw"
        "$WORK/propagation" revoke $((P_S + 1)) "$P_J" "$P_K" "$keys" "$gap" "$WORK/prop1m-raw" || {
            rc=$?
            [[ $rc == 3 ]] && die "propagation at $JOIN_KEYS keys: a replica did not refuse a revoked key within 5 s"
            die "propagation probe failed ($rc)"
        }
        for pid in "$PID_S" "$PID_J" "$PID_K"; do stop_keygate "$pid"; done
    fi
fi

# ------------------------------------------------------------------ cpu
if want cpu; then
    echo
    echo "## Forwarding CPU: one fleet replica vs a single node (worker_threads = 1)"
    echo
    start_keygate plain "$P_PLAIN" "" warn
    PID_PLAIN=$STARTED_PID
    start_keygate fleet "$P_FL" cpu warn
    PID_FL=$STARTED_PID
    start_keygate plain2 "$P_R" "" warn
    PID_PLAIN2=$STARTED_PID
    declare -A PORT=([plain]=$P_PLAIN [fleet]=$P_FL [plain2]=$P_R) PID=([plain]=$PID_PLAIN [fleet]=$PID_FL [plain2]=$PID_PLAIN2) KEYOF=()
    names=(plain fleet plain2)
    for name in "${names[@]}"; do
        KEYOF[$name]=$("$KG" keys create --admin "http://$HOST:$((PORT[$name] + 1))" --user bench --name cpu-bench --path /api/ 2>>"$WORK/cli.log")
        [[ $(code_of "${PORT[$name]}" "${KEYOF[$name]}") == 200 ]] || die "$name: the key does not answer 200"
        wrk -t1 -c64 -d1s -H "Authorization: $(basic "${KEYOF[$name]}")" "http://$HOST:${PORT[$name]}/api/items" >/dev/null
    done
    echo "plain: pid $PID_PLAIN port $P_PLAIN; fleet: pid $PID_FL port $P_FL (database cpu, fleet.synced_seq $(synced "$P_FL")); plain2 (control): pid $PID_PLAIN2 port $P_R"
    echo "\$ wrk -t1 -c64 -d${DURATION}s --latency -H 'Authorization: Basic ...' http://$HOST:PORT/api/items"
    RESULTS=$WORK/cpu.tsv
    : >"$RESULTS"
    for ((r = 0; r < ROUNDS; r++)); do
        for ((i = 0; i < ${#names[@]}; i++)); do
            name=${names[$(((i + r) % ${#names[@]}))]}
            pid=${PID[$name]}
            c0=$(cpu_ticks "$pid") g0=$(pg_ticks)
            out=$(wrk -t1 -c64 -d"${DURATION}s" --latency -H "Authorization: $(basic "${KEYOF[$name]}")" \
                "http://$HOST:${PORT[$name]}/api/items")
            c1=$(cpu_ticks "$pid") g1=$(pg_ticks)
            grep -q "Non-2xx" <<<"$out" && die "$name: wrk saw non-2xx answers: $out"
            awk -v r=$((r + 1)) -v name="$name" -v t=$((c1 - c0)) -v g=$((g1 - g0)) -v hz="$CLK_TCK" '
                function us(v) {
                    if (v ~ /us$/) return v + 0
                    if (v ~ /ms$/) return (v + 0) * 1000
                    if (v ~ /s$/) return (v + 0) * 1000000
                    return v + 0
                }
                /requests in/ { reqs = $1 }
                /Requests\/sec/ { rps = $2 }
                /^ +99%/ { p99 = us($2) }
                END { printf "%d\t%s\t%.0f\t%d\t%.2f\t%.0f\t%.2f\n", r, name, rps, reqs, t / hz * 1e6 / reqs, p99, g / hz }' <<<"$out" >>"$RESULTS"
            tail -1 "$RESULTS" | awk -F'\t' '{ printf "  round %s %-6s %8s req/s  %6s CPU us/req  p99 %6s us  postgres CPU %s s\n", $1, $2, $3, $5, $6, $7 }'
            sleep 1
        done
    done
    echo
    echo "| contender | req/s (median, min-max) | keygate CPU us/request | p99 us | postgres CPU s per run |"
    echo "|---|---:|---:|---:|---:|"
    med() { awk -F'\t' -v n="$1" -v c="$2" '$2 == n { print $c }' "$RESULTS" | sort -g |
        awk '{ v[NR] = $1 } END { m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; printf "%s (%s-%s)", m, v[1], v[NR] }'; }
    for name in "${names[@]}"; do
        echo "| $name | $(med "$name" 3) | $(med "$name" 5) | $(med "$name" 6) | $(med "$name" 7) |"
    done
    m_plain=$(med plain 5 | cut -d' ' -f1)
    echo
    for name in fleet plain2; do
        echo "$name / plain CPU per request (medians): $(awk -v a="$(med "$name" 5 | cut -d' ' -f1)" -v b="$m_plain" 'BEGIN { printf "%.3f", a / b }');" \
            "per round: $(awk -F'\t' -v n="$name" '{ if ($2 == "plain") p[$1] = $5; if ($2 == n) x[$1] = $5 } END {
                for (r = 1; r in p; r++) printf " %.3f", x[r] / p[r] }' "$RESULTS")"
    done
    for pid in "$PID_PLAIN" "$PID_FL" "$PID_PLAIN2"; do stop_keygate "$pid"; done
fi
exit 0
