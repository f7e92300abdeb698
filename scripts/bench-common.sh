# Sourced (not run) by scripts/bench, bench-seed, bench-unmask and bench-sqs: the services' settings, a work folder, and a scratch
# database that, with the folder, is removed however the benchmark ends.
# Set before sourcing: ROOT, BENCH_DATABASE (the scratch database's name).
# Defined after: BIN (PIIVAULT_BENCH_BIN, else the release build), PSQL, ADMIN_URL, DB (the scratch database's URL),
# WORK, fresh_database (drop, create, migrate), make_input (a synthetic input file; needs MESSAGES), fastest (the
# smallest of some timings), BENCH_CLEANUP_SQL (more SQL for the exit, run as the admin).
: "${PIIVAULT_TEST_DATABASE_URL:?run through scripts/with-services (make bench)}"
BIN="${PIIVAULT_BENCH_BIN:-$ROOT/.build/release}"
PSQL="${PIIVAULT_PG_BINDIR}/psql"
export PGOPTIONS="-c client_min_messages=warning"  # no NOTICEs for IF EXISTS
ADMIN_URL="$PIIVAULT_TEST_DATABASE_URL"
DB="${ADMIN_URL%/*}/$BENCH_DATABASE"
WORK="$(mktemp -d "/tmp/$BENCH_DATABASE.XXXXXX")"
BENCH_CLEANUP_SQL=""

bench_cleanup() {
    "$PSQL" -q "$ADMIN_URL" -c "DROP DATABASE IF EXISTS $BENCH_DATABASE WITH (FORCE)" \
        ${BENCH_CLEANUP_SQL:+-c "$BENCH_CLEANUP_SQL"} >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap bench_cleanup EXIT

fresh_database() {
    "$PSQL" -q "$ADMIN_URL" -c "DROP DATABASE IF EXISTS $BENCH_DATABASE WITH (FORCE)" -c "CREATE DATABASE $BENCH_DATABASE"
    "$BIN/piivault" migrate --database-url "$DB" --migrations-dir "$ROOT/migrations" >/dev/null
}

# fastest SECONDS...: the smallest of its arguments (benchmarks take turns and count each side's fastest run).
fastest() { python3 -c "import sys; print(min(map(float, sys.argv[1:])))" "$@"; }

# make_input SHARE PATH: MESSAGES synthetic login lines whose ip/device_id values are SHARE distinct (fixed seed: the
# same input every time; scripts/bench and scripts/bench-seed load the same files).
make_input() {
    python3 - "$MESSAGES" "$1" "$2" <<'PY'
import json, random, sys
n, share, path = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
distinct = max(1, int(n * share))
rnd = random.Random(42)
with open(path, "w") as f:
    for i in range(n):
        k = i if distinct >= n else rnd.randrange(distinct)
        ip = f"{10 + (k >> 24) % 200}.{(k >> 16) & 255}.{(k >> 8) & 255}.{k & 255}"
        dev = f"{k % 1000:03d}-{(k // 1000) % 100:02d}-{(k // 100000) % 10000:04d}"
        f.write(json.dumps({"user_id": f"user-{i % 50000}", "app_version": "2.3.0", "device_type": "android",
                            "ip": ip, "locale": "RU" if i % 3 else None, "device_id": dev}) + "\n")
PY
}
