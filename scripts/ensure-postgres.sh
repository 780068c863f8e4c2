#!/usr/bin/env bash
# ensure-postgres.sh makes sure this machine has a PostgreSQL server that the
# millrace demo and tests can use, and the client tools they call (psql,
# pg_dump). `make demo`, `make test` and CI run it; it is safe to run again
# and takes well under a second when a server already answers.
#
# It settles on the first of:
#   1. DATABASE_URL and/or TEST_DATABASE_URL, when set: they must answer.
#   2. A server on 127.0.0.1:5432 that lets user postgres in without a password.
#   3. An installed Debian cluster (/etc/postgresql/<version>/main), started
#      with pg_ctlcluster.
#   4. As root with apt-get: apt-get install postgresql postgresql-client, then 3.
# Otherwise it fails and says how to get PostgreSQL.
#
# When it runs as root and user postgres cannot log in over 127.0.0.1
# without a password (a fresh Debian cluster uses scram-sha-256 there), it adds
# trust lines for user postgres from 127.0.0.1/32 and ::1/128 to the cluster's
# pg_hba.conf: right for a dev/test machine, wrong for production.
#
# It prints one line for each thing it finds, decides or does, and last the
# connection URL to use.
set -euo pipefail

readonly LOCAL_HOST=127.0.0.1
readonly LOCAL_PORT=5432
readonly HBA_MARKER="# added by millrace scripts/ensure-postgres.sh"

# ERR_FILE catches psql's error message for the error we print.
ERR_FILE=$(mktemp)
readonly ERR_FILE
trap 'rm -f "$ERR_FILE"' EXIT

say() { printf 'ensure-postgres: %s\n' "$*"; }
die() {
	printf 'ensure-postgres: error: %s\n' "$*" >&2
	exit 1
}
have() { command -v "$1" >/dev/null 2>&1; }
is_root() { [ "$(id -u)" -eq 0 ]; }

# mask prints a connection URL with its password replaced by ***.
mask() { printf '%s' "$1" | sed -E 's#(://[^:/@]*):[^@/]*@#\1:***@#'; }

# local_url prints the URL of user postgres on the local server at port $1.
local_url() { printf 'postgres://postgres@%s:%s/postgres?sslmode=disable' "$LOCAL_HOST" "$1"; }

apt_updated=0
# apt_install installs Debian packages; it returns 1 when it cannot (not
# root, or no apt-get).
apt_install() {
	is_root && have apt-get || return 1
	if [ "$apt_updated" -eq 0 ]; then
		say "running apt-get update"
		DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null ||
			die "apt-get update failed"
		apt_updated=1
	fi
	say "installing $* with apt-get"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null ||
		die "apt-get install $* failed"
}

# ensure_client_tools makes sure psql, pg_dump and pg_isready are on PATH.
ensure_client_tools() {
	local missing=()
	local tool
	for tool in psql pg_dump pg_isready; do
		have "$tool" || missing+=("$tool")
	done
	if [ "${#missing[@]}" -gt 0 ]; then
		say "missing client tools: ${missing[*]}"
		apt_install postgresql-client ||
			die "${missing[*]} not found; install the PostgreSQL client tools (Debian/Ubuntu: sudo apt-get install postgresql-client; macOS: brew install libpq) and run this again"
		for tool in psql pg_dump pg_isready; do
			have "$tool" || die "$tool still not found after installing postgresql-client"
		done
	fi
	say "client tools: $(pg_dump --version | head -n1) and psql found"
}

# check_pg_dump_version warns when pg_dump is older than the server at URL $1:
# pg_dump refuses to dump a server of a newer major version.
check_pg_dump_version() {
	local server_num server_major dump_major
	server_num=$(psql -X -w -Atq -c 'SHOW server_version_num' "$1" 2>/dev/null) || return 0
	[[ "$server_num" =~ ^[0-9]+$ ]] || return 0
	server_major=$((server_num / 10000))
	dump_major=$(pg_dump --version | sed -nE 's/^[^0-9]*([0-9]+).*/\1/p')
	[ -n "$dump_major" ] || return 0
	if [ "$dump_major" -lt "$server_major" ]; then
		if is_root && have apt-cache && apt-cache show "postgresql-client-$server_major" >/dev/null 2>&1; then
			apt_install "postgresql-client-$server_major"
		else
			say "warning: pg_dump $dump_major is older than the server ($server_major) and will refuse to dump it; install postgresql-client-$server_major (on Debian/Ubuntu from the PGDG apt repository) to run the schema tests"
		fi
	fi
}

