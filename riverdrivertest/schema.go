package riverdrivertest

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/millrace/millrace/driver"
)

func (s *suite[TTx]) testExec(t *testing.T) {
	s.run(t, "WithArgs", func(t *testing.T, e *env[TTx]) {
		e.rawExec(t, e.sql(`INSERT INTO `+e.table("river_queue")+` (name, updated_at) VALUES ($1::text, now())`,
			`INSERT INTO `+e.table("river_queue")+` (name) VALUES (?)`), "raw_queue")
		q, err := e.exec.QueueGet(e.ctx, &driver.QueueGetParams{Schema: e.schema, Name: "raw_queue"})
		requireNoError(t, err, "QueueGet of the queue inserted with Exec")
		requireEqual(t, q.Name, "raw_queue", "name")
	})

	s.run(t, "Error", func(t *testing.T, e *env[TTx]) {
		if err := e.exec.Exec(e.ctx, `SELECT * FROM `+e.table("no_such_table")); err == nil {
			t.Fatal("Exec of a query on a missing table succeeded")
		}
	})
}

func (s *suite[TTx]) testExists(t *testing.T) {
	s.run(t, "Tables", func(t *testing.T, e *env[TTx]) {
		_, other := s.factory(e.ctx, t) // a fresh, empty schema
		cases := []struct {
			schema, table string
			want          bool
		}{
			{e.name, "river_job", true},
			{e.name, "river_leader", true},
			{e.name, "no_such_table", false},
			{"", "river_job", true}, // through search_path
			{"", "no_such_table", false},
			{other, "river_job", false},
			{"no_such_schema_x", "river_job", false},
		}
		for _, c := range cases {
			if c.schema == other && e.sameSchema(other) {
				continue // one schema per database: see sameSchema
			}
			got, err := e.exec.TableExists(e.ctx, &driver.TableExistsParams{Schema: c.schema, Table: c.table})
			requireNoError(t, err, "TableExists")
			if got != c.want {
				t.Fatalf("TableExists(%q, %q) = %v, want %v", c.schema, c.table, got, c.want)
			}
		}
	})

	s.run(t, "Columns", func(t *testing.T, e *env[TTx]) {
		_, other := s.factory(e.ctx, t)
		cases := []struct {
			schema, table, column string
			want                  bool
		}{
			{e.name, "river_job", "unique_states", true},
			{e.name, "river_migration", "line", true},
			{e.name, "river_job", "no_such_column", false},
			{e.name, "no_such_table", "id", false},
			{"", "river_job", "unique_states", true},
			{other, "river_job", "id", false},
		}
		for _, c := range cases {
			if c.schema == other && e.sameSchema(other) {
				continue // one schema per database: see sameSchema
			}
			got, err := e.exec.ColumnExists(e.ctx, &driver.ColumnExistsParams{Schema: c.schema, Table: c.table, Column: c.column})
			requireNoError(t, err, "ColumnExists")
			if got != c.want {
				t.Fatalf("ColumnExists(%q, %q, %q) = %v, want %v", c.schema, c.table, c.column, got, c.want)
			}
		}
	})

	s.run(t, "Indexes", func(t *testing.T, e *env[TTx]) {
		_, other := s.factory(e.ctx, t)
		for _, c := range []struct {
			schema, index string
			want          bool
		}{
			{e.name, "river_job_prioritized_fetching_index", true},
			{e.name, "river_job_prioritized_fetching_index_ccnew", false},
			{"", "river_job_kind", true},
			{other, "river_job_kind", false},
		} {
			if c.schema == other && e.sameSchema(other) {
				continue // one schema per database: see sameSchema
			}
			got, err := e.exec.IndexExists(e.ctx, &driver.IndexParams{Schema: c.schema, Index: c.index})
			requireNoError(t, err, "IndexExists")
			if got != c.want {
				t.Fatalf("IndexExists(%q, %q) = %v, want %v", c.schema, c.index, got, c.want)
			}
		}
		requireNoError(t, e.exec.IndexReindex(e.ctx, &driver.IndexParams{Schema: e.name, Index: "river_job_kind"}), "IndexReindex")
		// Reindexing leaves no _ccnew copy behind and the index in place.
		for index, want := range map[string]bool{"river_job_kind": true, "river_job_kind_ccnew": false} {
			got, err := e.exec.IndexExists(e.ctx, &driver.IndexParams{Schema: e.name, Index: index})
			requireNoError(t, err, "IndexExists")
			if got != want {
				t.Fatalf("after reindex, IndexExists(%q) = %v", index, got)
			}
		}
		if err := e.exec.IndexReindex(e.ctx, &driver.IndexParams{Schema: e.name, Index: "no_such_index"}); err == nil {
			t.Fatal("reindexing a missing index succeeded")
		}
	})

	s.run(t, "Schemas", func(t *testing.T, e *env[TTx]) {
		for schema, want := range map[string]bool{e.name: true, "no_such_schema_x": false} {
			got, err := e.exec.SchemaExists(e.ctx, schema)
			requireNoError(t, err, "SchemaExists")
			if got != want {
				t.Fatalf("SchemaExists(%q) = %v, want %v", schema, got, want)
			}
		}
	})
}

