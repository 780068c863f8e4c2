package uniquekey

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// ErrArgsNotObject is returned (wrapped) when ByArgs is set, the args type
// has no field tagged `river:"unique"`, and the encoded args are neither an
// object, an empty array nor empty. River rejects the same inputs.
var ErrArgsNotObject = errors.New("unique args must encode a JSON object")

// ErrUniqueFieldConflict is returned (wrapped) when the fields tagged
// `river:"unique"` cannot be assembled into canonical args, which happens
// only with JSON field names made of digits that River turns into array
// indexes (see buildTagged). River fails such inserts too.
var ErrUniqueFieldConflict = errors.New("unique fields cannot be combined")

// maxArrayIndex bounds the array indexes that all-digit JSON field names can
// produce in canonical args (each missing element below it is written as
// null). Real field names never come close.
const maxArrayIndex = 1 << 16

// canonicalArgs returns the text written after "&args=".
func canonicalArgs(encodedArgs []byte, args any) (string, error) {
	doc, err := scanDocument(encodedArgs)
	if err != nil {
		return "", err
	}
	if paths := uniquePaths(args); len(paths) > 0 {
		return buildTagged(doc, paths)
	}
	return sortedMembers(doc)
}

// sortedMembers implements canonical args for an args type without tagged
// fields: the top-level members of doc sorted bytewise by their decoded key,
// the first of duplicate keys kept, each value copied byte for byte, written
// compactly. An absent document or an empty array gives "{}".
func sortedMembers(doc []byte) (string, error) {
	if len(doc) == 0 {
		return "{}", nil
	}
	switch doc[0] {
	case '{':
	case '[':
		empty := true
		forEachElem(doc, func([]byte) { empty = false })
		if empty {
			return "{}", nil
		}
		return "", fmt.Errorf("%w: got a non-empty array", ErrArgsNotObject)
	default:
		return "", fmt.Errorf("%w: got %.20q", ErrArgsNotObject, doc)
	}

	type member struct {
		key   string
		value []byte
	}
	var members []member
	seen := make(map[string]struct{})
	forEachMember(doc, func(rawKey []byte, escaped bool, value []byte) {
		key := decodeKey(rawKey, escaped)
		if _, dup := seen[key]; dup {
			return
		}
		seen[key] = struct{}{}
		members = append(members, member{key: key, value: value})
	})
	slices.SortFunc(members, func(a, b member) int { return strings.Compare(a.key, b.key) })

	out := make([]byte, 0, len(doc)+2)
	out = append(out, '{')
	for i, m := range members {
		if i > 0 {
			out = append(out, ',')
		}
		out = appendKey(out, m.key)
		out = append(out, ':')
		out = append(out, m.value...)
	}
	out = append(out, '}')
	return string(out), nil
}

// lookup finds the raw bytes of the value at path comps inside doc, the way
// River's path lookup (gjson) resolves it: in an object, members whose
// decoded key equals the component are tried in order, and when one leads
// nowhere the search goes on with the next duplicate; in an array, an
// all-digit component is an index; anything else is not found.
func lookup(doc []byte, comps []string) ([]byte, bool) {
	if len(doc) == 0 {
		return nil, false
	}
	switch doc[0] {
	case '{':
		var (
			result []byte
			found  bool
		)
		forEachMember(doc, func(rawKey []byte, escaped bool, value []byte) {
			if found || decodeKey(rawKey, escaped) != comps[0] {
				return
			}
			if len(comps) == 1 {
				result, found = value, true
				return
			}
			result, found = lookup(value, comps[1:])
		})
		return result, found
	case '[':
		idx, ok := lookupIndex(comps[0])
		if !ok {
			return nil, false
		}
		var (
			elem []byte
			n    uint64
		)
		forEachElem(doc, func(value []byte) {
			if n == idx {
				elem = value
			}
			n++
		})
		if elem == nil {
			return nil, false
		}
		if len(comps) == 1 {
			return elem, true
		}
		return lookup(elem, comps[1:])
	}
	return nil, false
}

// lookupIndex parses an array index the way River's path lookup does: one or
// more ASCII digits, rejected on uint64 overflow.
func lookupIndex(s string) (uint64, bool) {
	if s == "" {
		return 0, false
	}
	var n uint64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		next := n*10 + uint64(c-'0')
		if next/10 != n {
			return 0, false
		}
		n = next
	}
	return n, true
}

// allDigits reports whether River treats a path component as an array index
// when it builds canonical args: every byte an ASCII digit.
func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// arrayIndex returns the index an allDigits component stands for. Indexes
// above maxArrayIndex are refused with ErrUniqueFieldConflict (River would
// try to write that many nulls).
func arrayIndex(s string) (int, error) {
	n := 0
	for i := 0; i < len(s); i++ {
		n = n*10 + int(s[i]-'0')
		if n > maxArrayIndex {
			return 0, fmt.Errorf("%w: field name %q is an array index above %d", ErrUniqueFieldConflict, s, maxArrayIndex)
		}
	}
	return n, nil
}

// buildTagged implements canonical args for an args type with fields tagged
// `river:"unique"`: each path (already in River's order) whose value exists
// in doc is placed into an initially empty document, and that document is
// returned; "" when no value was found.
//
// Placing follows River (which uses sjson) step by step, on bytes, so the
// result matches byte for byte even in odd cases: see setPath.
func buildTagged(doc []byte, paths []fieldPath) (string, error) {
	var out []byte
	for _, p := range paths {
		value, ok := lookup(doc, p.comps)
		if !ok {
			continue
		}
		var err error
		if out, err = setPath(out, p.comps, value); err != nil {
			return "", err
		}
	}
	return string(out), nil
}

