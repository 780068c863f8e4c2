package uniquekey

import (
	"cmp"
	"reflect"
	"slices"
	"strings"
	"sync"
)

// UniqueTag is the value in a field's `river` struct tag (a comma-separated
// list) that makes the field part of ByArgs uniqueness. The tag is River's,
// honoured exactly so both systems pick the same fields for the same type.
const UniqueTag = "unique"

// fieldPath locates one tagged field in the JSON encoding of an args type.
type fieldPath struct {
	// comps are the JSON member names from the top of the args down to the
	// field.
	comps []string
	// sortKey is comps joined with ".": paths are sorted by it.
	sortKey string
	// escaped is comps in River's escaped path syntax, joined with ".": it
	// breaks ties between equal sortKeys (a name containing "." against a
	// nested path).
	escaped string
}

func newFieldPath(comps []string) fieldPath {
	esc := make([]string, len(comps))
	for i, c := range comps {
		esc[i] = escapeComponent(c)
	}
	return fieldPath{
		comps:   slices.Clone(comps),
		sortKey: strings.Join(comps, "."),
		escaped: strings.Join(esc, "."),
	}
}

// escapeComponent writes a member name in River's path syntax: a backslash
// before every printable ASCII byte other than letters, digits, '_', '-' and
// ':', and before a leading ':'. Only the ordering of equal sort keys
// depends on it.
func escapeComponent(c string) string {
	var b strings.Builder
	for i := 0; i < len(c); i++ {
		ch := c[i]
		safe := ch <= ' ' || ch > '~' || ch == '_' || ch == '-' || ch == ':' ||
			(ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9')
		if !safe {
			b.WriteByte('\\')
		}
		b.WriteByte(ch)
	}
	if s := b.String(); strings.HasPrefix(s, ":") {
		return `\` + s
	}
	return b.String()
}

// pathCache holds the sorted tagged paths of each args type.
var pathCache sync.Map // reflect.Type -> []fieldPath

// uniquePaths returns the tagged field paths of args's type in River's
// order, or nil when args is nil, is not a struct (after following
// pointers), or has no tagged field.
func uniquePaths(args any) []fieldPath {
	typ := reflect.TypeOf(args)
	if typ == nil {
		return nil
	}
	for typ.Kind() == reflect.Pointer {
		typ = typ.Elem()
	}
	if typ.Kind() != reflect.Struct {
		return nil
	}
	if cached, ok := pathCache.Load(typ); ok {
		return cached.([]fieldPath)
	}
	var paths []fieldPath
	collectPaths(typ, nil, make(map[reflect.Type]bool), &paths)
	slices.SortFunc(paths, func(a, b fieldPath) int {
		return cmp.Or(strings.Compare(a.sortKey, b.sortKey), strings.Compare(a.escaped, b.escaped))
	})
	pathCache.Store(typ, paths)
	return paths
}

// collectPaths appends the paths of the tagged fields of struct type typ
// (or pointer to it), whose JSON sits at prefix, following River's walk:
//
//   - unexported fields are skipped, embedded ones included;
//   - a field's name is its json tag name, or its Go name when the tag has
//     none (the name is used as written, even "-");
//   - a field whose type is a struct or a pointer to a struct is walked
//     into, at the same level when embedded, else under its name; if that
//     yields no tagged field and the field itself is tagged, its whole value
//     is one path;
//   - any other tagged field is one path;
//   - each struct type is walked once per args type: met again anywhere
//     (not only in a cycle), it yields nothing, so a tagged field of that
//     type contributes its whole value.
func collectPaths(typ reflect.Type, prefix []string, seen map[reflect.Type]bool, out *[]fieldPath) {
	if typ.Kind() == reflect.Pointer {
		typ = typ.Elem()
	}
	if seen[typ] {
		return
	}
	seen[typ] = true

	for i := range typ.NumField() {
		field := typ.Field(i)
		if !field.IsExported() {
			continue
		}
		name := jsonName(field)
		tagged := hasUniqueTag(field)
		here := append(slices.Clip(prefix), name)

		if isStructOrPointerToStruct(field.Type) {
			sub := here
			if field.Anonymous {
				sub = prefix
			}
			before := len(*out)
			collectPaths(field.Type, sub, seen, out)
			if len(*out) == before && tagged {
				*out = append(*out, newFieldPath(here))
			}
			continue
		}
		if tagged {
			*out = append(*out, newFieldPath(here))
		}
	}
}

// jsonName returns the part of the json tag before the first comma, or the
// Go field name when that is empty.
func jsonName(field reflect.StructField) string {
	name, _, _ := strings.Cut(field.Tag.Get("json"), ",")
	if name == "" {
		return field.Name
	}
	return name
}

// hasUniqueTag reports whether the field's river tag lists UniqueTag
// (surrounding spaces ignored).
func hasUniqueTag(field reflect.StructField) bool {
	tag, ok := field.Tag.Lookup("river")
	if !ok {
		return false
	}
	for part := range strings.SplitSeq(tag, ",") {
		if strings.TrimSpace(part) == UniqueTag {
			return true
		}
	}
	return false
}

// isStructOrPointerToStruct reports whether typ is a struct or a pointer to
// one (a single level of pointer).
func isStructOrPointerToStruct(typ reflect.Type) bool {
	return typ.Kind() == reflect.Struct ||
		(typ.Kind() == reflect.Pointer && typ.Elem().Kind() == reflect.Struct)
}