# can_login reports whether URL $1 accepts a connection without a password
# prompt; on failure last_error prints psql's message.
can_login() { psql -X -w -Atq -c 'SELECT 1' "$1" >/dev/null 2>"$ERR_FILE"; }

# last_error prints the error of the last can_login on one line.
last_error() { tr -s '\n' ' ' <"$ERR_FILE" | sed 's/ $//'; }

# cluster_on_port prints "<version> <name>" of the local Debian cluster that
# is online on port $1, if any.
cluster_on_port() {
	have pg_lsclusters || return 0
	pg_lsclusters -h 2>/dev/null | awk -v port="$1" '$3 == port && $4 ~ /^online/ { print $1, $2; exit }'
}

# allow_trust adds trust lines for user postgres from 127.0.0.1 and ::1 at
# the top of the pg_hba.conf of cluster $1/$2 (first match wins) and reloads
# it. It does nothing when the lines are already there.
allow_trust() {
	local version=$1 name=$2
	local hba="/etc/postgresql/$version/$name/pg_hba.conf"
	[ -f "$hba" ] || die "cannot find $hba to allow user postgres in from $LOCAL_HOST"
	if ! grep -qF "$HBA_MARKER" "$hba"; then
		local tmp
		tmp=$(mktemp)
		{
			printf '%s: trust user postgres from this machine over TCP (dev/test only)\n' "$HBA_MARKER"
			printf 'host    all    postgres    127.0.0.1/32    trust\n'
			printf 'host    all    postgres    ::1/128         trust\n'
			cat "$hba"
		} >"$tmp"
		cat "$tmp" >"$hba" # keeps the file's owner and mode
		rm -f "$tmp"
		say "added trust for user postgres from 127.0.0.1/32 and ::1/128 to $hba (fine for a dev/test machine, not for production)"
	fi
	pg_ctlcluster --skip-systemctl-redirect "$version" "$name" reload
	say "reloaded cluster $version/$name"
}

# ensure_login makes sure user postgres gets into the local server on port $1
# without a password, fixing pg_hba.conf when that is ours to fix (root and a
# Debian cluster), and then reports the URL.
ensure_login() {
	local port=$1 url cluster
	url=$(local_url "$port")
	if ! can_login "$url"; then
		cluster=$(cluster_on_port "$port")
		if ! is_root || [ -z "$cluster" ]; then
			die "$LOCAL_HOST:$port answers but user postgres cannot connect without a password: $(last_error)
  fix one of: set TEST_DATABASE_URL (and DATABASE_URL) to a URL with a password, e.g. postgres://postgres:PASSWORD@$LOCAL_HOST:$port/postgres?sslmode=disable;
  or allow trust for user postgres from 127.0.0.1/32 in that server's pg_hba.conf (run this script as root to do it on a Debian cluster)"
		fi
		say "user postgres needs a password on $LOCAL_HOST:$port ($(last_error))"
		# shellcheck disable=SC2086 # "$cluster" is "<version> <name>"
		allow_trust $cluster
		can_login "$url" ||
			die "user postgres still cannot connect to $LOCAL_HOST:$port after allowing trust: $(last_error)"
	fi
	say "user postgres connects to $LOCAL_HOST:$port without a password"
	check_pg_dump_version "$url"
	say "ready: $url"
}

# newest_cluster prints "<version> main" for the newest installed Debian
# cluster named main, if any.
newest_cluster() {
	[ -d /etc/postgresql ] || return 0
	local version
	for version in $(ls -1 /etc/postgresql | sort -V -r); do
		if [ -f "/etc/postgresql/$version/main/postgresql.conf" ]; then
			printf '%s main\n' "$version"
			return 0
		fi
	done
}

