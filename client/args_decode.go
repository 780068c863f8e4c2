package client

import (
	"bytes"
	"encoding/json"
	"sync"
)

// argsDecoder decodes fetched jobs' args, one after the other, with one
// json.Decoder: unlike json.Unmarshal, which sets up its decoding state
// afresh for every call (about four allocations for small args), a
// Decoder keeps its state from value to value. Decoders are pooled;
// one is only used again after a clean decode of a whole input.
type argsDecoder struct {
	r   bytes.Reader
	dec *json.Decoder
	// fed counts the bytes handed to dec so far: after a clean decode,
	// dec.InputOffset() equals it (the input was one value, no more).
	fed int64
}

// maxPooledArgs: a decoder that decoded larger args is not pooled, so
// that the pool does not keep its grown buffer.
const maxPooledArgs = 64 << 10

var argsDecoders = sync.Pool{New: func() any {
	d := &argsDecoder{}
	d.dec = json.NewDecoder(&d.r)
	return d
}}

// decodeArgs decodes data, a job's args, into v as json.Unmarshal does,
// and with the same errors: any input the pooled decoder does not decode
// cleanly as exactly one value (an error, trailing data) is decoded again
// with json.Unmarshal, whose result is returned.
func decodeArgs(data []byte, v any) error {
	d := argsDecoders.Get().(*argsDecoder)
	d.r.Reset(data)
	d.fed += int64(len(data))
	if err := d.dec.Decode(v); err == nil && d.dec.InputOffset() == d.fed {
		d.r.Reset(nil)
		if len(data) <= maxPooledArgs {
			argsDecoders.Put(d)
		}
		return nil
	}
	// Not put back: its state is no longer known.
	return json.Unmarshal(data, v)
}
