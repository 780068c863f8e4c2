package uniquekey

import (
	"encoding/json"
	"errors"
	"fmt"
	"unicode/utf16"
	"unicode/utf8"
)

// ErrInvalidJSON is returned (wrapped) when the encoded args that a key is
// computed from are not valid JSON.
var ErrInvalidJSON = errors.New("invalid JSON")

// maxNesting bounds how deeply the scanner descends into nested objects and
// arrays, so hostile input cannot exhaust the stack. encoding/json uses the
// same limit.
const maxNesting = 10000

// syntaxErr reports a JSON syntax problem at byte offset off.
func syntaxErr(off int, format string, args ...any) error {
	return fmt.Errorf("%w: offset %d: %s", ErrInvalidJSON, off, fmt.Sprintf(format, args...))
}

// isSpace reports whether c is JSON insignificant whitespace.
func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r'
}

// skipSpace returns the index of the first non-whitespace byte at or after i.
func skipSpace(d []byte, i int) int {
	for i < len(d) && isSpace(d[i]) {
		i++
	}
	return i
}

// memberFunc receives one object member: the bytes between the key's quotes
// (still escaped), whether they contain escapes, and the value's raw bytes.
type memberFunc func(rawKey []byte, escaped bool, value []byte)

// elemFunc receives the raw bytes of one array element.
type elemFunc func(value []byte)

// scanDocument validates that d holds exactly one JSON value, optionally
// surrounded by whitespace, and returns that value's bytes. A document that
// is empty or all whitespace returns (nil, nil): callers decide what an
// absent value means.
func scanDocument(d []byte) ([]byte, error) {
	start := skipSpace(d, 0)
	if start == len(d) {
		return nil, nil
	}
	end, err := scanValue(d, start, 0)
	if err != nil {
		return nil, err
	}
	if rest := skipSpace(d, end); rest != len(d) {
		return nil, syntaxErr(rest, "unexpected %q after top-level value", d[rest])
	}
	return d[start:end], nil
}

// scanValue validates the JSON value that starts at d[i] and returns the
// index just past it. depth is the nesting depth of the enclosing container.
func scanValue(d []byte, i, depth int) (int, error) {
	if i >= len(d) {
		return i, syntaxErr(i, "unexpected end of input, expected a value")
	}
	switch c := d[i]; {
	case c == '{':
		return scanObject(d, i, depth+1, nil)
	case c == '[':
		return scanArray(d, i, depth+1, nil)
	case c == '"':
		end, _, err := scanString(d, i)
		return end, err
	case c == '-' || (c >= '0' && c <= '9'):
		return scanNumber(d, i)
	case c == 't':
		return scanLiteral(d, i, "true")
	case c == 'f':
		return scanLiteral(d, i, "false")
	case c == 'n':
		return scanLiteral(d, i, "null")
	default:
		return i, syntaxErr(i, "unexpected %q, expected a value", c)
	}
}

// scanLiteral checks that the literal word lit starts at d[i].
func scanLiteral(d []byte, i int, lit string) (int, error) {
	if len(d)-i < len(lit) || string(d[i:i+len(lit)]) != lit {
		return i, syntaxErr(i, "invalid literal, expected %s", lit)
	}
	return i + len(lit), nil
}

// scanNumber validates the number that starts at d[i] against the JSON
// grammar: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func scanNumber(d []byte, i int) (int, error) {
	start := i
	if d[i] == '-' {
		i++
	}
	switch {
	case i < len(d) && d[i] == '0':
		i++
	case i < len(d) && d[i] >= '1' && d[i] <= '9':
		i = skipDigits(d, i)
	default:
		return i, syntaxErr(start, "invalid number")
	}
	if i < len(d) && d[i] == '.' {
		i++
		if i >= len(d) || d[i] < '0' || d[i] > '9' {
			return i, syntaxErr(start, "invalid number: no digits after decimal point")
		}
		i = skipDigits(d, i)
	}
	if i < len(d) && (d[i] == 'e' || d[i] == 'E') {
		i++
		if i < len(d) && (d[i] == '+' || d[i] == '-') {
			i++
		}
		if i >= len(d) || d[i] < '0' || d[i] > '9' {
			return i, syntaxErr(start, "invalid number: no digits in exponent")
		}
		i = skipDigits(d, i)
	}
	return i, nil
}

// skipDigits returns the index of the first non-digit at or after i.
func skipDigits(d []byte, i int) int {
	for i < len(d) && d[i] >= '0' && d[i] <= '9' {
		i++
	}
	return i
}

// scanString validates the string whose opening quote is d[i]. It returns
// the index just past the closing quote and whether the string contains
// backslash escapes.
func scanString(d []byte, i int) (end int, escaped bool, err error) {
	start := i
	i++
	for i < len(d) {
		switch c := d[i]; {
		case c == '"':
			return i + 1, escaped, nil
		case c < 0x20:
			return i, false, syntaxErr(i, "control character %#02x in string", c)
		case c == '\\':
			escaped = true
			if i+1 >= len(d) {
				return i, false, syntaxErr(i, "unterminated escape")
			}
			switch d[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if len(d)-i < 6 {
					return i, false, syntaxErr(i, "truncated \\u escape")
				}
				for _, h := range d[i+2 : i+6] {
					if hexVal(h) < 0 {
						return i, false, syntaxErr(i, "invalid \\u escape")
					}
				}
				i += 6
			default:
				return i, false, syntaxErr(i, "invalid escape %q", d[i+1])
			}
		default:
			i++
		}
	}
	return i, false, syntaxErr(start, "unterminated string")
}