func (s *suite[TTx]) testAdvisoryLock(t *testing.T) {
	s.run(t, "BlocksUntilCommit", func(t *testing.T, e *env[TTx]) {
		e.requireRowLocks(t)
		// Keys unique to this schema, so parallel tests never share them.
		key := int64(len(e.name))<<40 ^ int64(hashString(e.name))
		first, err := e.exec.Begin(e.ctx)
		requireNoError(t, err, "Begin")
		defer func() { _ = first.Rollback(context.WithoutCancel(e.ctx)) }()
		requireNoError(t, first.PGAdvisoryXactLock(e.ctx, key), "PGAdvisoryXactLock in the first transaction")

		// A second transaction waits for the lock: it is still waiting
		// when its short deadline passes.
		second, err := e.exec.Begin(e.ctx)
		requireNoError(t, err, "Begin")
		shortCtx, cancel := context.WithTimeout(e.ctx, 300*time.Millisecond)
		err = second.PGAdvisoryXactLock(shortCtx, key)
		cancel()
		_ = second.Rollback(context.WithoutCancel(e.ctx))
		if err == nil {
			t.Fatal("a second transaction took the advisory lock the first one holds")
		}
		if !errors.Is(shortCtx.Err(), context.DeadlineExceeded) {
			t.Fatalf("the second lock attempt failed before its deadline, not by waiting: %v", err)
		}

		// Another key is free meanwhile.
		other, err := e.exec.Begin(e.ctx)
		requireNoError(t, err, "Begin")
		requireNoError(t, other.PGAdvisoryXactLock(e.ctx, key+1), "PGAdvisoryXactLock of another key")
		requireNoError(t, other.Rollback(e.ctx), "Rollback")

		// Once the first transaction ends, the lock is free.
		requireNoError(t, first.Commit(e.ctx), "Commit of the first transaction")
		third, err := e.exec.Begin(e.ctx)
		requireNoError(t, err, "Begin")
		requireNoError(t, third.PGAdvisoryXactLock(e.ctx, key), "PGAdvisoryXactLock after the holder committed")
		requireNoError(t, third.Commit(e.ctx), "Commit")
	})
}

// hashString is FNV-1a, for advisory lock keys.
func hashString(s string) uint32 {
	h := uint32(2166136261)
	for i := 0; i < len(s); i++ {
		h ^= uint32(s[i])
		h *= 16777619
	}
	return h
}

