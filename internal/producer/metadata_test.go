package producer

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/millrace/millrace/driver"
	"github.com/millrace/millrace/internal/testfixture"
	"github.com/millrace/millrace/internal/testwait"
)

// updateQueue changes the queue's metadata with the driver's QueueUpdate
// (which also sends the metadata_changed notification).
func updateQueue(t *testing.T, db *testfixture.DB, name, metadata string) {
	t.Helper()
	if _, err := db.Exec().QueueUpdate(context.Background(), &driver.QueueUpdateParams{Schema: db.Schema, Name: name,
		MetadataDoUpdate: true, Metadata: []byte(metadata)}); err != nil {
		t.Fatal(err)
	}
}

// TestMetadataChangedNotification: the producer starts with the queue's
// stored metadata, follows metadata_changed notifications for its queue
// (and "*"), ignores other queues' and malformed ones, and reports each
// real change once.
func TestMetadataChangedNotification(t *testing.T) {
	t.Parallel()
	db := testfixture.New(t)
	n := newNotifier(t, db)
	if _, err := db.Exec().QueueCreateOrSetUpdatedAt(context.Background(), &driver.QueueCreateParams{Schema: db.Schema,
		Name: "default", Metadata: []byte(`{"v": 0}`)}); err != nil {
		t.Fatal(err)
	}
	changes := make(chan json.RawMessage, 10)
	p := newProducer(t, db, nil, Config{Notifier: n, ControlPollInterval: time.Hour,
		OnMetadataChanged: func(m json.RawMessage) { changes <- m }})
	startProducer(t, p)
	if !sameJSON(p.Metadata(), []byte(`{"v":0}`)) {
		t.Fatalf("metadata at start %s", p.Metadata())
	}

	updateQueue(t, db, "default", `{"v": 1, "tier": "gold"}`)
	if got := recv(t, changes, "the first change"); string(got) != `{"v":1,"tier":"gold"}` {
		t.Fatalf("first change %s", got)
	}
	if !sameJSON(p.Metadata(), []byte(`{"tier":"gold","v":1}`)) {
		t.Fatalf("Metadata() %s", p.Metadata())
	}

	// Not ours, malformed, repeated (same value spelled differently), and
	// then a real change for every queue: only the last is reported.
	notify(t, db, driver.TopicControl,
		`{"action":"metadata_changed","metadata":{"v":99},"queue":"other"}`,
		`{"action":"metadata_changed","queue":"default"}`,
		`{"action":"metadata_changed","metadata":`,
		`{"action":"metadata_changed","metadata":{ "tier" : "gold", "v" : 1 },"queue":"default"}`,
		`{"action":"metadata_changed","metadata":{"v":2},"queue":"*"}`)
	if got := recv(t, changes, "the change for every queue"); string(got) != `{"v":2}` {
		t.Fatalf("change %s, want the one for *", got)
	}
	select {
	case got := <-changes:
		t.Fatalf("unexpected change %s", got)
	default:
	}
}

// TestMetadataChangedByPoll: without notifications, the periodic read of
// the queue row picks up a change, reports it once, and does not report
// the same value again on the next reads.
func TestMetadataChangedByPoll(t *testing.T) {
	t.Parallel()
	db := testfixture.New(t)
	changes := make(chan json.RawMessage, 10)
	exec := &wrapExec{Executor: db.Exec()}
	p := newProducer(t, db, exec, Config{ControlPollInterval: 10 * time.Millisecond,
		OnMetadataChanged: func(m json.RawMessage) { changes <- m }})
	startProducer(t, p)
	updateQueue(t, db, "default", `{"limit":5}`)
	if got := recv(t, changes, "the change read by a poll"); !sameJSON(got, []byte(`{"limit":5}`)) {
		t.Fatalf("change %s", got)
	}
	// Several more reads of the same row: no further change.
	reads := exec.queueGets.Load()
	testwait.For(t, 10*time.Second, "three more reads of the queue row", func() bool { return exec.queueGets.Load() >= reads+3 })
	select {
	case got := <-changes:
		t.Fatalf("the same metadata reported again: %s", got)
	default:
	}
}

func TestSameJSON(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		a, b string
		want bool
	}{
		{`{"a":1,"b":[1,2]}`, `{"b": [1, 2], "a": 1}`, true},
		{`{"a":1}`, `{"a":1.0}`, false}, // different numbers as written
		{`{"a":12345678901234567890}`, `{"a":12345678901234567891}`, false},
		{`{}`, `{"a":null}`, false},
		{``, `{}`, false},
		{`not json`, `not json`, true}, // byte-equal
	} {
		if got := sameJSON([]byte(tc.a), []byte(tc.b)); got != tc.want {
			t.Errorf("sameJSON(%s, %s) = %v", tc.a, tc.b, got)
		}
	}
}
