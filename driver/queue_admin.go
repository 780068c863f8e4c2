package driver

// QueueUpdateParams changes a queue's settings.
type QueueUpdateParams struct {
	Schema string
	Name   string
	// MetadataDoUpdate replaces the queue's metadata with Metadata (a JSON
	// object) and sends the control notification
	// {"action":"metadata_changed","metadata":<Metadata, compacted>,"queue":<Name>},
	// as River does. When false only updated_at changes and nothing is sent.
	MetadataDoUpdate bool
	Metadata         []byte
}
