# Sourced (not run) by scripts/bench, bench-unmask and bench-sqs: the services' settings, a work folder, and a scratch
# database that, with the folder, is removed however the benchmark ends.
# Set before sourcing: ROOT, BENCH_DATABASE (the scratch database's name).
# Defined after: BIN (PIIVAULT_BENCH_BIN, else the release build), PSQL, ADMIN_URL, DB (the scratch database's URL),
# WORK, fresh_database (drop, create, migrate), BENCH_CLEANUP_SQL (more SQL for the exit, run as the admin).
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
