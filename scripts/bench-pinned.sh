#!/usr/bin/env bash
# bench-pinned.sh runs the bench (bench/cmd/bench) against a private
# PostgreSQL server that has CPUs of its own: the server runs on PG_CPUS
# (default: CPU 0), the bench and every client it starts on BENCH_CPUS
# (default: the other CPUs; to be given whenever PG_CPUS is). `make bench` shares every CPU between clients
# and server, so a client's CPU per job is taken from the server; here it
# is not, and the server's CPU per job is what bounds throughput, as when
# a deployment's database is the busy machine (see bench/README.md, "When
# the server has a core of its own").
#
# It needs at least 2 CPUs, taskset (util-linux) and the PostgreSQL server
# binaries (initdb, pg_ctl; Debian: the postgresql package). As root it
# runs the server as user postgres. The server lives in a temporary
# directory, listens on 127.0.0.1 at the first free port from PIN_PORT
# (default 55432) and is stopped and removed on exit, Ctrl-C included.
# Its settings are those of the machine's main bench server here
# (shared_buffers 128MB, max_wal_size 1GB, max_connections 100, autovacuum
# off, fsync and synchronous_commit on); PIN_PG_SETTINGS adds more, as
# "name=value" lines. BENCH_* variables go to the bench as they are
# (BENCH_OUT defaults to out/results-pinned.json), e.g.
#
#   BENCH_SCENARIOS=burndown,sql_ceiling bash scripts/bench-pinned.sh
set -euo pipefail

say() { printf 'bench-pinned: %s\n' "$*" >&2; }
die() {
	printf 'bench-pinned: error: %s\n' "$*" >&2
	exit 1
}
have() { command -v "$1" >/dev/null 2>&1; }

root=$(cd "$(dirname "$0")/.." && pwd)
ncpu=$(nproc)
[ "$ncpu" -ge 2 ] || die "needs at least 2 CPUs (this machine has $ncpu)"
have taskset || die "taskset not found (Debian: apt-get install util-linux)"
# The default BENCH_CPUS is the rest of the machine only for the default
# PG_CPUS; with another PG_CPUS the bench's CPUs must be named too.
if [ -n "${PG_CPUS:-}" ] && [ -z "${BENCH_CPUS:-}" ]; then
	die "PG_CPUS=$PG_CPUS is set: set BENCH_CPUS too (CPUs not in PG_CPUS)"
fi
PG_CPUS=${PG_CPUS:-0}
BENCH_CPUS=${BENCH_CPUS:-1-$((ncpu - 1))}
# taskset rejects a list outside the machine's CPUs: check both before
# starting anything.
taskset -c "$PG_CPUS" true 2>/dev/null || die "PG_CPUS=$PG_CPUS: not a CPU list of this machine (0-$((ncpu - 1)))"
taskset -c "$BENCH_CPUS" true 2>/dev/null || die "BENCH_CPUS=$BENCH_CPUS: not a CPU list of this machine (0-$((ncpu - 1)))"

bindir=""
if have pg_config && [ -x "$(pg_config --bindir)/initdb" ]; then
	bindir=$(pg_config --bindir)
else
	for d in /usr/lib/postgresql/*/bin; do
		[ -x "$d/initdb" ] && bindir=$d # the last: the newest version
	done
fi
[ -n "$bindir" ] || die "initdb not found (Debian: apt-get install postgresql)"

# as_server runs a command as the server's user: postgres when we are root.
as_server() {
	if [ "$(id -u)" -eq 0 ]; then
		id postgres >/dev/null 2>&1 || die "running as root, and there is no user postgres to run the server as"
		runuser -u postgres -- "$@"
	else
		"$@"
	fi
}

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
port=${PIN_PORT:-55432}
for _ in $(seq 1 20); do
	port_free "$port" && break
	port=$((port + 1))
done
port_free "$port" || die "no free port from ${PIN_PORT:-55432} to $port"

dir=$(mktemp -d /tmp/millrace-bench-pinned.XXXXXX)
started=0
cleanup() {
	if [ "$started" -eq 1 ]; then
		as_server "$bindir/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null 2>&1 || say "stopping the server failed; its files are in $dir"
	fi
	rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
[ "$(id -u)" -ne 0 ] || chown postgres "$dir"

say "initdb in $dir ($("$bindir/postgres" --version))"
as_server "$bindir/initdb" -D "$dir/data" -A trust -U postgres >"$dir/initdb.log" 2>&1 ||
	die "initdb failed: $(tail -n 5 "$dir/initdb.log")"
{
	printf '%s\n' "port = $port" "listen_addresses = '127.0.0.1'" "unix_socket_directories = '$dir'" \
		"shared_buffers = 128MB" "max_wal_size = 1GB" "max_connections = 100" "autovacuum = off" \
		"fsync = on" "synchronous_commit = on"
	if [ -n "${PIN_PG_SETTINGS:-}" ]; then printf '%s\n' "$PIN_PG_SETTINGS"; fi
} >>"$dir/data/postgresql.conf"
say "starting the server on CPU(s) $PG_CPUS, port $port"
as_server taskset -c "$PG_CPUS" "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w start >/dev/null ||
	die "the server did not start: $(tail -n 5 "$dir/server.log")"
started=1
pm=$(head -n 1 "$dir/data/postmaster.pid")
say "server (pid $pm) affinity: $(taskset -cp "$pm" | sed 's/.*: //')"

# Built first, on every CPU: the compiler is not what is measured.
bin="$dir/bench"
(cd "$root/bench" && go build -o "$bin" ./cmd/bench)
say "bench on CPU(s) $BENCH_CPUS"
cd "$root/bench"
BENCH_OUT=${BENCH_OUT:-out/results-pinned.json} DATABASE_URL="postgres://postgres@127.0.0.1:$port/postgres?sslmode=disable" taskset -c "$BENCH_CPUS" "$bin"