func (s *suite[TTx]) testMigration(t *testing.T) {
	getAll := func(t *testing.T, e *env[TTx], line string) []int {
		t.Helper()
		ms, err := e.exec.MigrationGetAll(e.ctx, &driver.MigrationParams{Schema: e.schema, Line: line})
		requireNoError(t, err, "MigrationGetAll "+line)
		versions := make([]int, len(ms))
		for i, m := range ms {
			versions[i] = m.Version
			if m.Line != line {
				t.Fatalf("migration %d: line %q, want %q", m.Version, m.Line, line)
			}
			if m.CreatedAt.IsZero() || m.CreatedAt.After(time.Now().Add(clockSlack)) {
				t.Fatalf("migration %d: created_at %v", m.Version, m.CreatedAt)
			}
		}
		return versions
	}

	s.run(t, "Current", func(t *testing.T, e *env[TTx]) {
		requireEqual(t, getAll(t, e, "main"), []int{1, 2, 3, 4, 5, 6, 7, 8}, "versions of line main")
		requireEqual(t, getAll(t, e, "other"), []int{}, "versions of an unknown line")
	})

	s.run(t, "InsertAndDelete", func(t *testing.T, e *env[TTx]) {
		before := now()
		ms, err := e.exec.MigrationInsertMany(e.ctx, &driver.MigrationInsertManyParams{Schema: e.schema, Line: "other", Versions: []int{1, 2}})
		after := now()
		requireNoError(t, err, "MigrationInsertMany")
		requireEqual(t, len(ms), 2, "recorded versions")
		for i, m := range ms {
			requireEqual(t, m.Line, "other", "line")
			requireEqual(t, m.Version, i+1, "version")
			requireBetween(t, m.CreatedAt, before, after, "created_at")
		}
		requireEqual(t, getAll(t, e, "other"), []int{1, 2}, "versions of line other")
		requireNoError(t, e.exec.MigrationDeleteMany(e.ctx, &driver.MigrationInsertManyParams{Schema: e.schema, Line: "other", Versions: []int{1}}),
			"MigrationDeleteMany")
		requireEqual(t, getAll(t, e, "other"), []int{2}, "versions of line other after a delete")
		requireEqual(t, getAll(t, e, "main"), []int{1, 2, 3, 4, 5, 6, 7, 8}, "versions of line main (untouched)")
		if _, err := e.exec.MigrationInsertMany(e.ctx, &driver.MigrationInsertManyParams{Schema: e.schema, Line: "other", Versions: []int{2}}); err == nil {
			t.Fatal("recording an applied version twice succeeded")
		}
	})

	s.runBare(t, "PreVersion5Shape", func(t *testing.T, e *env[TTx]) {
		e.migrate(t, 4)
		hasLine, err := e.exec.ColumnExists(e.ctx, &driver.ColumnExistsParams{Schema: e.schema, Table: "river_migration", Column: "line"})
		requireNoError(t, err, "ColumnExists")
		if hasLine {
			if e.dialect == DialectSQLite {
				// The SQLite translation of line main never had River's
				// first shape: its river_migration has line from version 1.
				t.Skip("SQLite's river_migration has the line column at every version")
			}
			t.Fatal("river_migration has a line column at version 4; this test needs the first shape")
		}
		requireEqual(t, getAll(t, e, "main"), []int{1, 2, 3, 4}, "versions read from the first shape")
		requireEqual(t, getAll(t, e, "other"), []int{}, "versions of another line in the first shape")

		ms, err := e.exec.MigrationInsertMany(e.ctx, &driver.MigrationInsertManyParams{Schema: e.schema, Line: "main", Versions: []int{7}})
		requireNoError(t, err, "MigrationInsertMany in the first shape")
		requireEqual(t, len(ms), 1, "recorded versions")
		requireEqual(t, ms[0].Line, "main", "line")
		requireEqual(t, ms[0].Version, 7, "version")
		requireEqual(t, getAll(t, e, "main"), []int{1, 2, 3, 4, 7}, "versions after recording one")
		requireNoError(t, e.exec.MigrationDeleteMany(e.ctx, &driver.MigrationInsertManyParams{Schema: e.schema, Line: "main", Versions: []int{7}}),
			"MigrationDeleteMany in the first shape")
		requireEqual(t, getAll(t, e, "main"), []int{1, 2, 3, 4}, "versions after deleting one")

		if _, err := e.exec.MigrationInsertMany(e.ctx, &driver.MigrationInsertManyParams{Schema: e.schema, Line: "other", Versions: []int{1}}); err == nil {
			t.Fatal("recording a version of another line in the first shape (no line column) succeeded")
		}
	})

	s.runBare(t, "NoTable", func(t *testing.T, e *env[TTx]) {
		requireEqual(t, getAll(t, e, "main"), []int{}, "versions without a river_migration table")
	})
}

