package producer

import (
	"bytes"
	"encoding/json"
	"reflect"
)

// Metadata returns the queue's metadata as last seen: read when the
// producer started, then kept up to date by metadata_changed notifications
// and the periodic read of the queue row. Nil before Start.
func (p *Producer) Metadata() json.RawMessage {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.metadata
}

// setMetadata records the queue's metadata (compacted) and reports a
// change to OnMetadataChanged. The same metadata arrives in different
// spellings (the notification carries what the updater sent, compacted;
// the row comes back as Postgres prints jsonb, keys reordered), so the
// comparison is by JSON value: a read of the row that only confirms a
// notification is not a second change. Metadata that is missing or not
// valid JSON is ignored.
func (p *Producer) setMetadata(metadata json.RawMessage) {
	var buf bytes.Buffer
	if len(metadata) == 0 || json.Compact(&buf, metadata) != nil {
		return
	}
	metadata = buf.Bytes()
	p.mu.Lock()
	if sameJSON(p.metadata, metadata) {
		p.mu.Unlock()
		return
	}
	p.metadata = metadata
	p.mu.Unlock()
	if p.cfg.OnMetadataChanged != nil {
		p.cfg.OnMetadataChanged(bytes.Clone(metadata))
	}
}

// compactJSON returns raw compacted, or as it is when it is not JSON.
func compactJSON(raw []byte) json.RawMessage {
	var buf bytes.Buffer
	if json.Compact(&buf, raw) != nil {
		return raw
	}
	return buf.Bytes()
}

// sameJSON reports whether two JSON documents hold the same value (numbers
// compared by their text, so no precision is lost).
func sameJSON(a, b []byte) bool {
	if bytes.Equal(a, b) {
		return true
	}
	va, errA := decodeJSON(a)
	vb, errB := decodeJSON(b)
	return errA == nil && errB == nil && reflect.DeepEqual(va, vb)
}

func decodeJSON(raw []byte) (any, error) {
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	var v any
	err := d.Decode(&v)
	return v, err
}

// SetMetadata applies a change of the queue's metadata at once, as the
// metadata_changed notification would (used by the client for its own
// QueueUpdate, so that it does not depend on the notification's round
// trip or on polling).
func (p *Producer) SetMetadata(metadata json.RawMessage) {
	select {
	case p.control <- controlMessage{Action: "metadata_changed", Queue: p.cfg.Queue, Metadata: bytes.Clone(metadata)}:
	default:
		// The loop is far behind; the periodic read of the queue row
		// catches up.
	}
}
