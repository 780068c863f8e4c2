package main

import (
	"errors"

	"github.com/millrace/millrace/client"
)

// configureEphemeral makes cfg delete every job of its queues on
// completion instead of keeping the row (client.QueueConfig.Ephemeral). It
// is the only place that knows how millrace spells that option.
func configureEphemeral(cfg *client.Config) error {
	if len(cfg.Queues) == 0 {
		return errors.New("ephemeral: the config has no queues")
	}
	for name, q := range cfg.Queues {
		q.Ephemeral = true
		cfg.Queues[name] = q
	}
	return nil
}

// ephemeralSupported reports whether configureEphemeral accepts a config
// like the bench's, and the error when it does not.
func ephemeralSupported() error {
	return configureEphemeral(&client.Config{Queues: map[string]client.QueueConfig{queue: {MaxWorkers: defaultWorkers}}})
}
