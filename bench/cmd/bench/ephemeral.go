package main

import (
	"errors"

	"github.com/millrace/millrace/client"
)

// errNoEphemeral is what the ephemeral scenario fails with while millrace
// cannot delete jobs on completion.
var errNoEphemeral = errors.New("ephemeral: millrace has no delete-on-completion option yet")

// configureEphemeral makes cfg delete every job of its queues on
// completion instead of keeping the row. It is the only place that knows
// how millrace spells that option, so wiring the ephemeral scenario to it
// is a change to this function alone: set the option on cfg (per queue or
// per kind, for jobKind) and return nil. Until the option exists it
// returns errNoEphemeral, and the parent refuses the scenario before
// running anything.
func configureEphemeral(cfg *client.Config) error {
	return errNoEphemeral
}

// ephemeralSupported reports whether configureEphemeral accepts a config
// like the bench's, and the error when it does not.
func ephemeralSupported() error {
	return configureEphemeral(&client.Config{Queues: map[string]client.QueueConfig{queue: {MaxWorkers: defaultWorkers}}})
}
