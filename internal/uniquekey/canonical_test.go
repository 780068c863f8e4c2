package uniquekey

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// argsPart returns the canonical args of a ByArgs-only pre-image.
func argsPart(t testing.TB, encoded []byte, args any) (string, error) {
	t.Helper()
	pre, err := PreImage(&Opts{ByArgs: true}, "k", encoded, args, "q", nil, testNow)
	if err != nil {
		return "", err
	}
	const prefix = "&kind=k&args="
	if !strings.HasPrefix(pre, prefix) {
		t.Fatalf("pre-image %q lacks prefix %q", pre, prefix)
	}
	return pre[len(prefix):], nil
}

func TestCanonicalArgsWithoutTags(t *testing.T) {
	t.Parallel()

	tests := []struct {
		name    string
		encoded string
		want    string
	}{
		{name: "SortsTopLevelKeys", encoded: `{"zz":"q","a":5}`, want: `{"a":5,"zz":"q"}`},
		{name: "EmptyObject", encoded: `{}`, want: `{}`},
		{name: "EmptyInput", encoded: ``, want: `{}`},
		{name: "WhitespaceOnly", encoded: " \n\t\r ", want: `{}`},
		{name: "EmptyArray", encoded: `[]`, want: `{}`},
		{name: "EmptyArrayWithSpace", encoded: ` [ ] `, want: `{}`},
		{name: "FirstDuplicateWins", encoded: `{"a":1,"b":2,"a":3}`, want: `{"a":1,"b":2}`},
		{name: "DuplicateThroughEscape", encoded: `{"a":1,"\u0061":2}`, want: `{"a":1}`},
		{name: "DuplicateEscapedFirst", encoded: `{"\u0061":2,"a":1}`, want: `{"a":2}`},
		{name: "ValuesKeptByteForByte", encoded: `{"b":null,"a":{"y":1, "x":[1, 2]},"c":1.50E+3,"d":"\u00e9\/"}`,
			want: `{"a":{"y":1, "x":[1, 2]},"b":null,"c":1.50E+3,"d":"\u00e9\/"}`},
		{name: "NestedObjectsNotSorted", encoded: `{"o":{"z":1,"a":2,"z":3}}`, want: `{"o":{"z":1,"a":2,"z":3}}`},
		{name: "IndentedInput", encoded: "{\n  \"b\" : 1 ,\n  \"a\": [ 1,\n 2 ]\n}\n", want: `{"a":[ 1,
 2 ],"b":1}`},
		{name: "BytewiseOrder", encoded: `{"b":1,"B":2,"_":3,"10":4,"9":5,"":6,"é":7,"z":8}`,
			want: `{"":6,"10":4,"9":5,"B":2,"_":3,"b":1,"z":8,"é":7}`},
		{name: "SortsByDecodedKey", encoded: `{"\u0062":1,"a":2,"\u0041":3}`, want: `{"A":3,"a":2,"b":1}`},
		{name: "PathSyntaxKeysLiteral", encoded: `{"x":1,"file.name":2,"@a":3,":x":4,"[x":5,"{x":6,"a*":7,"#":8,"|":9}`,
			want: `{"#":8,":x":4,"@a":3,"[x":5,"a*":7,"file.name":2,"x":1,"{x":6,"|":9}`},
		{name: "LiteralAndNestedDottedKeys", encoded: `{"file.name":"a","file":{"name":"b"}}`, want: `{"file":{"name":"b"},"file.name":"a"}`},

		// Keys are written verbatim unless they contain a byte < 0x20,
		// > 0x7f, '"' or '\'; then encoding/json encodes them (escaping
		// <, >, & too).
		{name: "HTMLCharsVerbatimWhenASCII", encoded: `{"a\u003cb\u0026c\u003e":1}`, want: `{"a<b&c>":1}`},
		{name: "HTMLCharsRawVerbatim", encoded: `{"a<b&c>":1}`, want: `{"a<b&c>":1}`},
		{name: "UnicodeKey", encoded: `{"é":1}`, want: `{"é":1}`},
		{name: "UnicodeEscapedKey", encoded: `{"\u00e9":1}`, want: `{"é":1}`},
		{name: "UnicodeWithHTMLEscaped", encoded: `{"é<":1,"\u00e9\u0026":2}`, want: `{"é\u0026":2,"é\u003c":1}`},
		{name: "QuoteAndBackslash", encoded: `{"quote\"slash\\":1}`, want: `{"quote\"slash\\":1}`},
		{name: "ControlCharacters", encoded: `{"line\nbreak":1,"\u0000":2,"\t":3}`, want: `{"\u0000":2,"\t":3,"line\nbreak":1}`},
		{name: "DELVerbatim", encoded: `{"\u007f":1}`, want: "{\"\x7f\":1}"},
		{name: "LineSeparators", encoded: `{"\u2029":2,"\u2028":1}`, want: `{"\u2028":1,"\u2029":2}`},
		{name: "SurrogatePair", encoded: `{"\ud83d\ude00":1}`, want: `{"😀":1}`},
		{name: "LoneSurrogate", encoded: `{"\ud800":1}`, want: "{\"\uFFFD\":1}"},
		// River's reader consumes the escape after a high surrogate even
		// when the two do not pair: the "A" is lost, unlike encoding/json.
		{name: "UnpairedSurrogateEatsNextEscape", encoded: `{"\ud800\u0041":1,"\ud800A":2}`, want: "{\"\uFFFD\":1,\"\uFFFDA\":2}"},
		{name: "InvalidUTF8Key", encoded: "{\"\xff\":1}", want: `{"\ufffd":1}`},
		{name: "Slash", encoded: `{"a\/b":1}`, want: `{"a/b":1}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()

			for _, args := range []any{nil, noFieldsArgs{}, &noFieldsArgs{}, map[string]int{}, 42} {
				got, err := argsPart(t, []byte(tt.encoded), args)
				if err != nil {
					t.Fatalf("args %T: %v", args, err)
				}
				if got != tt.want {
					t.Fatalf("args %T:\n got %s\nwant %s", args, got, tt.want)
				}
			}
		})
	}
}

func TestCanonicalArgsWithoutTagsRejects(t *testing.T) {
	t.Parallel()

	notObject := []string{`null`, `[1]`, `[{}]`, `"str"`, `true`, `false`, `123`, ` -1.5e3 `}
	for _, enc := range notObject {
		if _, err := argsPart(t, []byte(enc), nil); !errors.Is(err, ErrArgsNotObject) {
			t.Errorf("%s: err = %v, want ErrArgsNotObject", enc, err)
		}
	}

	invalid := []string{
		`{`, `}`, `{"a"}`, `{"a":}`, `{"a":1,}`, `{,}`, `{'a':1}`, `{a:1}`, `{"a":1}x`, `{"a":1}{}`, `{"a" 1}`,
		`{"a":1 "b":2}`, `{"a":01}`, `{"a":-}`, `{"a":1.}`, `{"a":.5}`, `{"a":1e}`, `{"a":1e+}`, `{"a":+1}`,
		`{"a":tru}`, `{"a":nul}`, `{"a":True}`, `{"a":NaN}`, "{\"a\":\"\x01\"}", `{"a":"\q"}`, `{"a":"\u12"}`,
		`{"a":"\u12g4"}`, `{"a":"unterminated}`, `{"a":"x\`, `[1,]`, `[,1]`, `[1 2]`, `[`, `]`, `"\`, `{"a":[}`,
		"\x00", `{"a":1}` + "\x00", `//{}`, "\ufeff{}",
	}
	for _, enc := range invalid {
		for _, args := range []any{nil, emailArgs{}} {
			if _, err := argsPart(t, []byte(enc), args); !errors.Is(err, ErrInvalidJSON) {
				t.Errorf("%q with %T: err = %v, want ErrInvalidJSON", enc, args, err)
			}
		}
	}
}

func TestNestingLimit(t *testing.T) {
	t.Parallel()

	nest := func(depth int) []byte {
		return []byte(`{"a":` + strings.Repeat("[", depth-1) + strings.Repeat("]", depth-1) + `}`)
	}
	if _, err := argsPart(t, nest(maxNesting), nil); err != nil {
		t.Fatalf("depth %d: %v", maxNesting, err)
	}
	if _, err := argsPart(t, nest(maxNesting+1), nil); !errors.Is(err, ErrInvalidJSON) {
		t.Fatalf("depth %d: err = %v, want ErrInvalidJSON", maxNesting+1, err)
	}
	if _, err := argsPart(t, []byte(strings.Repeat("[", 1<<20)), nil); !errors.Is(err, ErrInvalidJSON) {
		t.Fatalf("deep open brackets: err = %v, want ErrInvalidJSON", err)
	}
}

func TestCanonicalArgsWithTags(t *testing.T) {
	t.Parallel()

	when := time.Date(2026, time.January, 2, 3, 4, 5, 6, time.UTC)
	tests := []struct {
		name string
		args any
		want string
	}{
		{name: "TaggedFieldsSorted", args: emailArgs{To: "a@b.c", Subject: "Hi", Body: "text"},
			want: `{"subject":"Hi","to":"a@b.c"}`},
		{name: "PointerArgs", args: &emailArgs{To: "a@b.c", Subject: "Hi", Body: "text"},
			want: `{"subject":"Hi","to":"a@b.c"}`},
		{name: "PointerToPointerArgs", args: new(&emailArgs{To: "x"}),
			want: `{"subject":"","to":"x"}`},
		{name: "OmitemptyAbsentSkipped", args: optionalArgs{ID: 7, Other: "o"}, want: `{"id":7}`},
		{name: "AllAbsentGivesNothing", args: optionalArgs{Other: "o"}, want: ``},
		{name: "GoFieldNames", args: goNameArgs{Account: "acc", Note: "n"}, want: `{"Account":"acc"}`},
		{name: "GoFieldNamesBoth", args: goNameArgs{Account: "acc", Region: "eu"}, want: `{"Account":"acc","Region":"eu"}`},
		{name: "TagAmongOthers", args: tagListArgs{A: "a", B: "b", C: "c"}, want: `{"a":"a"}`},
		{name: "NestedUnderUntaggedParent", args: nestedArgs{B: "b", Nested: nestedInner{X: "x", Y: "v"}, C: "c"},
			want: `{"b":"b","nested":{"y":"v"}}`},
		{name: "TaggedStructsWithoutTaggedFieldsCountWhole",
			args: wholeStructArgs{Addr: addresses{To: "t", BCC: "b"}, When: when, Untied: addresses{To: "u"}},
			want: `{"addr":{"to":"t","bcc":"b"},"addrPtr":null,"when":"2026-01-02T03:04:05.000000006Z"}`},
		{name: "TaggedStructPointerWhole",
			args: wholeStructArgs{AddrPtr: &addresses{To: "p"}},
			want: `{"addr":{"to":""},"addrPtr":{"to":"p"},"when":"0001-01-01T00:00:00Z"}`},
		{name: "MultiLevelPointers",
			args: multiLevel{Headers: &headers{Addr: &nestedInner{X: "x", Y: "y"}, Subject: "s"}, Body: "b"},
			want: `{"headers":{"addr":{"y":"y"},"subject":"s"}}`},
		{name: "MultiLevelNilPointerAbsent", args: multiLevel{Body: "b"}, want: ``},
		{name: "Embedded",
			args: embeddingArgs{Embedded: Embedded{E1: "1", E2: "2"}, embeddedHidden: embeddedHidden{H: "h"},
				EmbeddedPtr: &EmbeddedPtr{P: "p"}, Label: "l", Z: "z"},
			want: `{"Label":"l","e1":"1","p":"p","z":"z"}`},
		{name: "EmbeddedNilPointer", args: embeddingArgs{Z: "z"}, want: `{"Label":"","e1":"","z":"z"}`},
		{name: "RecursiveTypeWalkedOnce",
			args: recursiveArgs{Root: recursive{Name: "r1", Skip: "s1", Next: &recursive{Name: "r2", Skip: "s2"}}},
			want: `{"root":{"name":"r1","next":{"name":"r2","skip":"s2","next":null}}}`},
		{name: "SiblingOfSameTypeWalkedOnce",
			args: siblingArgs{First: nestedInner{X: "1", Y: "2"}, Second: nestedInner{X: "3", Y: "4"}, Third: nestedInner{X: "5", Y: "6"}},
			want: `{"first":{"y":"2"},"second":{"x":"3","y":"4"}}`},
		{name: "PathSyntaxAndEscapedNames",
			args: pathSyntaxArgs{Dotted: "1", Nested: dottedInner{B: "2", BC: "3"}, At: "4", Colon: "5", Star: "6", Amp: "7",
				Unicode: "8", Upper: "9", Dollar: "10", Deep: unicodeInner{U: "11", Z: "12"}},
			want: `{"$x":"10",":c":"5","@at":"4","Y":"9","a&b":"7","a":{"b":"2","b.c":"3"},"a.b":"1","s*":"6","é\u003c":"8","é\u003e":{"z":"12","é\u003c":"11"}}`},
		{name: "DottedNameTiesWithNestedPath", args: tieArgs{Literal: "lit", Nested: kvNested{V: "nest"}},
			want: `{"k":{"v":"nest"},"k.v":"lit"}`},
		{name: "DigitNamesBelowTopBecomeArrayIndexes", args: digitNestedArgs{N: digits{Zero: "a", Two: "b", Neg: "c"}},
			want: `{"n":["a",null,"b"]}`},
		{name: "DigitNamesAtTopMakeAnArray", args: digitTopArgs{One: "a", Three: "b"}, want: `[null,"a",null,"b"]`},
		{name: "BigDigitNameAsObjectMember", args: bigDigitMemberArgs{Dollar: "1", Big: "2"}, want: `{"$x":"1","99999999":"2"}`},
		{name: "NoFieldsAtAll", args: noFieldsArgs{}, want: `{}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()

			got, err := argsPart(t, mustMarshal(t, tt.args), tt.args)
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Fatalf("\n got %s\nwant %s", got, tt.want)
			}
		})
	}
}

func TestCanonicalArgsWithTagsAllAbsent(t *testing.T) {
	t.Parallel()

	args := optionalArgs{Other: "o"}
	pre, err := PreImage(&Opts{ByArgs: true, ByQueue: true}, "k", mustMarshal(t, args), args, "q", nil, testNow)
	if err != nil {
		t.Fatal(err)
	}
	if want := "&kind=k&args=&queue=q"; pre != want {
		t.Fatalf("pre-image = %q, want %q", pre, want)
	}
}

func TestCanonicalArgsWithTagsOddJSON(t *testing.T) {
	t.Parallel()

	// Values always come from the encoded JSON, whatever produced it (a
	// custom MarshalJSON, or raw args), and are found the way River finds
	// them.
	tests := []struct {
		name    string
		args    any
		encoded string
		want    string
	}{
		{name: "ValuesNotReencoded", args: emailArgs{}, encoded: `{"to": "x\u0041" , "subject":1.0E2}`,
			want: `{"subject":1.0E2,"to":"x\u0041"}`},
		{name: "EscapedKeysMatch", args: emailArgs{}, encoded: `{"\u0074o":"x"}`, want: `{"to":"x"}`},
		{name: "FirstDuplicateWins", args: emailArgs{}, encoded: `{"to":"1","to":"2"}`, want: `{"to":"1"}`},
		{name: "NestedValueInLaterDuplicate", args: nestedArgs{}, encoded: `{"nested":{},"nested":{"y":"2"}}`,
			want: `{"nested":{"y":"2"}}`},
		{name: "NestedArrayIndex", args: nestedArgs{}, encoded: `{"nested":["a","b"]}`, want: ``},
		{name: "NullParent", args: nestedArgs{}, encoded: `{"nested":null,"b":false}`, want: `{"b":false}`},
		{name: "TopLevelNull", args: emailArgs{}, encoded: `null`, want: ``},
		{name: "TopLevelArray", args: emailArgs{}, encoded: `[{"to":"x"}]`, want: ``},
		{name: "TopLevelArrayDigitName", args: digitTopArgs{}, encoded: `["zero","one"]`, want: `[null,"one"]`},
		{name: "Empty", args: emailArgs{}, encoded: ``, want: ``},
		{name: "ValuePlacedInsideWholeValue", args: wholeOverlap{}, encoded: `{"m":{"c":1},"m":{"b":2}}`,
			want: `{"m":{"c":1,"b":2}}`},
		{name: "WhitespaceInsideWholeValueKept", args: wholeOverlap{}, encoded: `{"m":{ "b" : 2 }}`,
			want: `{"m":{ "b" : 2 }}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()

			got, err := argsPart(t, []byte(tt.encoded), tt.args)
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Fatalf("\n got %s\nwant %s", got, tt.want)
			}
		})
	}
}