func (s *suite[TTx]) testNotifyMany(t *testing.T) {
	s.run(t, "Payloads", func(t *testing.T, e *env[TTx]) {
		const topic = "custom_topic"
		l := e.listen(t, e.schema, topic)
		payloads := []string{`{"n":1}`, `{"n":2}`, `not json at all`}
		requireNoError(t, e.exec.NotifyMany(e.ctx, &driver.NotifyManyParams{Schema: e.schema, Topic: topic, Payloads: payloads}), "NotifyMany")
		for _, want := range payloads {
			n := e.next(t, l)
			requireEqual(t, *n, driver.Notification{Topic: topic, Payload: want}, "notification")
		}
		requireNoError(t, e.exec.NotifyMany(e.ctx, &driver.NotifyManyParams{Schema: e.schema, Topic: topic}), "NotifyMany of no payloads")
		e.requireQuiet(t, l, e.schema, topic)
	})

	s.run(t, "Transactional", func(t *testing.T, e *env[TTx]) {
		l := e.listen(t, e.schema, driver.TopicControl)
		tx, err := e.exec.Begin(e.ctx)
		requireNoError(t, err, "Begin")
		defer func() { _ = tx.Rollback(context.WithoutCancel(e.ctx)) }()
		requireNoError(t, tx.NotifyMany(e.ctx, &driver.NotifyManyParams{Schema: e.schema, Topic: driver.TopicControl, Payloads: []string{`{"in":"tx"}`}}),
			"NotifyMany in a transaction")
		// Not delivered before the commit.
		e.requireQuiet(t, l, e.schema, driver.TopicControl)
		requireNoError(t, tx.Commit(e.ctx), "Commit")
		e.requireNext(t, l, driver.TopicControl, map[string]any{"in": "tx"})
	})
}

// requireClosed checks that err reports a listener that is not connected.
func requireClosed(t *testing.T, err error, what string) {
	t.Helper()
	requireErrorIs(t, err, driver.ErrClosed, what)
}

