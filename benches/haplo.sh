#!/usr/bin/env bash
# benches/haplo.sh: what Haplo's own keys cost keygate (issue 10), on this
# machine, loopback only.
#
#   bash benches/haplo.sh [all|import|firstuse|cpu|flood|poll]...   (default: all)
#
# Starts, in a temp dir, on 127.0.0.1 only:
#   postgres   a throwaway cluster (Debian's PostgreSQL binaries, run as the
#              postgres user, fsync=off), the way tests/support/postgres.rs
#              does; a database `haplo` with Haplo's schema a4000 (10,000
#              keys) and a4001 (POLL_KEYS keys, 100,000 by default), tables as
#              tests/support/haplo.rs makes them. Keys are bulk-inserted with
#              one precomputed bcrypt hash (cost 5, `$2a$`, python3 bcrypt),
#              ids bulkNNNNNNNNNNNN, as haplo.rs bulk_keys does. keygate reads
#              as the role `keygate`, granted exactly haplo.rs grant_reader's
#              columns.
#   upstream   nginx, one worker, serving a 2-byte static file
#   keygate    worker_threads = 1, log.access = false,
#              trusted_proxies = ["127.0.0.1"] (the flood's XFF)
#   keygate-f  for `poll`: [haplo] following a4001 every 2 s
# Steps (each prints its figures and the commands behind them):
#   import    `keygate import haplo` of 10,000 keys: dry-run on an empty
#             store, first import, re-run (all unchanged) x3, dry-run again
#   firstuse  first request with each of 50 fresh imported keys (bcrypt) vs
#             the second (BLAKE3), benches/haplo/first_use.py
#   cpu       wrk -t1 -c64 -d10s, native key vs upgraded imported key,
#             ROUNDS rounds interleaved, keygate CPU us/request from
#             /proc/PID/stat (utime+stime)
#   flood     native-key req/s alone vs with benches/haplo/flood.lua (1,000
#             XFF addresses, wrong secrets for never-used imported ids)
#             running at the same time, ROUNDS rounds each, interleaved;
#             once per FLOOD_CONNS value (64: the bcrypt queue never fills;
#             400: more than the 256 that may wait, so 503s)
#   poll      keygate-f: CPU of keygate and of its postgres backend per idle
#             poll (IDLE_SECS of no change), then CHANGES times: INSERT one
#             real Haplo key, time until it answers 200, while
#             benches/haplo/stall.py times a native key every 5 ms on the
#             same (one-worker) keygate, to show event-loop stalls
# Needs: wrk, nginx, postgresql (apt-get install -y wrk nginx-light
# postgresql), python3 with bcrypt (pip install bcrypt). Installs them if
# missing. Builds keygate unless KG_BIN is set.
#
# The machine is shared and has 2 cores: wrk, nginx, postgres and keygate
# compete for them, so only ratios within one run mean anything.
#
# Settings: ROUNDS=3 DURATION=10 IMPORT_KEYS=10000 POLL_KEYS=100000
#   IDLE_SECS=30 CHANGES=5 FLOOD_CONNS="64 400" BASE_PORT=18600 KEEP=0 KG_BIN=
set -euo pipefail

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
IMPORT_KEYS=${IMPORT_KEYS:-10000}
POLL_KEYS=${POLL_KEYS:-100000}
IDLE_SECS=${IDLE_SECS:-30}
CHANGES=${CHANGES:-5}
FLOOD_CONNS=${FLOOD_CONNS:-"64 400"} # one flood run per value
BASE_PORT=${BASE_PORT:-18600}
KEEP=${KEEP:-0}
HOST=127.0.0.1
STEPS=("$@")
((${#STEPS[@]})) || STEPS=(all)
want() { [[ " ${STEPS[*]} " == *" all "* || " ${STEPS[*]} " == *" $1 "* ]]; }

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
say() { printf '%s\n' "$*" >&2; }
die() {
    say "haplo.sh: $*"
    exit 1
}

need=()
command -v wrk >/dev/null || need+=(wrk)
command -v nginx >/dev/null || need+=(nginx-light)
command -v curl >/dev/null || need+=(curl)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
if ((${#need[@]})); then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
python3 -c 'import bcrypt' 2>/dev/null || pip install -q bcrypt
PG_BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)

cd "$REPO"
if [[ -n ${KG_BIN:-} ]]; then
    KG=$KG_BIN
else
    cargo build --release --quiet --bin keygate
    KG=$REPO/target/release/keygate
fi

WORK=$(mktemp -d /tmp/kg-haplo.XXXXXX)
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

P_PG=$BASE_PORT
P_UP=$((BASE_PORT + 1))
P_KG=$((BASE_PORT + 2))
P_KG_ADMIN=$((BASE_PORT + 3))
P_KF=$((BASE_PORT + 4))
P_KF_ADMIN=$((BASE_PORT + 5))
for port in $(seq "$BASE_PORT" $((BASE_PORT + 5))); do
    ss -Hltn "sport = :$port" | grep -q . && die "port $port is in use; set BASE_PORT"
done
CLK_TCK=$(getconf CLK_TCK)
cpu_ticks() { awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"; }
basic() { printf 'Basic %s' "$(printf 'haplo:%s' "$1" | base64 -w0)"; }
ms_now() { echo $(($(date +%s%N) / 1000000)); }
code_of() { curl -s -o /dev/null -w '%{http_code}' --max-time 5 -H "Authorization: $(basic "$2")" "http://$HOST:$1/api/check"; }

# ------------------------------------------------------------- postgres
PGDIR=$WORK/pg
mkdir -p "$PGDIR/sock"
chown -R postgres: "$PGDIR"
PW_OWNER=owner$RANDOM$RANDOM
PW_READER=reader$RANDOM$RANDOM
runuser -u postgres -- "$PG_BIN/initdb" -D "$PGDIR/data" -U postgres --auth-local=trust \
    --auth-host=scram-sha-256 --no-sync --no-instructions -E UTF8 --locale=C >/dev/null
runuser -u postgres -- "$PG_BIN/postgres" -D "$PGDIR/data" -p "$P_PG" -k "$PGDIR/sock" \
    -c listen_addresses=$HOST -c fsync=off -c full_page_writes=off -c shared_buffers=32MB \
    >"$PGDIR/log" 2>&1 &
PIDS+=($!)
PG_PID=$!
for _ in $(seq 300); do
    "$PG_BIN/pg_isready" -q -h $HOST -p "$P_PG" && break
    sleep 0.1
done
"$PG_BIN/pg_isready" -q -h $HOST -p "$P_PG" || die "postgres did not start: $(cat "$PGDIR/log")"
sql() { "$PG_BIN/psql" -XqAt -v ON_ERROR_STOP=1 -U postgres -h "$PGDIR/sock" -p "$P_PG" -d "${DB:-haplo}" -c "$1"; }
DB=postgres sql "CREATE ROLE haplo LOGIN PASSWORD '$PW_OWNER'; CREATE ROLE keygate LOGIN PASSWORD '$PW_READER'"
DB=postgres sql "CREATE DATABASE haplo OWNER haplo"
URL="postgres://keygate:$PW_READER@$HOST:$P_PG/haplo"

SECRET=bulkSecretbulkSecretbulkSecr
HASH=$(python3 -c "import bcrypt,sys; print(bcrypt.hashpw(sys.argv[1].encode(), bcrypt.gensalt(5, prefix=b'2a')).decode())" "$SECRET")
# make_app ID NKEYS: Haplo's tables (tests/support/haplo.rs), one user 129,
# NKEYS keys bulk000000000001.. with the one hash.
make_app() {
    local s=a$1
    sql "CREATE TABLE IF NOT EXISTS public.applications (hostname TEXT NOT NULL, application_id INT NOT NULL);
         CREATE SCHEMA $s;
         CREATE TABLE $s.users (id SERIAL PRIMARY KEY, kind SMALLINT NOT NULL DEFAULT(0), obj_id INT, code TEXT,
             name TEXT NOT NULL, name_first TEXT, name_last TEXT, email TEXT, password TEXT, recovery_token TEXT, otp_identifier TEXT);
         INSERT INTO $s.users (id,kind,name,name_first,name_last) VALUES (0,3,'SYSTEM','SYSTEM','');
         INSERT INTO $s.users (id,kind,name) VALUES (2,0,'ANONYMOUS');
         INSERT INTO $s.users (id,kind,name,name_first,name_last) VALUES (3,3,'SUPPORT','SUPPORT','');
         INSERT INTO $s.users (id,kind,name,code) VALUES (4,1,'Everyone','std:group:everyone');
         INSERT INTO $s.users (id,kind,name,code) VALUES (16,1,'Administrators','std:group:administrators');
         SELECT setval('$s.users_id_seq', 128);
         INSERT INTO $s.users (kind,name,name_first,name_last,email,password) VALUES (0,'Bench User','Bench','User','bench@example.com','never-read-pw');
         CREATE TABLE $s.api_keys (id SERIAL PRIMARY KEY, user_id INT NOT NULL REFERENCES $s.users(id),
             a TEXT NOT NULL, b TEXT NOT NULL, path TEXT NOT NULL, name TEXT NOT NULL);
         CREATE UNIQUE INDEX idx_api_keys_key_$1 ON $s.api_keys(a);
         INSERT INTO $s.api_keys (user_id, a, b, path, name)
             SELECT 129, 'bulk' || lpad(i::text, 12, '0'), '$HASH', '/api/', 'bulk key ' || i FROM generate_series(1, $2) AS i;
         GRANT USAGE ON SCHEMA $s TO keygate;
         GRANT SELECT (a, b, path, name, user_id) ON $s.api_keys TO keygate;
         GRANT SELECT (id, kind, email) ON $s.users TO keygate;
         GRANT SELECT ON public.applications TO keygate;
         ANALYZE $s.api_keys;" >/dev/null
}
make_app 4000 "$IMPORT_KEYS"
want poll && make_app 4001 "$POLL_KEYS"
say "postgres on $P_PG: a4000 with $IMPORT_KEYS keys$(want poll && echo ", a4001 with $POLL_KEYS keys")"

# ------------------------------------------------------------- upstream
mkdir -p "$WORK/up/www/api"
printf 'ok' >"$WORK/up/www/index"
chmod -R a+rX "$WORK/up"
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
        location / { root $WORK/up/www; try_files /index =404; }
    }
}
EOF
nginx -e "$WORK/up/error.log" -c "$WORK/up/nginx.conf" -g 'daemon off;' &
PIDS+=($!)
UP_PID=$!

# start_keygate NAME PORT ADMIN EXTRA_TOML: sets STARTED_PID
start_keygate() {
    local dir=$WORK/$1
    mkdir -p "$dir"
    cat >"$dir/kg.toml" <<EOF
[proxy]
listen = "$HOST:$2"
upstream = "http://$HOST:$P_UP"
worker_threads = 1
trusted_proxies = ["127.0.0.1"]
[admin]
listen = "$HOST:$3"
[store]
path = "$dir/store.redb"
[log]
access = false
$4
EOF
    RUST_LOG=info "$KG" serve --config "$dir/kg.toml" >"$dir/stdout" 2>"$dir/stderr" &
    STARTED_PID=$!
    PIDS+=("$STARTED_PID")
    local deadline=$((SECONDS + 300))
    until [[ $(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "http://$HOST:$3/readyz") == 200 ]]; do
        kill -0 "$STARTED_PID" 2>/dev/null || die "$1 exited: $(cat "$dir/stderr")"
        ((SECONDS < deadline)) || die "$1 not ready after 300 s"
        sleep 0.05
    done
}
start_keygate kg "$P_KG" "$P_KG_ADMIN" ""
KG_PID=$STARTED_PID
ADMIN=http://$HOST:$P_KG_ADMIN
NATIVE=$("$KG" keys create --admin "$ADMIN" --user bench --name native --path /api/)
[[ $(code_of "$P_KG" "$NATIVE") == 200 ]] || die "native key does not answer 200"
say "keygate $KG (pid $KG_PID) on $P_KG, admin $P_KG_ADMIN; repo HEAD $(git -C "$REPO" rev-parse --short HEAD) (the binary may differ)"

imported=0
do_import() { # LABEL ARGS...: one timed import, prints keys/s and the report
    local label=$1 t0 t1 out
    shift
    t0=$(ms_now)
    out=$("$KG" import haplo --admin "$ADMIN" --database "$URL" --app 4000 "$@" 2>&1) || die "import failed: $out"
    t1=$(ms_now)
    printf '%-34s %6d ms  %8.0f keys/s   %s\n' "$label" $((t1 - t0)) \
        "$(awk -v n="$IMPORT_KEYS" -v ms=$((t1 - t0)) 'BEGIN { print n / (ms / 1000) }')" \
        "$(printf '%s' "$out" | tr '\n' ' ' | cut -c1-150)"
}
ensure_imported() {
    ((imported)) && return 0
    "$KG" import haplo --admin "$ADMIN" --database "$URL" --app 4000 >/dev/null
    imported=1
}

# ---------------------------------------------------------------- import
if want import; then
    echo "== A1 import: keygate import haplo --admin $ADMIN --database postgres://keygate:***@$HOST:$P_PG/haplo --app 4000 [--dry-run]"
    echo "   ($IMPORT_KEYS keys; wall time of the whole CLI run: connect, read, POST /v1/import, report)"
    do_import "dry-run, empty store" --dry-run
    do_import "first import" && imported=1
    for i in 1 2 3; do do_import "re-run $i (all unchanged)"; done
    for i in 1 2; do do_import "dry-run $i after import" --dry-run; done
    echo "   sizes: store $(du -h "$WORK/kg/store.redb" | cut -f1), keygate RSS $(awk '/^VmRSS/ {print $2/1024 " MB"}' /proc/$KG_PID/status)"
fi

# -------------------------------------------------------------- firstuse
if want firstuse; then
    ensure_imported
    echo "== A2 first use: python3 benches/haplo/first_use.py $P_KG \$SECRET 1 50 \$NATIVE"
    python3 "$REPO/benches/haplo/first_use.py" "$P_KG" "$SECRET" 1 50 "$NATIVE"
fi

# ------------------------------------------------------------------- cpu
WRK_OUT=$WORK/wrk.log
# wrk_run PORT KEY SECS -> "reqs rps p99 non2xx cpu_us_per_req" (keygate CPU)
wrk_run() {
    local c0 c1 out
    c0=$(cpu_ticks "$KG_PID")
    out=$(wrk -t1 -c64 -d"$3s" --latency -H "Authorization: $(basic "$2")" "http://$HOST:$1/api/bench")
    c1=$(cpu_ticks "$KG_PID")
    printf '%s\n' "$out" >>"$WRK_OUT"
    printf '%s\n' "$out" | awk -v t=$((c1 - c0)) -v hz="$CLK_TCK" '
        function us(v) { if (v ~ /us$/) return v + 0; if (v ~ /ms$/) return (v + 0) * 1000; return (v + 0) * 1e6 }
        /requests in/ { r = $1 } /Requests\/sec/ { rps = $2 } /^ +99%/ { p99 = us($2) } /Non-2xx/ { n = $NF }
        END { printf "%d %.0f %.0f %d %.2f\n", r, rps, p99, n + 0, (r ? t / hz * 1e6 / r : -1) }'
}
if want cpu; then
    ensure_imported
    UPGRADED=bulk000000000001$SECRET
    [[ $(code_of "$P_KG" "$UPGRADED") == 200 ]] || die "imported key does not answer 200"
    echo "== A3 CPU: wrk -t1 -c64 -d${DURATION}s --latency -H 'Authorization: Basic ...' http://$HOST:$P_KG/api/bench"
    echo "   keygate CPU = utime+stime delta of pid $KG_PID / requests; $ROUNDS rounds, order alternating"
    declare -a CPU_N CPU_I
    for ((r = 0; r < ROUNDS; r++)); do
        for which in $( ((r % 2)) && echo "imported native" || echo "native imported"); do
            key=$NATIVE
            [[ $which == imported ]] && key=$UPGRADED
            read -r reqs rps p99 non2xx cpu <<<"$(wrk_run "$P_KG" "$key" "$DURATION")"
            printf '   round %d %-9s %8s req/s  p99 %6s us  non-2xx %s  cpu %s us/req\n' $((r + 1)) "$which" "$rps" "$p99" "$non2xx" "$cpu"
            [[ $which == native ]] && CPU_N+=("$cpu") || CPU_I+=("$cpu")
            sleep 1
        done
    done
    med() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
    mn=$(med "${CPU_N[@]}")
    mi=$(med "${CPU_I[@]}")
    echo "   median CPU: native $mn us/req, upgraded imported $mi us/req, ratio imported/native $(awk -v a="$mi" -v b="$mn" 'BEGIN { printf "%.3f", a / b }')"
fi

# ----------------------------------------------------------------- flood
if want flood; then
    ensure_imported
    pass=0
    for fc in $FLOOD_CONNS; do
        ALONE=() WITH=()
        pass=$((pass + 1))
        echo "== A4 flood: native wrk -t1 -c64 -d${DURATION}s alone vs with"
        echo "   FLOOD_FROM=1001 FLOOD_TO=$IMPORT_KEYS wrk -t1 -c$fc -d$((DURATION + 2))s -s benches/haplo/flood.lua http://$HOST:$P_KG/api/flood"
        echo "   (flood starts 1 s before the native run; $ROUNDS rounds, alone/with alternating)"
        for ((r = 0; r < ROUNDS; r++)); do
            read -r reqs rps p99 non2xx cpu <<<"$(wrk_run "$P_KG" "$NATIVE" "$DURATION")"
            printf '   round %d alone %8s req/s  p99 %6s us  non-2xx %s  keygate cpu %s us/req\n' $((r + 1)) "$rps" "$p99" "$non2xx" "$cpu"
            ALONE+=("$rps")
            sleep 1
            c0=$(cpu_ticks "$KG_PID")
            FLOOD_FROM=1001 FLOOD_TO=$IMPORT_KEYS wrk -t1 -c"$fc" -d$((DURATION + 2))s --timeout 10s \
                -s "$REPO/benches/haplo/flood.lua" "http://$HOST:$P_KG/api/flood" >"$WORK/flood.$r" 2>&1 &
            FLOOD_PID=$!
            sleep 1
            read -r reqs rps p99 non2xx cpu <<<"$(wrk_run "$P_KG" "$NATIVE" "$DURATION")"
            wait "$FLOOD_PID" || true
            c1=$(cpu_ticks "$KG_PID")
            printf '   round %d with  %8s req/s  p99 %6s us  non-2xx %s  (keygate CPU over the flood: %.1f s of %d s)\n' \
                $((r + 1)) "$rps" "$p99" "$non2xx" "$(awk -v t=$((c1 - c0)) -v hz="$CLK_TCK" 'BEGIN { print t / hz }')" $((DURATION + 2))
            WITH+=("$rps")
            printf '     flood: %s req/s;' "$(awk '/Requests\/sec/ { print $2 }' "$WORK/flood.$r")"
            awk -F'\t' '/^FLOODCOUNT/ { printf " %s: %s;", $2, $3 }' "$WORK/flood.$r"
            awk '/Socket errors/ { printf " %s", $0 }' "$WORK/flood.$r"
            printf '\n'
            sleep 1
        done
        med() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
        a=$(med "${ALONE[@]}")
        w=$(med "${WITH[@]}")
        echo "   median native req/s: alone $a, with flood $w, ratio $(awk -v a="$w" -v b="$a" 'BEGIN { printf "%.3f", a / b }')"
        fresh=$(printf 'bulk%012d' $((IMPORT_KEYS - 2 * pass)))
        fresh2=$(printf 'bulk%012d' $((IMPORT_KEYS - 2 * pass + 1)))
        echo "   at once after the flood: a native key $(code_of "$P_KG" "$NATIVE"), an unused imported key with the right secret $(code_of "$P_KG" "$fresh$SECRET"); 3 s later another unused one: $(sleep 3; code_of "$P_KG" "$fresh2$SECRET")"
    done
fi

# ------------------------------------------------------------------ poll
if want poll; then
    echo "== A5 poll: keygate serve with [haplo] database = keygate@..., app_id = 4001, poll_secs = 2 ($POLL_KEYS keys)"
    t0=$(ms_now)
    start_keygate kf "$P_KF" "$P_KF_ADMIN" "[haplo]
database = \"$URL\"
app_id = 4001
poll_secs = 2
[throttle]
max_failures = 4294967295"
    # (no throttle: the loop below asks for the new key every 20 ms, and 50
    # refusals before it exists would throttle 127.0.0.1 for 300 s)
    KF_PID=$STARTED_PID
    deadline=$((SECONDS + 600))
    until [[ $(code_of "$P_KF" "bulk000000000002$SECRET") == 200 ]]; do
        ((SECONDS < deadline)) || die "the follower never served a key"
        sleep 0.1
    done
    echo "   first sync: $(($(ms_now) - t0)) ms from exec to the first imported key answering 200"
    sleep 5
    BACKEND=$(sql "SELECT pid FROM pg_stat_activity WHERE usename = 'keygate' AND datname = 'haplo'" | head -1)
    [[ -n $BACKEND ]] || die "no postgres backend for keygate"
    echo "   keygate pid $KF_PID, its postgres backend pid $BACKEND (pg_stat_activity usename = keygate)"
    k0=$(cpu_ticks "$KF_PID")
    b0=$(cpu_ticks "$BACKEND")
    t0=$(ms_now)
    sleep "$IDLE_SECS"
    k1=$(cpu_ticks "$KF_PID")
    b1=$(cpu_ticks "$BACKEND")
    t1=$(ms_now)
    awk -v k=$((k1 - k0)) -v b=$((b1 - b0)) -v hz="$CLK_TCK" -v ms=$((t1 - t0)) 'BEGIN {
        polls = ms / 2000
        printf "   idle %.1f s = %.1f polls: keygate %.3f s CPU (%.1f ms/poll), postgres backend %.3f s CPU (%.1f ms/poll)\n",
            ms / 1000, polls, k / hz, k / hz * 1000 / polls, b / hz, b / hz * 1000 / polls }'
    KF_NATIVE=$("$KG" keys create --admin "http://$HOST:$P_KF_ADMIN" --user bench --name stall --path /api/ 2>/dev/null | tail -1)
    echo "   event-loop stall check, no change (python3 benches/haplo/stall.py $P_KF \$KEY 6):"
    echo "     $(python3 "$REPO/benches/haplo/stall.py" "$P_KF" "$KF_NATIVE" 6)"
    echo "   change: INSERT INTO a4001.api_keys (one key, real bcrypt hash), then curl every 20 ms until 200"
    for i in $(seq "$CHANGES"); do
        id=$(printf 'chg%013d' "$i")
        sec=$(python3 -c "import secrets; print(secrets.token_urlsafe(21)[:28])")
        h=$(python3 -c "import bcrypt,sys; print(bcrypt.hashpw(sys.argv[1].encode(), bcrypt.gensalt(5, prefix=b'2a')).decode())" "$sec")
        sleep "0.$((RANDOM % 10))$((RANDOM % 10))" # land anywhere in the poll cycle
        k0=$(cpu_ticks "$KF_PID")
        b0=$(cpu_ticks "$BACKEND" 2>/dev/null || echo 0)
        python3 "$REPO/benches/haplo/stall.py" "$P_KF" "$KF_NATIVE" 6 >"$WORK/stall.$i" &
        STALL_PID=$!
        sleep 0.5
        t0=$(ms_now)
        sql "INSERT INTO a4001.api_keys (user_id, a, b, path, name) VALUES (129, '$id', '$h', '/api/', 'change $i')"
        t1=$(ms_now)
        deadline=$((SECONDS + 30))
        until [[ $(code_of "$P_KF" "$id$sec") == 200 ]]; do
            ((SECONDS < deadline)) || die "key $id not live after 30 s: $(curl -s --max-time 5 -H "Authorization: $(basic "$id$sec")" "http://$HOST:$P_KF/api/check") (secret ${#sec} chars)"
            sleep 0.02
        done
        t2=$(ms_now)
        sleep 1.5 # let the poll finish being charged
        k1=$(cpu_ticks "$KF_PID")
        b1=$(cpu_ticks "$BACKEND" 2>/dev/null || echo 0)
        awk -v i="$i" -v ins=$((t1 - t0)) -v live=$((t2 - t0)) -v k=$((k1 - k0)) -v b=$((b1 - b0)) -v hz="$CLK_TCK" 'BEGIN {
            printf "   change %d: INSERT took %d ms; 200 after %d ms (from the INSERT start); CPU in that cycle: keygate %.0f ms, backend %.0f ms\n",
                i, ins, live, k / hz * 1000, b / hz * 1000 }'
        wait "$STALL_PID" || true
        echo "     meanwhile on the same keygate, a native key every 5 ms: $(cat "$WORK/stall.$i")"
    done
    # Control: the same kind of CPU load (reading 100,000 rows, diffing,
    # committing) in other processes (the CLI, the other keygate, postgres),
    # none of it on keygate-f's event loop.
    python3 "$REPO/benches/haplo/stall.py" "$P_KF" "$KF_NATIVE" 6 >"$WORK/stall.control" &
    STALL_PID=$!
    sleep 0.5
    t0=$(ms_now)
    "$KG" import haplo --admin "$ADMIN" --database "$URL" --app 4001 >/dev/null
    wait "$STALL_PID" || true
    echo "   control: keygate import haplo --app 4001 ($POLL_KEYS keys) into the other keygate took $(($(ms_now) - t0)) ms; meanwhile on keygate-f: $(cat "$WORK/stall.control")"
    echo "   keygate-f RSS $(awk '/^VmRSS/ {print $2/1024 " MB"}' /proc/$KF_PID/status)"
fi