// wholeOverlap tags a whole map and, through an embedded struct, a field
// inside the same member.
type wholeOverlap struct {
	M map[string]int `json:"m" river:"unique"`
	OverlapInner
}

// OverlapInner is embedded in wholeOverlap.
type OverlapInner struct {
	M struct {
		B int `json:"b" river:"unique"`
	} `json:"m"`
}

func TestCanonicalArgsWithTagsConflict(t *testing.T) {
	t.Parallel()

	args := digitConflictArgs{One: "a", B: "b"}
	_, err := argsPart(t, mustMarshal(t, args), args)
	if !errors.Is(err, ErrUniqueFieldConflict) {
		t.Fatalf("err = %v, want ErrUniqueFieldConflict", err)
	}

	// Only the present fields matter: with "1" absent there is no conflict.
	got, err := argsPart(t, []byte(`{"b":"b"}`), args)
	if err != nil || got != `{"b":"b"}` {
		t.Fatalf("got %q, %v", got, err)
	}
}

func TestUniquePaths(t *testing.T) {
	t.Parallel()

	paths := func(args any) []string {
		var out []string
		for _, p := range uniquePaths(args) {
			out = append(out, strings.Join(p.comps, "/"))
		}
		return out
	}
	tests := []struct {
		name string
		args any
		want []string
	}{
		{name: "Nil", args: nil},
		{name: "NotStruct", args: map[string]any{"a": 1}},
		{name: "NilPointer", args: (*emailArgs)(nil), want: []string{"subject", "to"}},
		{name: "Embedding", args: embeddingArgs{}, want: []string{"Label", "e1", "p", "z"}},
		{name: "Tie", args: tieArgs{}, want: []string{"k/v", "k.v"}},
		{name: "Digits", args: digitNestedArgs{}, want: []string{"n/-1", "n/0", "n/2"}},
	}
	for _, tt := range tests {
		got := paths(tt.args)
		if strings.Join(got, " ") != strings.Join(tt.want, " ") {
			t.Errorf("%s: paths = %q, want %q", tt.name, got, tt.want)
		}
	}
}

