// Package schemaname is the one check of the schema names millrace accepts,
// shared by the client (Config.Schema) and migrate, so that the client does
// not import migrate (and with it the embedded SQL) to validate its
// configuration. migrate re-exports it as ValidateSchema, ErrInvalidSchema
// and MaxSchemaLength.
package schemaname

import (
	"errors"
	"fmt"
	"regexp"
)

// MaxLength is the longest schema name accepted, so that notification
// channel names ("<schema>.river_leadership") fit Postgres' 63 bytes.
const MaxLength = 46

// ErrInvalid is returned (wrapped) for a schema name that cannot be used.
var ErrInvalid = errors.New("invalid schema name")

var pattern = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)

// Validate checks a schema name; the empty name is valid (the connection's
// default schema). A name is at most MaxLength bytes of ASCII letters,
// digits and underscores, not starting with a digit, so that it can be
// used unquoted.
func Validate(schema string) error {
	if schema == "" {
		return nil
	}
	if len(schema) > MaxLength {
		return fmt.Errorf("%w: %q is longer than %d characters", ErrInvalid, schema, MaxLength)
	}
	if !pattern.MatchString(schema) {
		return fmt.Errorf("%w: %q must match %s", ErrInvalid, schema, pattern)
	}
	return nil
}
