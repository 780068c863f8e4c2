// Command containerpg starts a PostgreSQL container for millrace's tests and
// keeps it until its standard input closes.
//
// It is the container path of internal/testdb, kept in a module of its own so
// that testcontainers-go and the Docker client modules it needs stay out of
// the module graph of millrace, and so out of the go.sum of every
// application that imports millrace. internal/testdb builds and runs it only
// after checking that a Docker engine answers.
//
// The protocol: on success it prints one line on standard output, the
// superuser connection string of the container, and then reads standard
// input until it closes (the test binary exits or is done with the server),
// terminates the container and exits 0. On failure it prints the error on
// standard error and exits 1 with nothing on standard output. SIGINT and
// SIGTERM also terminate the container. Should the process die without doing
// so, testcontainers' reaper removes the container.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/testcontainers/testcontainers-go"
	tcpostgres "github.com/testcontainers/testcontainers-go/modules/postgres"
)

const (
	// image is the container's image; keep its major version in step with
	// docker-compose.yml at the repository root.
	image = "postgres:17-alpine"
	// startTimeout bounds pulling the image and starting the container.
	startTimeout = 5 * time.Minute
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintf(os.Stderr, "containerpg: %v\n", err)
		os.Exit(1)
	}
}

// run starts the container, hands its connection string over and keeps it
// until standard input closes or a signal comes.
func run() error {
	ctr, url, err := start()
	if err != nil {
		return err
	}
	if _, err := fmt.Println(url); err != nil {
		return errors.Join(fmt.Errorf("write the connection string: %w", err), terminate(ctr))
	}

	stdinClosed := make(chan struct{})
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		close(stdinClosed)
	}()
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, os.Interrupt, syscall.SIGTERM)
	select {
	case <-stdinClosed:
	case sig := <-signals:
		fmt.Fprintf(os.Stderr, "containerpg: %v received\n", sig)
	}
	return terminate(ctr)
}

// start runs the container and returns it with its connection string.
func start() (*tcpostgres.PostgresContainer, string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	ctr, err := tcpostgres.Run(ctx, image,
		tcpostgres.BasicWaitStrategies(),
		testcontainers.WithCmdArgs("-c", "max_connections=200", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"),
	)
	if err != nil {
		if ctr != nil {
			err = errors.Join(err, terminate(ctr))
		}
		return nil, "", fmt.Errorf("start %s container: %w", image, err)
	}
	url, err := ctr.ConnectionString(ctx, "sslmode=disable")
	if err != nil {
		return nil, "", errors.Join(fmt.Errorf("get connection string of %s container: %w", image, err), terminate(ctr))
	}
	return ctr, url, nil
}

// terminate stops and removes the container.
func terminate(ctr *tcpostgres.PostgresContainer) error {
	if err := testcontainers.TerminateContainer(ctr); err != nil {
		return fmt.Errorf("terminate %s container %s: %w", image, ctr.GetContainerID(), err)
	}
	fmt.Fprintf(os.Stderr, "testdb: terminated %s container %s\n", image, ctr.GetContainerID())
	return nil
}
