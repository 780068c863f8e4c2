package testdb

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// The ways to get a server, as named by MILLRACE_TESTDB.
const (
	kindURL       = "url"
	kindLocal     = "local"
	kindInitdb    = "initdb"
	kindContainer = "container"
)

const (
	// envURL names the server to use, when set.
	envURL = "TEST_DATABASE_URL"
	// envMode forces one way of getting the server.
	envMode = "MILLRACE_TESTDB"

	// localURL is the server that a developer machine or CI job usually
	// has: Debian's postgresql package, docker-compose.yml, or a CI service.
	localURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

	// urlTimeout bounds the check that TEST_DATABASE_URL answers.
	urlTimeout = 10 * time.Second
	// localTimeout bounds the check that the local server answers.
	localTimeout = 2 * time.Second
)

// server is the PostgreSQL server the tests of this binary use.
type server struct {
	kind    string // kindURL, kindLocal, kindInitdb or kindContainer
	url     string // superuser connection string (AdminURL)
	display string // user@host:port/database, without the password, for messages

	cluster   *cluster    // set for kindInitdb
	container *helperProc // set for kindContainer: the process keeping the container
	closed    bool        // close has run
}

// close stops the throwaway cluster or container, if this binary started
// one. It is safe to call more than once.
func (s *server) close() error {
	if s.closed {
		return nil
	}
	s.closed = true
	switch {
	case s.cluster != nil:
		return s.cluster.stop()
	case s.container != nil:
		return stopContainer(s.container)
	}
	return nil
}

// ddl runs one statement on the maintenance database over a connection of
// its own, so that CREATE DATABASE (which cannot run in a transaction) works
// and no long-lived admin pool is needed.
func (s *server) ddl(sql string) error {
	serverMu.RLock()
	defer serverMu.RUnlock()
	ctx, cancel := context.WithTimeout(context.Background(), ddlTimeout)
	defer cancel()

	conn, err := connectAdmin(ctx, s.url)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, sql); err != nil {
		return fmt.Errorf("%s: %w", sql, err)
	}
	return nil
}

// connectAdmin connects to url, retrying while the server says it is full
// (too many connections, which many parallel test binaries can cause) or not
// ready yet (starting up or shutting down), until ctx ends.
func connectAdmin(ctx context.Context, url string) (*pgx.Conn, error) {
	backoff := 20 * time.Millisecond
	for {
		conn, err := pgx.Connect(ctx, url)
		if err == nil {
			return conn, nil
		}
		var pgErr *pgconn.PgError
		retryable := errors.As(err, &pgErr) &&
			(pgErr.Code == "53300" || pgErr.Code == "57P03") // too_many_connections, cannot_connect_now
		if !retryable {
			return nil, fmt.Errorf("connect: %w", err)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("connect (server kept refusing until the deadline): %w", err)
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, time.Second)
	}
}

// probe connects to url within timeout and returns the server's version.
func probe(url string, timeout time.Duration) (version string, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return "", err
	}
	defer conn.Close(context.Background())
	if err := conn.QueryRow(ctx, "SHOW server_version").Scan(&version); err != nil {
		return "", fmt.Errorf("query server version: %w", err)
	}
	return version, nil
}

// describe returns user@host:port/database for a connection string, without
// its password, or a placeholder when it does not parse.
func describe(url string) string {
	cfg, err := pgconn.ParseConfig(url)
	if err != nil {
		return "(unparsable connection string)"
	}
	return fmt.Sprintf("%s@%s:%d/%s", cfg.User, cfg.Host, cfg.Port, cfg.Database)
}

