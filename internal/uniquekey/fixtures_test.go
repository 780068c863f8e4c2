package uniquekey

import "time"

// Args types used by the tests. Each expected pre-image in the tests was
// also checked against River v0.51.2's own computation for the same value.

// sleepArgs has no tagged field: all of its args count.
type sleepArgs struct {
	ZZ string `json:"zz"`
	A  int    `json:"a"`
}

// emailArgs tags two of its fields.
type emailArgs struct {
	To      string `json:"to"      river:"unique"`
	Subject string `json:"subject" river:"unique"`
	Body    string `json:"body"`
}

// optionalArgs tags omitempty fields that may be absent from the JSON.
type optionalArgs struct {
	ID    int    `json:"id,omitempty"    river:"unique"`
	Label string `json:"label,omitempty" river:"unique"`
	Other string `json:"other"`
}

// goNameArgs tags fields without a json name.
type goNameArgs struct {
	Account string `river:"unique"`
	Region  string `json:",omitempty" river:"unique"`
	Note    string
}

// tagListArgs has the unique tag among other values in the river tag.
type tagListArgs struct {
	A string `json:"a" river:"other, unique"`
	B string `json:"b" river:"uniqueness"`
	C string `json:"c" river:"-"`
}

// nestedInner has one tagged field.
type nestedInner struct {
	X string `json:"x"`
	Y string `json:"y" river:"unique"`
}

// nestedArgs holds tagged fields in a nested struct whose own field is not
// tagged, and a tagged top-level field.
type nestedArgs struct {
	B      string      `json:"b"      river:"unique"`
	Nested nestedInner `json:"nested"`
	C      string      `json:"c"`
}

// addresses has no tagged field.
type addresses struct {
	To  string `json:"to"`
	BCC string `json:"bcc,omitempty"`
}

// wholeStructArgs tags struct fields without tagged subfields, whose whole
// values then count, through a pointer too.
type wholeStructArgs struct {
	Addr    addresses  `json:"addr"    river:"unique"`
	AddrPtr *addresses `json:"addrPtr" river:"unique"`
	When    time.Time  `json:"when"    river:"unique"`
	Untied  addresses  `json:"untied"`
}

// multiLevel nests tagged fields two levels deep through pointers.
type multiLevel struct {
	Headers *headers `json:"headers" river:"unique"`
	Body    string   `json:"body"`
}

type headers struct {
	Addr    *nestedInner `json:"addr" river:"unique"`
	Subject string       `json:"subject" river:"unique"`
}

// Embedded is an exported embedded struct with a tagged field: flattened.
type Embedded struct {
	E1 string `json:"e1" river:"unique"`
	E2 string `json:"e2"`
}

// embeddedHidden is an unexported embedded struct: River skips it even
// though encoding/json promotes its fields.
type embeddedHidden struct {
	H string `json:"h" river:"unique"`
}

// EmbeddedPtr is embedded through a pointer.
type EmbeddedPtr struct {
	P string `json:"p" river:"unique"`
}

// Label is an embedded non-struct type.
type Label string

type embeddingArgs struct {
	Embedded
	embeddedHidden
	*EmbeddedPtr
	Label `river:"unique"`
	Z     string `json:"z" river:"unique"`
}

// recursive refers to itself: River walks each struct type once.
type recursive struct {
	Name string     `json:"name" river:"unique"`
	Skip string     `json:"skip"`
	Next *recursive `json:"next" river:"unique"`
}

type recursiveArgs struct {
	Root recursive `json:"root" river:"unique"`
}

// siblingArgs has two fields of one struct type: the second is not walked
// into again, so with the tag its whole value counts, without it nothing.
type siblingArgs struct {
	First  nestedInner `json:"first"`
	Second nestedInner `json:"second" river:"unique"`
	Third  nestedInner `json:"third"`
}

// pathSyntaxArgs uses JSON names with characters that are special in
// River's path syntax and names that need escaping when written.
type pathSyntaxArgs struct {
	Dotted  string       `json:"a.b"  river:"unique"`
	Nested  dottedInner  `json:"a"`
	At      string       `json:"@at"  river:"unique"`
	Colon   string       `json:":c"  river:"unique"`
	Star    string       `json:"s*"   river:"unique"`
	Amp     string       `json:"a&b"  river:"unique"`
	Unicode string       `json:"é<"   river:"unique"`
	Upper   string       `json:"Y"    river:"unique"`
	Dollar  string       `json:"$x"   river:"unique"`
	Deep    unicodeInner `json:"é>"`
}

type dottedInner struct {
	B  string `json:"b"   river:"unique"`
	BC string `json:"b.c" river:"unique"`
}

type unicodeInner struct {
	U string `json:"é<" river:"unique"`
	Z string `json:"z"  river:"unique"`
}

// tieArgs makes a name containing "." tie with a nested path of the same
// dotted spelling.
type tieArgs struct {
	Literal string   `json:"k.v" river:"unique"`
	Nested  kvNested `json:"k"`
}

type kvNested struct {
	V string `json:"v" river:"unique"`
}

// digitNestedArgs has all-digit JSON names below the top, which River turns
// into array indexes.
type digitNestedArgs struct {
	N digits `json:"n"`
}

type digits struct {
	Zero string `json:"0"  river:"unique"`
	Two  string `json:"2"  river:"unique"`
	Neg  string `json:"-1" river:"unique"`
}

// digitTopArgs has all-digit JSON names at the top.
type digitTopArgs struct {
	One   string `json:"1" river:"unique"`
	Three string `json:"3" river:"unique"`
}

// digitConflictArgs mixes an all-digit and a plain name at the top, which
// River cannot assemble.
type digitConflictArgs struct {
	One string `json:"1" river:"unique"`
	B   string `json:"b" river:"unique"`
}

// noFieldsArgs has no fields at all.
type noFieldsArgs struct{}

// bigDigitMemberArgs has a large all-digit name that becomes an object
// member, because an earlier name already made the top an object.
type bigDigitMemberArgs struct {
	Dollar string `json:"$x"       river:"unique"`
	Big    string `json:"99999999" river:"unique"`
}