func TestEscapeComponent(t *testing.T) {
	t.Parallel()

	tests := map[string]string{
		"plain_name-1": "plain_name-1",
		"a.b":          `a\.b`,
		":x":           `\:x`,
		"x:":           "x:",
		"@*?|#!$":      `\@\*\?\|\#\!\$`,
		`a"b\c`:        `a\"b\\c`,
		"é<":           `é\<`,
		"tab\there":    "tab\there",
		"~":            `\~`,
	}
	for in, want := range tests {
		if got := escapeComponent(in); got != want {
			t.Errorf("escapeComponent(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestArrayIndexLimit(t *testing.T) {
	t.Parallel()

	value := []byte(`"v"`)
	tests := []struct {
		name  string
		comps []string
	}{
		{name: "TopLevel", comps: []string{"65537"}},
		{name: "Nested", comps: []string{"n", "65537"}},
	}
	for _, tt := range tests {
		if _, err := buildTagged([]byte(`{"n":{"65537":"v"},"65537":"v"}`), []fieldPath{newFieldPath(tt.comps)}); !errors.Is(err, ErrUniqueFieldConflict) {
			t.Errorf("%s: err = %v, want ErrUniqueFieldConflict", tt.name, err)
		}
	}
	got, err := setPath(nil, []string{"n", "3"}, value)
	if err != nil || string(got) != `{"n":[null,null,null,"v"]}` {
		t.Fatalf("setPath = %s, %v", got, err)
	}
	got, err = setPath([]byte(`[1, 2]`), []string{"4"}, value)
	if err != nil || string(got) != `[1,2,null,null,"v"]` {
		t.Fatalf("setPath = %s, %v", got, err)
	}
	got, err = setPath([]byte(`[1]`), []string{"-1"}, value)
	if err != nil || string(got) != `[1,"v"]` {
		t.Fatalf("setPath = %s, %v", got, err)
	}
	if _, err = setPath([]byte(`[1]`), []string{"x"}, value); !errors.Is(err, ErrUniqueFieldConflict) {
		t.Fatalf("setPath err = %v, want ErrUniqueFieldConflict", err)
	}
}
