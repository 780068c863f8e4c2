package interop

import (
	"context"
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"

	"github.com/millrace/millrace/client"
)

func sameJSON(t *testing.T, a, b []byte) bool {
	t.Helper()
	var va, vb any
	if err := json.Unmarshal(a, &va); err != nil {
		t.Fatalf("%s: %v", a, err)
	}
	if err := json.Unmarshal(b, &vb); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	return reflect.DeepEqual(va, vb)
}

// TestQueueMetadataFromRiverReachesMillrace: River's QueueUpdate reaches a
// millrace client working the queue, as an event with the new metadata.
func TestQueueMetadataFromRiverReachesMillrace(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	_, schema := setup(t, true)
	workers := client.NewWorkers()
	client.AddWorker(workers, client.WorkFunc(func(ctx context.Context, job *client.Job[blockArgs]) error { return nil }))
	mc := newMillraceClient(t, schema, &client.Config{Workers: workers,
		Queues: map[string]client.QueueConfig{client.QueueDefault: {MaxWorkers: 1}}})
	events, unsubscribe := mc.Subscribe(client.EventKindQueueMetadataChanged)
	defer unsubscribe()
	rc := newRiverClient(t, schema, nil)
	if _, err := rc.QueueUpdate(ctx, client.QueueDefault, &river.QueueUpdateParams{Metadata: []byte(`{"from": "river", "n": 1}`)}); err != nil {
		t.Fatal(err)
	}
	select {
	case ev := <-events:
		if ev.Queue != client.QueueDefault || !sameJSON(t, ev.QueueMetadata, []byte(`{"from":"river","n":1}`)) {
			t.Fatalf("event %+v metadata %s", ev, ev.QueueMetadata)
		}
	case <-time.After(controlWithin):
		t.Fatalf("River's metadata change did not reach the millrace client within %s", controlWithin)
	}
}

// TestQueueMetadataSameAsRiver: millrace's QueueUpdate writes the row River
// reads and sends the very notification River sends for the same update,
// byte for byte.
func TestQueueMetadataSameAsRiver(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, schema := setup(t, true)
	workers := client.NewWorkers()
	client.AddWorker(workers, client.WorkFunc(func(ctx context.Context, job *client.Job[blockArgs]) error { return nil }))
	// A millrace client registers the queue, then stops: only the updates
	// below speak on the control channel.
	mc := newMillraceClient(t, schema, &client.Config{Workers: workers,
		Queues: map[string]client.QueueConfig{"shared": {MaxWorkers: 1}}})
	stopWithin(t, "millrace client", mc.Stop)
	rc := newRiverClient(t, schema, nil)

	conn, err := pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{schema + ".river_control"}.Sanitize()); err != nil {
		t.Fatal(err)
	}
	next := func() string {
		t.Helper()
		wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		n, err := conn.Conn().WaitForNotification(wctx)
		if err != nil {
			t.Fatal(err)
		}
		return n.Payload
	}

	metadata := []byte(`{ "tier" : "gold", "limits": {"rate": 5} }`)
	if _, err := rc.QueueUpdate(ctx, "shared", &river.QueueUpdateParams{Metadata: metadata}); err != nil {
		t.Fatal(err)
	}
	fromRiver := next()
	q, err := mc.QueueUpdate(ctx, "shared", &client.QueueUpdateParams{Metadata: metadata})
	if err != nil {
		t.Fatal(err)
	}
	fromMillrace := next()
	if fromMillrace != fromRiver {
		t.Fatalf("notification payloads differ:\nRiver:    %s\nmillrace: %s", fromRiver, fromMillrace)
	}
	rq, err := rc.QueueGet(ctx, "shared")
	if err != nil {
		t.Fatal(err)
	}
	if !sameJSON(t, rq.Metadata, metadata) || !sameJSON(t, q.Metadata, metadata) {
		t.Fatalf("metadata as River reads it %s, as millrace returned it %s", rq.Metadata, q.Metadata)
	}
}
