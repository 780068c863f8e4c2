package schemaname

import (
	"errors"
	"strings"
	"testing"

	"github.com/millrace/millrace/driver"
)

func TestValidate(t *testing.T) {
	t.Parallel()
	for _, ok := range []string{"", "public", "_x", "My_Schema_2", strings.Repeat("s", MaxLength)} {
		if err := Validate(ok); err != nil {
			t.Errorf("Validate(%q) = %v, want nil", ok, err)
		}
	}
	for bad, want := range map[string]string{
		strings.Repeat("s", MaxLength+1): "longer than 46 characters",
		"my-schema":                      `"my-schema" must match`,
		"1abc":                           `"1abc" must match`,
		"sch ema":                        "must match",
		`a"b`:                            "must match",
	} {
		err := Validate(bad)
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate(%q) = %v, want ErrInvalid saying %q", bad, err, want)
		}
	}
}

// Every notification channel of the longest accepted schema fits
// Postgres' 63-byte identifiers.
func TestChannelsFitTheLongestSchema(t *testing.T) {
	t.Parallel()
	schema := strings.Repeat("s", MaxLength)
	for _, topic := range []string{driver.TopicInsert, driver.TopicControl, driver.TopicLeadership, driver.TopicDomainLeadership} {
		if n := len(schema + "." + topic); n > 63 {
			t.Errorf("channel of topic %s with a %d-byte schema is %d bytes, more than Postgres' 63", topic, MaxLength, n)
		}
	}
}
