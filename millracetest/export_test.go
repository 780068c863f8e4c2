package millracetest

import (
	"github.com/jackc/pgx/v5"

	"github.com/millrace/millrace/driver"
)

// SetWrapDriver makes the harness wrap its working clients' driver (a
// deliberately broken client, for the package's own tests).
func SetWrapDriver(cfg *ShutdownConfig, wrap func(driver.Driver[pgx.Tx]) driver.Driver[pgx.Tx]) {
	cfg.wrapDriver = wrap
}
