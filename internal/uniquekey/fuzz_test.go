package uniquekey

import (
	"bytes"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// fuzzArgs are the args values FuzzKey computes keys for; only their types
// matter (their tagged fields), the JSON is the fuzzer's.
var fuzzArgs = []any{
	nil, emailArgs{}, nestedArgs{}, wholeStructArgs{}, multiLevel{}, embeddingArgs{}, recursiveArgs{},
	siblingArgs{}, pathSyntaxArgs{}, tieArgs{}, digitNestedArgs{}, digitTopArgs{}, digitConflictArgs{}, wholeOverlap{},
}

// FuzzKey checks that Key never panics, rejects exactly the invalid JSON,
// and otherwise produces a 32-byte key whose canonical args are valid JSON
// (or empty with tagged fields). Run with -fuzz=FuzzKey; normal test runs
// only exercise the seed corpus.
func FuzzKey(f *testing.F) {
	seeds := []string{
		``, ` `, `{}`, `[]`, `[1]`, `null`, `1`, `"s"`, `{"a":1,"a":2}`, `{"\u0061":1}`, `{"b":null, "a" : {"y":[1, 2]}}`,
		`{"\ud800":1}`, `{"\ud800\u0041":1}`, `{"\ud83d\ude00":1}`, "{\"\xff\":1}", `{"a.b":1,"a":{"b":2}}`,
		`{"to":"x","subject":"y"}`, `{"nested":{"y":1},"nested":{"y":2},"b":[]}`, `{"n":{"0":"a","2":"b","-1":"c"}}`,
		`{"n":[1,2,3]}`, `{"1":"a","3":"b","b":"c"}`, `["x","y"]`, `{"m":{"c":1},"m":{"b":2}}`, `{"k":{"v":1},"k.v":2}`,
		`{"root":{"name":"a","next":{"name":"b"}}}`, `{"headers":{"addr":{"y":1},"subject":2}}`,
		`{`, `{"a":}`, `{"a":1,}`, `[1,]`, `{"a":"\u12"}`, `{"a":01}`, `nul`, "{\"a\":\"\x01\"}",
	}
	for i, s := range seeds {
		f.Add([]byte(s), uint8(i))
	}
	f.Fuzz(func(t *testing.T, encoded []byte, which uint8) {
		args := fuzzArgs[int(which)%len(fuzzArgs)]
		opts := &Opts{ByArgs: true, ByQueue: which&0x80 != 0, ByPeriod: time.Duration(which&0x40) * time.Minute}

		key, err := Key(opts, "kind", encoded, args, "queue", nil, testNow)
		blank := len(bytes.Trim(encoded, " \t\n\r")) == 0
		valid := blank || json.Valid(encoded)
		if errors.Is(err, ErrInvalidJSON) == valid {
			t.Fatalf("%q: json.Valid = %v but err = %v", encoded, valid, err)
		}
		if err != nil {
			if !errors.Is(err, ErrInvalidJSON) && !errors.Is(err, ErrArgsNotObject) && !errors.Is(err, ErrUniqueFieldConflict) {
				t.Fatalf("%q: unexpected error %v", encoded, err)
			}
			if key != nil {
				t.Fatalf("key %x returned with error %v", key, err)
			}
			return
		}
		if len(key) != 32 {
			t.Fatalf("key length %d", len(key))
		}
		if again, err := Key(opts, "kind", encoded, args, "queue", nil, testNow); err != nil || !bytes.Equal(again, key) {
			t.Fatalf("%q: a second Key gave %x, %v; the first %x", encoded, again, err, key)
		}
		if reordered, ok := reverseMembers(encoded); ok {
			// The order of an object's members (with distinct keys) does
			// not matter.
			other, err := Key(opts, "kind", reordered, args, "queue", nil, testNow)
			if err != nil || !bytes.Equal(other, key) {
				t.Fatalf("%q gives key %x, its members reversed %q give %x (%v)", encoded, key, reordered, other, err)
			}
		}

		canon, err := argsPart(t, encoded, args)
		if err != nil {
			t.Fatal(err)
		}
		if canon == "" && len(uniquePaths(args)) > 0 {
			return
		}
		if !json.Valid([]byte(canon)) {
			t.Fatalf("%q: canonical args %q are not valid JSON", encoded, canon)
		}
		if len(uniquePaths(args)) > 0 || strings.Contains(canon, `\ufffd`) {
			return
		}
		// Without tagged fields the result is an object with sorted,
		// distinct keys, and canonicalizing again changes nothing (unless
		// keys held invalid UTF-8, written as \ufffd, skipped above).
		var keys []string
		forEachMember([]byte(canon), func(rawKey []byte, escaped bool, _ []byte) {
			keys = append(keys, decodeKey(rawKey, escaped))
		})
		if !slices.IsSorted(keys) || len(slices.Compact(slices.Clone(keys))) != len(keys) {
			t.Fatalf("%q: keys %q not sorted and distinct", encoded, keys)
		}
		again, err := argsPart(t, []byte(canon), nil)
		if err != nil {
			t.Fatal(err)
		}
		if again != canon {
			t.Fatalf("not idempotent: %q -> %q", canon, again)
		}
	})
}

// reverseMembers returns a JSON object with the members of encoded (a valid
// JSON object) in reverse order, when its keys are distinct valid UTF-8
// (with duplicates, which one counts depends on the order).
func reverseMembers(encoded []byte) ([]byte, bool) {
	trimmed := bytes.Trim(encoded, " \t\n\r")
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return nil, false
	}
	var members [][]byte
	seen := map[string]bool{}
	distinct := true
	forEachMember(trimmed, func(rawKey []byte, escaped bool, value []byte) {
		name := decodeKey(rawKey, escaped)
		if seen[name] || !utf8.ValidString(name) {
			distinct = false
		}
		seen[name] = true
		members = append(members, append(append(append([]byte(`"`), rawKey...), `":`...), value...))
	})
	if !distinct {
		return nil, false
	}
	slices.Reverse(members)
	return append(append([]byte("{"), bytes.Join(members, []byte(","))...), '}'), true
}
