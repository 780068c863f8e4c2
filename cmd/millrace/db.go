package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/jackc/pgx/v5/pgxpool"
)

// defaultConnectTimeout bounds connecting when the URL sets no
// connect_timeout.
const defaultConnectTimeout = 10 * time.Second

// connect opens a pool and checks the server answers, turning the usual
// failures into one line with a hint.
func connect(ctx context.Context, g *globalFlags) (*pgxpool.Pool, error) {
	if g.databaseURL == "" {
		return nil, usagef("no database given: pass --database-url or set DATABASE_URL (e.g. postgres://postgres@127.0.0.1:5432/postgres)")
	}
	cfg, err := pgxpool.ParseConfig(g.databaseURL)
	if err != nil {
		return nil, usagef("invalid database URL: %v", redact(err.Error()))
	}
	// connect_timeout in the URL (or PGCONNECT_TIMEOUT) wins; without
	// either, give up on a silent server after 10 s.
	if cfg.ConnConfig.ConnectTimeout == 0 {
		cfg.ConnConfig.ConnectTimeout = defaultConnectTimeout
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", describe(cfg), err)
	}
	pingCtx, cancel := context.WithTimeout(ctx, cfg.ConnConfig.ConnectTimeout+5*time.Second)
	defer cancel()
	if err := pool.Ping(pingCtx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("connect to %s: %s", describe(cfg), hintFor(err))
	}
	return pool, nil
}

func describe(cfg *pgxpool.Config) string {
	c := cfg.ConnConfig
	return fmt.Sprintf("database %q on %s:%d as %q", c.Database, c.Host, c.Port, c.User)
}

// hintFor explains a connection error in one line.
func hintFor(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code {
		case "28P01", "28000":
			return pgErr.Message + " (check the user and password in the database URL)"
		case "3D000":
			return pgErr.Message + " (create it with createdb, or fix the database name in the URL)"
		}
		return pgErr.Message
	}
	var tooLong *pgproto3.ExceededMaxBodyLenErr
	if errors.As(err, &tooLong) || strings.Contains(err.Error(), "unknown message type") ||
		strings.Contains(err.Error(), "received unexpected message") || strings.Contains(err.Error(), "invalid message") {
		return "the server there does not speak PostgreSQL's protocol (is the port right? Postgres listens on 5432 by default)"
	}
	var netErr *net.OpError
	if errors.As(err, &netErr) || strings.Contains(err.Error(), "connection refused") {
		return "server not reachable: " + lastPart(err) + " (is Postgres running? `make db-up` starts one with Docker; scripts/ensure-postgres.sh sets one up on Debian)"
	}
	if errors.Is(err, context.DeadlineExceeded) || strings.Contains(err.Error(), "timeout") {
		return "server did not answer in time (check host and port; connect_timeout in the URL sets how long to wait, 10 s by default)"
	}
	return lastPart(err)
}

// lastPart keeps the innermost cause of a long pgx error chain.
func lastPart(err error) string {
	msg := err.Error()
	if i := strings.LastIndex(msg, ": "); i >= 0 && i+2 < len(msg) {
		return msg[i+2:]
	}
	return msg
}

// redact hides a password that a parse error may echo.
func redact(s string) string {
	if i := strings.Index(s, "://"); i >= 0 {
		if at := strings.Index(s[i:], "@"); at >= 0 {
			return s[:i+3] + "***" + s[i+at:]
		}
	}
	return s
}

// oneLine flattens an error message onto one line.
func oneLine(err error) string {
	return strings.Join(strings.Fields(err.Error()), " ")
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
