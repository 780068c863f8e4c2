package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5/pgxpool"
)

// reportedSettings are the server settings that move these numbers: memory,
// durability and WAL, checkpoints, vacuum, the planner, connections. Each is
// read with current_setting, so sizes and times come with their units.
var reportedSettings = []string{
	"server_version",
	"shared_buffers", "effective_cache_size", "work_mem", "maintenance_work_mem", "huge_pages",
	"fsync", "synchronous_commit", "full_page_writes", "wal_level", "wal_compression", "wal_buffers",
	"wal_writer_delay", "commit_delay", "max_wal_size", "min_wal_size",
	"checkpoint_timeout", "checkpoint_completion_target",
	"autovacuum", "autovacuum_naptime", "autovacuum_vacuum_scale_factor", "autovacuum_vacuum_insert_scale_factor",
	"jit", "random_page_cost", "effective_io_concurrency", "default_statistics_target",
	"max_connections", "max_worker_processes", "max_parallel_workers_per_gather",
	"shared_preload_libraries", "track_io_timing",
}

// pgSetting is one server setting as the run saw it.
type pgSetting struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// readPGSettings reads reportedSettings in order; a setting this server
// does not know reads as "(unknown)".
func readPGSettings(ctx context.Context, pool *pgxpool.Pool) ([]pgSetting, error) {
	rows, err := pool.Query(ctx, `SELECT n, coalesce(current_setting(n, true), '(unknown)')
		FROM unnest($1::text[]) WITH ORDINALITY AS t(n, i) ORDER BY i`, reportedSettings)
	if err != nil {
		return nil, fmt.Errorf("read server settings: %w", err)
	}
	defer rows.Close()
	var out []pgSetting
	for rows.Next() {
		var s pgSetting
		if err := rows.Scan(&s.Name, &s.Value); err != nil {
			return nil, fmt.Errorf("read server settings: %w", err)
		}
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read server settings: %w", err)
	}
	// Not a server setting but as telling: whether the bench's connections
	// (all made from the same URL) are encrypted, which costs both client
	// and server CPU on every round trip.
	var ssl bool
	if err := pool.QueryRow(ctx, "SELECT coalesce((SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()), false)").Scan(&ssl); err != nil {
		return nil, fmt.Errorf("read connection TLS: %w", err)
	}
	out = append(out, pgSetting{Name: connectionSSLSetting, Value: map[bool]string{true: "on", false: "off"}[ssl]})
	return out, nil
}

// connectionSSLSetting is the pseudo-setting that tells whether the bench's
// connections use TLS.
const connectionSSLSetting = "bench_connection_ssl"

// settingValue returns the value of the named setting, or "" when it is not
// among settings.
func settingValue(settings []pgSetting, name string) string {
	for _, s := range settings {
		if s.Name == name {
			return s.Value
		}
	}
	return ""
}

// formatSettings lays the settings out as "name=value" pairs, several to a
// line of at most width characters, each line starting with indent.
func formatSettings(settings []pgSetting, indent string, width int) []string {
	var lines []string
	cur := ""
	for _, s := range settings {
		pair := s.Name + "=" + s.Value
		switch {
		case cur == "":
			cur = indent + pair
		case len(cur)+2+len(pair) > width:
			lines = append(lines, cur)
			cur = indent + pair
		default:
			cur += ", " + pair
		}
	}
	if cur != "" {
		lines = append(lines, cur)
	}
	return lines
}

// settingsWarnings says which settings make these numbers unlike a
// production server's, so nobody reads a number that rests on them as one
// that a long run could keep up.
func settingsWarnings(settings []pgSetting) []string {
	var w []string
	if v := settingValue(settings, "autovacuum"); v == "off" {
		w = append(w, "autovacuum is off on this server: dead rows of finished runs are never vacuumed in the background, "+
			"which a long-running deployment cannot count on (the bench ANALYZEs what it loads itself)")
	}
	if settingValue(settings, connectionSSLSetting) == "on" {
		w = append(w, "the bench's connections use TLS (add sslmode=disable to DATABASE_URL for a local server): "+
			"every round trip pays for encryption on both ends, the SQL loop's few large ones least")
	}
	for _, name := range []string{"fsync", "synchronous_commit", "full_page_writes"} {
		if v := settingValue(settings, name); v == "off" {
			w = append(w, name+" is off: commits are cheaper here than on a durable server")
		}
	}
	return w
}

// settingsLine is the short one-line summary kept in results.json's
// "postgres" field, as before.
func settingsLine(settings []pgSetting) string {
	var parts []string
	for _, name := range []string{"autovacuum", "fsync", "synchronous_commit", "shared_buffers", "max_wal_size", "max_connections"} {
		parts = append(parts, name+"="+settingValue(settings, name))
	}
	return "PostgreSQL " + settingValue(settings, "server_version") + " (" + strings.Join(parts, ", ") + ")"
}