// hexVal returns the value of hex digit c, or -1.
func hexVal(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0')
	case c >= 'a' && c <= 'f':
		return int(c-'a') + 10
	case c >= 'A' && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}

// scanObject validates the object whose '{' is d[i] and returns the index
// just past its '}'. When visit is non-nil it is called for every member in
// document order, duplicates included.
func scanObject(d []byte, i, depth int, visit memberFunc) (int, error) {
	if depth > maxNesting {
		return i, syntaxErr(i, "nesting deeper than %d", maxNesting)
	}
	i = skipSpace(d, i+1)
	if i < len(d) && d[i] == '}' {
		return i + 1, nil
	}
	for {
		if i >= len(d) || d[i] != '"' {
			return i, syntaxErr(i, "expected a string object key")
		}
		keyStart := i
		keyEnd, escaped, err := scanString(d, i)
		if err != nil {
			return keyEnd, err
		}
		i = skipSpace(d, keyEnd)
		if i >= len(d) || d[i] != ':' {
			return i, syntaxErr(i, "expected ':' after object key")
		}
		valStart := skipSpace(d, i+1)
		valEnd, err := scanValue(d, valStart, depth)
		if err != nil {
			return valEnd, err
		}
		if visit != nil {
			visit(d[keyStart+1:keyEnd-1], escaped, d[valStart:valEnd])
		}
		i = skipSpace(d, valEnd)
		if i >= len(d) {
			return i, syntaxErr(i, "unterminated object")
		}
		switch d[i] {
		case ',':
			i = skipSpace(d, i+1)
		case '}':
			return i + 1, nil
		default:
			return i, syntaxErr(i, "expected ',' or '}' in object")
		}
	}
}

// scanArray validates the array whose '[' is d[i] and returns the index just
// past its ']'. When visit is non-nil it is called for every element.
func scanArray(d []byte, i, depth int, visit elemFunc) (int, error) {
	if depth > maxNesting {
		return i, syntaxErr(i, "nesting deeper than %d", maxNesting)
	}
	i = skipSpace(d, i+1)
	if i < len(d) && d[i] == ']' {
		return i + 1, nil
	}
	for {
		valStart := i
		valEnd, err := scanValue(d, valStart, depth)
		if err != nil {
			return valEnd, err
		}
		if visit != nil {
			visit(d[valStart:valEnd])
		}
		i = skipSpace(d, valEnd)
		if i >= len(d) {
			return i, syntaxErr(i, "unterminated array")
		}
		switch d[i] {
		case ',':
			i = skipSpace(d, i+1)
		case ']':
			return i + 1, nil
		default:
			return i, syntaxErr(i, "expected ',' or ']' in array")
		}
	}
}

// forEachMember calls visit for each member of obj, a validated JSON object.
func forEachMember(obj []byte, visit memberFunc) {
	// obj was validated by scanDocument, so no error can occur here; the
	// nesting depth restarts at zero but obj is shallower than the
	// document it was validated within.
	_, _ = scanObject(obj, 0, 0, visit)
}

// forEachElem calls visit for each element of arr, a validated JSON array.
func forEachElem(arr []byte, visit elemFunc) {
	_, _ = scanArray(arr, 0, 0, visit)
}

// decodeKey returns the text of a validated object key given the bytes
// between its quotes.
//
// Escapes are decoded the way River's JSON reader (gjson) decodes them, so
// keys compare and sort exactly as River's do. That differs from
// encoding/json only for invalid UTF-16: a \u escape holding a surrogate
// that is followed by another \u escape always consumes both and decodes
// them as a pair (U+FFFD when they do not form one), and a surrogate not
// followed by \u becomes U+FFFD. Raw bytes are kept as they are, even when
// they are not valid UTF-8.
func decodeKey(raw []byte, escaped bool) string {
	if !escaped {
		return string(raw)
	}
	out := make([]byte, 0, len(raw))
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		if c != '\\' {
			out = append(out, c)
			continue
		}
		i++
		switch raw[i] {
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case 'u':
			r := hex4(raw[i+1 : i+5])
			i += 4
			if utf16.IsSurrogate(r) && len(raw)-(i+1) >= 6 && raw[i+1] == '\\' && raw[i+2] == 'u' {
				r = utf16.DecodeRune(r, hex4(raw[i+3:i+7]))
				i += 6
			}
			out = utf8.AppendRune(out, r) // invalid runes become U+FFFD
		default: // '"', '\\', '/'
			out = append(out, raw[i])
		}
	}
	return string(out)
}

// hex4 decodes four validated hex digits.
func hex4(h []byte) rune {
	var r rune
	for _, c := range h {
		r = r<<4 | rune(hexVal(c))
	}
	return r
}

// appendKey appends key as a quoted JSON object key, encoded the way River
// writes keys into canonical args: verbatim between quotes, unless the key
// has a byte below 0x20 or above 0x7f, a '"' or a '\'; then as
// encoding/json.Marshal encodes the string (which also escapes <, >, &,
// U+2028 and U+2029 and turns invalid UTF-8 into \ufffd).
func appendKey(buf []byte, key string) []byte {
	for i := 0; i < len(key); i++ {
		if c := key[i]; c < 0x20 || c > 0x7f || c == '"' || c == '\\' {
			enc, err := json.Marshal(key)
			if err != nil { // cannot happen: any Go string marshals
				panic(err)
			}
			return append(buf, enc...)
		}
	}
	buf = append(buf, '"')
	buf = append(buf, key...)
	return append(buf, '"')
}