func (s *suite[TTx]) testListener(t *testing.T) {
	newListener := func(t *testing.T, e *env[TTx], schema string) driver.Listener {
		t.Helper()
		if !e.drv.SupportsListener() {
			t.Skip("driver does not support LISTEN/NOTIFY (SupportsListener is false)")
		}
		l, err := e.drv.GetListener(schema)
		requireNoError(t, err, "GetListener")
		t.Cleanup(func() { _ = l.Close(context.WithoutCancel(e.ctx)) })
		return l
	}
	notify := func(t *testing.T, e *env[TTx], schema, topic, payload string) {
		t.Helper()
		requireNoError(t, e.exec.NotifyMany(e.ctx, &driver.NotifyManyParams{Schema: schema, Topic: topic, Payloads: []string{payload}}), "NotifyMany")
	}

	s.run(t, "Lifecycle", func(t *testing.T, e *env[TTx]) {
		l := newListener(t, e, e.schema)
		requireClosed(t, l.Ping(e.ctx), "Ping before Connect")
		requireClosed(t, l.Listen(e.ctx, "topic_a"), "Listen before Connect")
		_, err := l.WaitForNotification(e.ctx)
		requireClosed(t, err, "WaitForNotification before Connect")

		requireNoError(t, l.Connect(e.ctx), "Connect")
		requireNoError(t, l.Ping(e.ctx), "Ping")
		requireNoError(t, l.Listen(e.ctx, "topic_a"), "Listen topic_a")
		requireNoError(t, l.Listen(e.ctx, "topic_b"), "Listen topic_b")
		notify(t, e, e.schema, "topic_a", "a1")
		requireEqual(t, *e.next(t, l), driver.Notification{Topic: "topic_a", Payload: "a1"}, "notification (topic without the schema)")

		requireNoError(t, l.Unlisten(e.ctx, "topic_a"), "Unlisten topic_a")
		notify(t, e, e.schema, "topic_a", "a2")
		notify(t, e, e.schema, "topic_b", "b1")
		requireEqual(t, *e.next(t, l), driver.Notification{Topic: "topic_b", Payload: "b1"}, "first notification after Unlisten topic_a")

		requireNoError(t, l.Close(e.ctx), "Close")
		requireNoError(t, l.Close(e.ctx), "second Close")
		requireClosed(t, l.Ping(e.ctx), "Ping after Close")
		requireClosed(t, l.Listen(e.ctx, "topic_a"), "Listen after Close")
		requireClosed(t, l.Unlisten(e.ctx, "topic_b"), "Unlisten after Close")
		_, err = l.WaitForNotification(e.ctx)
		requireClosed(t, err, "WaitForNotification after Close")
	})

	s.run(t, "OtherSchema", func(t *testing.T, e *env[TTx]) {
		const topic = driver.TopicInsert
		// Channels need no schema to exist; the name stays short enough for
		// Postgres' 63-byte channel names.
		other := fmt.Sprintf("other_%08x", hashString(e.name))
		e.requireListener(t)
		mine := e.listen(t, e.schema, topic)
		theirs := e.listen(t, other, topic)
		notify(t, e, other, topic, `{"queue":"theirs"}`)
		notify(t, e, e.schema, topic, `{"queue":"mine"}`)
		requireEqual(t, *e.next(t, mine), driver.Notification{Topic: topic, Payload: `{"queue":"mine"}`},
			"first notification of this schema's listener")
		requireEqual(t, *e.next(t, theirs), driver.Notification{Topic: topic, Payload: `{"queue":"theirs"}`},
			"first notification of the other schema's listener")
	})

	s.run(t, "WaitCancelled", func(t *testing.T, e *env[TTx]) {
		e.requireListener(t)
		l := e.listen(t, e.schema, "topic_w")

		ctx, cancel := context.WithCancel(e.ctx)
		done := make(chan error, 1)
		go func() {
			_, err := l.WaitForNotification(ctx)
			done <- err
		}()
		cancel()
		select {
		case err := <-done:
			if err == nil {
				t.Fatal("WaitForNotification returned no error for a cancelled context")
			}
		case <-time.After(notificationTimeout):
			t.Fatal("WaitForNotification did not return after its context was cancelled")
		}

		short, cancelShort := context.WithTimeout(e.ctx, 50*time.Millisecond)
		defer cancelShort()
		if _, err := l.WaitForNotification(short); err == nil {
			t.Fatal("WaitForNotification returned no error at its deadline")
		}

		// An interrupted wait leaves the listener usable.
		requireNoError(t, l.Ping(e.ctx), "Ping after interrupted waits")
		requireNoError(t, l.Listen(e.ctx, "topic_x"), "Listen after interrupted waits")
		notify(t, e, e.schema, "topic_x", "x")
		requireEqual(t, *e.next(t, l), driver.Notification{Topic: "topic_x", Payload: "x"}, "notification after interrupted waits")
	})
}