// chooseServer picks the server as the package documentation describes and
// logs the choice on standard error.
func chooseServer() (*server, error) {
	mode := strings.TrimSpace(os.Getenv(envMode))
	switch mode {
	case "auto":
		mode = ""
	case "", kindURL, kindLocal, kindInitdb, kindContainer:
	default:
		return nil, fmt.Errorf("testdb: %s=%q is not one of url, local, initdb, container (or empty for automatic)", envMode, mode)
	}
	want := func(kind string) bool { return mode == "" || mode == kind }
	forced := func(err error) error { return fmt.Errorf("testdb: %s=%s: %w", envMode, mode, err) }

	var skipped []string
	choose := func(srv *server, version string) (*server, error) {
		how := "the automatic order"
		if mode != "" {
			how = envMode + "=" + mode
		}
		what := map[string]string{
			kindURL:       "the server of " + envURL,
			kindLocal:     "the local server",
			kindInitdb:    "a throwaway cluster",
			kindContainer: "a container",
		}[srv.kind]
		line := fmt.Sprintf("testdb: using %s, %s (PostgreSQL %s; chosen by %s)", what, srv.display, version, how)
		if srv.cluster != nil {
			line += "; data in " + srv.cluster.dir
		}
		if len(skipped) > 0 {
			line += "; skipped " + strings.Join(skipped, "; ")
		}
		fmt.Fprintln(os.Stderr, line)
		return srv, nil
	}

	if want(kindURL) {
		url := os.Getenv(envURL)
		if url == "" {
			if mode == kindURL {
				return nil, forced(fmt.Errorf("%s is not set", envURL))
			}
			skipped = append(skipped, envURL+" (not set)")
		} else {
			// A URL given on purpose must work: falling back to some other
			// server would hide the mistake.
			version, err := probe(url, urlTimeout)
			if err != nil {
				return nil, fmt.Errorf("testdb: %s is set (%s) but the server does not answer within %v: %w; fix it, or unset it to let testdb find or start a server", envURL, describe(url), urlTimeout, err)
			}
			return choose(&server{kind: kindURL, url: url, display: describe(url)}, version)
		}
	}

	if want(kindLocal) {
		version, err := probe(localURL, localTimeout)
		if err == nil {
			return choose(&server{kind: kindLocal, url: localURL, display: describe(localURL)}, version)
		}
		if mode == kindLocal {
			return nil, forced(fmt.Errorf("no server lets user postgres into database postgres on 127.0.0.1:5432 without a password within %v: %w", localTimeout, err))
		}
		skipped = append(skipped, fmt.Sprintf("127.0.0.1:5432 (%v)", err))
	}

	if want(kindInitdb) {
		srv, version, err := tryCluster()
		if err == nil {
			return choose(srv, version)
		}
		if mode == kindInitdb {
			return nil, forced(err)
		}
		skipped = append(skipped, fmt.Sprintf("throwaway cluster (%v)", err))
	}

	if want(kindContainer) {
		srv, version, err := tryContainer()
		if err == nil {
			return choose(srv, version)
		}
		if mode == kindContainer {
			return nil, forced(err)
		}
		skipped = append(skipped, fmt.Sprintf("container (%v)", err))
	}

	return nil, errors.New("testdb: no PostgreSQL server for the tests. Tried:\n  - " +
		strings.Join(skipped, "\n  - ") + `
Any one of these fixes it:
  - point the tests at a server you have: export TEST_DATABASE_URL='postgres://USER:PASSWORD@HOST:5432/DBNAME?sslmode=disable'
    (the user needs to create schemas and databases; a superuser is simplest)
  - install PostgreSQL: on Debian/Ubuntu, sudo apt-get install postgresql (or run scripts/ensure-postgres.sh);
    testdb then uses the server on 127.0.0.1:5432, or starts a throwaway cluster with its initdb
  - with Docker: make db-up (starts docker-compose.yml's postgres on 127.0.0.1:5432),
    or just keep a Docker engine running and testdb starts a container itself`)
}

// tryCluster starts a throwaway cluster and checks that it answers.
func tryCluster() (*server, string, error) {
	c, err := startCluster()
	if err != nil {
		return nil, "", err
	}
	url := c.url()
	version, err := probe(url, 30*time.Second)
	if err != nil {
		err = fmt.Errorf("cluster started but does not answer on %s: %w (server log: %s)", describe(url), err, c.logFile)
		if stopErr := c.stop(); stopErr != nil {
			err = fmt.Errorf("%w; stopping it failed too: %v", err, stopErr)
		}
		return nil, "", err
	}
	return &server{kind: kindInitdb, url: url, display: describe(url), cluster: c}, version, nil
}

// tryContainer starts a container and checks that it answers.
func tryContainer() (*server, string, error) {
	ctr, url, err := startContainer()
	if err != nil {
		return nil, "", err
	}
	version, err := probe(url, 30*time.Second)
	if err != nil {
		err = fmt.Errorf("container started but does not answer on %s: %w", describe(url), err)
		if stopErr := stopContainer(ctr); stopErr != nil {
			err = fmt.Errorf("%w; stopping it failed too: %v", err, stopErr)
		}
		return nil, "", err
	}
	return &server{kind: kindContainer, url: url, display: describe(url), container: ctr}, version, nil
}
