package driver

import "encoding/json"

// InsertNotifyPayload is the payload of an insert notification for a
// queue, byte for byte as River sends it: {"queue": "<name>"}.
func InsertNotifyPayload(queue string) string {
	name, _ := json.Marshal(queue) // a string always encodes
	return `{"queue": ` + string(name) + `}`
}
