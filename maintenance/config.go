package maintenance

import (
	"errors"
	"fmt"
	"time"

	"github.com/millrace/millrace/driver"
)

// ErrInvalidConfig is wrapped by every error a constructor of this package
// returns for a bad configuration: a nil config or executor, or a value
// out of range. A zero value always means the documented default; a bad
// value is never replaced by a default.
var ErrInvalidConfig = errors.New("invalid maintenance config")

// invalid returns an error wrapping ErrInvalidConfig, naming the service.
func invalid(service, format string, args ...any) error {
	return fmt.Errorf("%w: %s: %s", ErrInvalidConfig, service, fmt.Sprintf(format, args...))
}

// checkExec checks that a service has an executor to run its statements
// on.
func checkExec(service string, exec driver.Executor) error {
	if exec == nil {
		return invalid(service, "nil executor")
	}
	return nil
}

// setting checks a setting where 0 means the default and a negative value
// is invalid, and returns the value to use.
func setting[T int | time.Duration](service, name string, v, def T) (T, error) {
	switch {
	case v == 0:
		return def, nil
	case v < 0:
		return 0, invalid(service, "%s %v: must be positive, or 0 for the default (%v)", name, v, def)
	}
	return v, nil
}

// retention checks a retention where 0 means the default and -1 means
// forever.
func retention(service, name string, v, def time.Duration) (time.Duration, error) {
	switch {
	case v == 0:
		return def, nil
	case v < -1:
		return 0, invalid(service, "%s %s: must be positive, 0 for the default (%s), or -1 to keep forever", name, v, def)
	}
	return v, nil
}
