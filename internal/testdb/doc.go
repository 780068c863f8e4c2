// Package testdb gives every test in millrace a real PostgreSQL server.
//
// The server is chosen once per test binary, on first use, in this order:
//
//  1. TEST_DATABASE_URL, when set. If it does not answer, the test fails: a
//     URL that was given on purpose is never silently replaced.
//  2. A server on 127.0.0.1:5432 that lets user postgres into database
//     postgres without a password, if it answers within about two seconds.
//  3. A throwaway cluster: initdb from the highest PostgreSQL found under
//     /usr/lib/postgresql/*/bin (or initdb on PATH) into a temporary
//     directory, started with pg_ctl on a free port of 127.0.0.1, with trust
//     authentication and fsync off. When the tests run as root, initdb and
//     postgres run as the postgres OS user. Main stops it and deletes the
//     directory when the test binary ends; a cluster left behind by a binary
//     that crashed is removed by the next binary that starts one.
//  4. A container from testcontainers-go's postgres module, when a Docker
//     engine answers. The code that starts it is the program in
//     containerpg, a module of its own so that testcontainers-go and the
//     Docker modules stay out of millrace's module graph (and out of the
//     go.sum of applications that use millrace). testdb builds it with the
//     go command, runs it, reads the connection string it prints, and at the
//     end closes its standard input, on which it terminates the container.
//
// If none of these works, the test fails with a message that lists what was
// tried and how to get PostgreSQL. A line on standard error says which server
// was chosen and why (go test shows it with -v or when the package fails).
//
// The environment variable MILLRACE_TESTDB forces one path: "url", "local",
// "initdb" or "container" ("" or "auto" means the order above).
//
// Every package whose tests use testdb declares
//
//	func TestMain(m *testing.M) { testdb.Main(m) }
//
// which also checks for leaked goroutines. Tests then call [NewSchema] (the
// usual case: a private schema on the shared server, so tests can run with
// t.Parallel) or [NewDatabase] (a private database, for tests that need the
// public schema to themselves).
//
// [PgBouncer] puts a PgBouncer in transaction pooling mode in front of the
// test server (installing Debian's package first when it is missing and the
// tests run as root), for the tests of millrace behind a pooler.
//
// testdb only provides servers, schemas and databases. Most tests want a
// schema with millrace's tables and the driver on it: internal/testfixture
// builds that on top of this package.
package testdb
