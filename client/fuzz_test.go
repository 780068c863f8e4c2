package client

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/millrace/millrace/driver/pgxv5"
	"github.com/millrace/millrace/millracetype"
)

// fuzzArgs has fields of many shapes, and one whose decoder panics on some
// input, as a user's type may.
type fuzzArgs struct {
	S    string            `json:"s"`
	N    int64             `json:"n"`
	U    uint8             `json:"u"`
	F    float64           `json:"f"`
	B    bool              `json:"b"`
	L    []string          `json:"l"`
	M    map[string]int    `json:"m"`
	P    *fuzzNested       `json:"p"`
	T    time.Time         `json:"t"`
	Raw  json.RawMessage   `json:"raw"`
	Any  any               `json:"any"`
	Deep [2]fuzzNested     `json:"deep"`
	Odd  panickyField      `json:"odd"`
	Ptrs map[string]*int64 `json:"ptrs"`
}

type fuzzNested struct {
	X int               `json:"x"`
	Y []fuzzNested      `json:"y"`
	Z map[string]string `json:"z"`
}

// panickyField's decoder panics on the string "boom".
type panickyField struct{ v string }

func (p *panickyField) UnmarshalJSON(b []byte) error {
	if string(b) == `"boom"` {
		panic("panickyField: boom")
	}
	return json.Unmarshal(b, &p.v)
}

func (fuzzArgs) Kind() string { return "fuzz_args" }

// FuzzArgsDecode sends arbitrary bytes as a job's args down the path a
// fetched job takes to its worker (decode, then Work, then the outcome).
// Nothing may panic: either the worker gets exactly what encoding/json
// decodes and the job completes, or the job gets an error recorded that
// names the decode failure and is retried or, out of attempts, discarded.
func FuzzArgsDecode(f *testing.F) {
	for _, s := range []string{
		`{}`, `null`, `[]`, `""`, `0`, `{"s":"x","n":1,"u":255,"f":1.5,"b":true,"l":["a"],"m":{"a":1},"p":{"x":1,"y":[{"x":2}]}}`,
		`{"n":"1"}`, `{"u":256}`, `{"u":-1}`, `{"n":9223372036854775808}`, `{"f":1e400}`, `{"t":"2026-11-25T00:00:00Z"}`,
		`{"t":"yesterday"}`, `{"raw":{"deep":[1,2,{}]}}`, `{"any":[null,{"a":[]}]}`, `{"deep":[{},{},{}]}`, `{"odd":"fine"}`,
		`{"odd":"boom"}`, `{"odd":1}`, `{"ptrs":{"a":null,"b":1}}`, `{"p":null}`, `{"m":{"a":"b"}}`, `{"s":"\ud800"}`,
		`{"s":"` + strings.Repeat("x", 1000) + `"}`, strings.Repeat(`{"p":`, 200) + `null` + strings.Repeat(`}`, 200),
		`{`, `{"s":}`, `{"s":"x",}`, "\xff", ``, `{"S":"case"}`, `{"s":"a","s":"b"}`,
	} {
		f.Add([]byte(s), uint8(1), uint8(3))
	}
	var got *Job[fuzzArgs]
	workers := NewWorkers()
	AddWorker(workers, WorkFunc(func(ctx context.Context, job *Job[fuzzArgs]) error {
		got = job
		return nil
	}))
	c, err := New(pgxv5.New(nil), &Config{Workers: workers})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, args []byte, attempt, maxAttempts uint8) {
		got = nil
		row := &millracetype.JobRow{ID: 42, Kind: "fuzz_args", Args: args,
			Attempt: 1 + int(attempt%5), MaxAttempts: 1 + int(maxAttempts%5)}
		s, _ := c.exec.Execute(context.Background(), row, time.Now())

		var want fuzzArgs
		decodeErr := func() (err error) {
			defer func() {
				if r := recover(); r != nil {
					err = errors.New("decoder panicked")
				}
			}()
			return json.Unmarshal(args, &want)
		}()
		if decodeErr == nil {
			if s.State != millracetype.JobStateCompleted || got == nil {
				t.Fatalf("args %q decode, but the outcome is %+v", args, s)
			}
			if !reflect.DeepEqual(got.Args, want) {
				t.Fatalf("args %q: worker got %+v, want %+v", args, got.Args, want)
			}
			return
		}
		if got != nil {
			t.Fatalf("args %q do not decode (%v), yet the worker ran", args, decodeErr)
		}
		if s.Error == nil || !strings.HasPrefix(s.Error.Error, `decode args of job 42 (kind "fuzz_args") into client.fuzzArgs: `) {
			t.Fatalf("args %q: outcome %+v does not record the decode error", args, s)
		}
		switch {
		case row.Attempt >= row.MaxAttempts && s.State != millracetype.JobStateDiscarded:
			t.Fatalf("args %q out of attempts: state %s, want discarded", args, s.State)
		case row.Attempt < row.MaxAttempts && s.State != millracetype.JobStateRetryable && s.State != millracetype.JobStateAvailable:
			t.Fatalf("args %q: state %s, want a retry", args, s.State)
		}
	})
}