# cluster_port prints the port of cluster $1/$2 from its configuration.
cluster_port() {
	local port
	port=$(sed -nE 's/^[[:space:]]*port[[:space:]]*=[[:space:]]*([0-9]+).*/\1/p' "/etc/postgresql/$1/$2/postgresql.conf" | tail -n1)
	printf '%s' "${port:-5432}"
}

# start_cluster starts Debian cluster $1/$2 unless it runs, waits until it
# answers, and then makes sure user postgres gets in.
start_cluster() {
	local version=$1 name=$2 port
	port=$(cluster_port "$version" "$name")
	if pg_isready -q -h "$LOCAL_HOST" -p "$port" -t 1; then
		say "cluster $version/$name already answers on port $port"
	else
		say "starting cluster $version/$name on port $port with pg_ctlcluster"
		pg_ctlcluster --skip-systemctl-redirect "$version" "$name" start ||
			die "could not start cluster $version/$name; it needs root or the postgres OS user: sudo pg_ctlcluster $version $name start"
		pg_isready -q -h "$LOCAL_HOST" -p "$port" -t 30 ||
			die "cluster $version/$name started but does not answer on $LOCAL_HOST:$port; see /var/log/postgresql/postgresql-$version-$name.log"
	fi
	if [ "$port" != "$LOCAL_PORT" ]; then
		say "note: cluster $version/$name uses port $port, not $LOCAL_PORT; the tests find it only through TEST_DATABASE_URL=$(local_url "$port")"
	fi
	ensure_login "$port"
}

main() {
	ensure_client_tools

	# 1. URLs given on purpose must work; nothing else is tried.
	local given=0 var url
	for var in DATABASE_URL TEST_DATABASE_URL; do
		url=${!var:-}
		[ -n "$url" ] || continue
		given=1
		pg_isready -q -d "$url" -t 5 ||
			die "$var=$(mask "$url") does not answer; start that server, fix the URL, or unset $var"
		can_login "$url" ||
			die "$var=$(mask "$url") answers but refuses the connection: $(last_error)"
		say "$var answers: $(mask "$url")"
		check_pg_dump_version "$url"
	done
	if [ "$given" -eq 1 ]; then
		say "ready: using the given URL(s)"
		return 0
	fi

	# 2. A server already on 127.0.0.1:5432.
	if pg_isready -q -h "$LOCAL_HOST" -p "$LOCAL_PORT" -t 2; then
		say "a server answers on $LOCAL_HOST:$LOCAL_PORT"
		ensure_login "$LOCAL_PORT"
		return 0
	fi
	say "no server answers on $LOCAL_HOST:$LOCAL_PORT"

	# 3. An installed cluster.
	local cluster
	cluster=$(newest_cluster)
	if [ -n "$cluster" ] && have pg_ctlcluster; then
		say "found installed cluster ${cluster/ //}"
		# shellcheck disable=SC2086 # "$cluster" is "<version> <name>"
		start_cluster $cluster
		return 0
	fi

	# 4. Install one.
	if is_root && have apt-get; then
		say "no PostgreSQL cluster installed"
		apt_install postgresql postgresql-client
		cluster=$(newest_cluster)
		if [ -z "$cluster" ]; then
			local version
			version=$(ls -1 /usr/lib/postgresql 2>/dev/null | sort -V | tail -n1)
			[ -n "$version" ] || die "postgresql installed but no server version found under /usr/lib/postgresql"
			say "creating cluster $version/main"
			pg_createcluster "$version" main >/dev/null
			cluster="$version main"
		fi
		# shellcheck disable=SC2086 # "$cluster" is "<version> <name>"
		start_cluster $cluster
		return 0
	fi

	die "no PostgreSQL server found, and not root (or no apt-get) to install one. Any one of these fixes it:
  - point at a server you have: export TEST_DATABASE_URL=postgres://USER:PASSWORD@HOST:5432/DBNAME?sslmode=disable (and DATABASE_URL for the demo)
  - install PostgreSQL: sudo apt-get install postgresql postgresql-client (or run this script with sudo), then run it again
  - with Docker: make db-up (docker compose up -d postgres), then run this again"
}

main "$@"
