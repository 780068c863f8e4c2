package client

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

type decodeTarget struct {
	N    int             `json:"n"`
	S    string          `json:"s"`
	L    []int           `json:"l"`
	Raw  json.RawMessage `json:"raw"`
	Next *decodeTarget   `json:"next"`
}

// TestDecodeArgsLikeUnmarshal: decodeArgs gives what json.Unmarshal gives,
// value and error (message included), for valid args, bad ones, and
// inputs that are not exactly one value; one input's leftovers never
// reach the next one's decode, whatever order they come in.
func TestDecodeArgsLikeUnmarshal(t *testing.T) {
	inputs := []string{
		`{"n":1}`, `{"n":2,"s":"x","l":[1,2],"raw":{"a":[1]},"next":{"n":3}}`, ` {"n":4} `, `{"n":5}{"n":6}`,
		`{"n":7} {"n":8}`, `{"n":9}x`, ``, ` `, `null`, `{}`, `{"n":"str"}`, `{"n":1,}`, `{"n":`, `[1]`, `5`,
		`{"s":"\u00e9\n"}`, `{"n":10}`, `{"n":1e400}`, `"{}"`, `{"l":[1,"a",3]}`, `{"n":11}`,
		`{"n":13,"s":"` + strings.Repeat("x", maxPooledArgs) + `"}`, // past the pooled size
	}
	for round := range 3 {
		for i := range inputs {
			in := inputs[(i*7+round)%len(inputs)]
			var want, got decodeTarget
			wantErr := json.Unmarshal([]byte(in), &want)
			gotErr := decodeArgs([]byte(in), &got)
			if fmt.Sprint(gotErr) != fmt.Sprint(wantErr) {
				t.Errorf("%q: error %v, want %v", in, gotErr, wantErr)
			}
			if wantErr == nil && !reflect.DeepEqual(got, want) {
				t.Errorf("%q: decoded %+v, want %+v", in, got, want)
			}
		}
	}
}

// panicArgs panics while being decoded.
type panicArgs struct{}

func (*panicArgs) UnmarshalJSON([]byte) error { panic("bad args") }

// TestDecodeArgsAfterPanic: a decoder left by a panicking UnmarshalJSON is
// never used again: the next args decode as they should.
func TestDecodeArgsAfterPanic(t *testing.T) {
	func() {
		defer func() { _ = recover() }()
		var p panicArgs
		_ = decodeArgs([]byte(`{"a":1}`), &p)
	}()
	var got decodeTarget
	if err := decodeArgs([]byte(`{"n":12}`), &got); err != nil || got.N != 12 {
		t.Errorf("after a panic: %+v, %v", got, err)
	}
	var e *json.SyntaxError
	if err := decodeArgs([]byte(`{"n":`), &got); !errors.As(err, &e) {
		t.Errorf("truncated args: %v, want a syntax error", err)
	}
}