// setPath returns doc with value placed at path comps. doc is empty or a
// single JSON value with no surrounding whitespace, built by earlier calls.
//
//   - When comps[0] is found in doc (see locate), the value is placed inside
//     that member or element, or replaces it when comps ends there; all
//     other bytes stay as they are. This also descends into values copied
//     whole earlier.
//   - Otherwise, when doc is empty or not a container it becomes an empty
//     array if comps[0] is all digits, else an empty object; then a new
//     member is appended at the end of an object, or an element at index
//     comps[0] of an array (nulls padding the gap; the elements before it
//     rewritten compactly); "-1" appends to an array; any other name cannot
//     go into an array (ErrUniqueFieldConflict, as River fails too).
//   - New containers along the rest of the path are built by buildValue.
func setPath(doc []byte, comps []string, value []byte) ([]byte, error) {
	if start, end, found := locate(doc, comps[0]); found {
		var inner []byte
		if len(comps) == 1 {
			inner = value
		} else {
			var err error
			if inner, err = setPath(doc[start:end], comps[1:], value); err != nil {
				return nil, err
			}
		}
		out := make([]byte, 0, len(doc)-(end-start)+len(inner))
		out = append(out, doc[:start]...)
		out = append(out, inner...)
		return append(out, doc[end:]...), nil
	}

	numeric := allDigits(comps[0])
	if len(doc) == 0 || (doc[0] != '{' && doc[0] != '[') {
		if numeric {
			doc = []byte("[]")
		} else {
			doc = []byte("{}")
		}
	}
	nonEmpty := doc[skipSpace(doc, 1)] != doc[len(doc)-1]
	var (
		out []byte
		err error
	)

	if doc[0] == '{' {
		out = append(out, doc[:len(doc)-1]...)
		if nonEmpty {
			out = append(out, ',')
		}
		out = appendKey(out, comps[0])
		out = append(out, ':')
		if out, err = buildValue(out, comps, value); err != nil {
			return nil, err
		}
		return append(out, '}'), nil
	}

	switch {
	case numeric:
		idx, err := arrayIndex(comps[0])
		if err != nil {
			return nil, err
		}
		out = append(out, '[')
		n := 0
		forEachElem(doc, func(elem []byte) {
			if n > 0 {
				out = append(out, ',')
			}
			out = append(out, elem...)
			n++
		})
		for ; n < idx; n++ {
			if n > 0 {
				out = append(out, ',')
			}
			out = append(out, "null"...)
		}
		if n > 0 {
			out = append(out, ',')
		}
	case comps[0] == "-1":
		out = append(out, doc[:len(doc)-1]...)
		if nonEmpty {
			out = append(out, ',')
		}
	default:
		return nil, fmt.Errorf("%w: field name %q would be a member of an array (an all-digit field name at the same level made it one)",
			ErrUniqueFieldConflict, comps[0])
	}
	if out, err = buildValue(out, comps, value); err != nil {
		return nil, err
	}
	return append(out, ']'), nil
}

// buildValue appends what goes in a new slot for comps[0]: the value itself
// when comps ends there, else a new container holding the rest of the path:
// an array padded with nulls up to the index when comps[1] is all digits, an
// array when comps[1] is "-1", else an object.
func buildValue(buf []byte, comps []string, value []byte) ([]byte, error) {
	if len(comps) == 1 {
		return append(buf, value...), nil
	}
	next := comps[1]
	var err error
	switch {
	case allDigits(next) || next == "-1":
		idx := 0 // "-1" makes a one-element array
		if next != "-1" {
			if idx, err = arrayIndex(next); err != nil {
				return nil, err
			}
		}
		buf = append(buf, '[')
		for range idx {
			buf = append(buf, "null,"...)
		}
		if buf, err = buildValue(buf, comps[1:], value); err != nil {
			return nil, err
		}
		return append(buf, ']'), nil
	default:
		buf = append(buf, '{')
		buf = appendKey(buf, next)
		buf = append(buf, ':')
		if buf, err = buildValue(buf, comps[1:], value); err != nil {
			return nil, err
		}
		return append(buf, '}'), nil
	}
}

// locate finds the member or element comps names in doc, a single JSON
// value, and returns its byte range: in an object, the first member whose
// decoded key is comp; in an array, the element at index comp (all
// digits). Anything else is not found.
func locate(doc []byte, comp string) (start, end int, found bool) {
	if len(doc) == 0 {
		return 0, 0, false
	}
	// The visitors get subslices of doc: the difference in capacity is
	// their offset in doc.
	base := func(sub []byte) int { return cap(doc) - cap(sub) }
	switch doc[0] {
	case '{':
		forEachMember(doc, func(rawKey []byte, escaped bool, value []byte) {
			if !found && decodeKey(rawKey, escaped) == comp {
				start, end, found = base(value), base(value)+len(value), true
			}
		})
	case '[':
		want, ok := lookupIndex(comp)
		if !ok {
			return 0, 0, false
		}
		var n uint64
		forEachElem(doc, func(value []byte) {
			if !found && n == want {
				start, end, found = base(value), base(value)+len(value), true
			}
			n++
		})
	}
	return start, end, found
}
