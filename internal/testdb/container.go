package testdb

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/testcontainers/testcontainers-go"
	tcpostgres "github.com/testcontainers/testcontainers-go/modules/postgres"
)

const (
	// containerImage is the image of the container path; keep its major
	// version in step with docker-compose.yml.
	containerImage = "postgres:17-alpine"
	// containerTimeout bounds pulling the image and starting the container.
	containerTimeout = 5 * time.Minute
	// dockerDialTimeout bounds the check that a Docker engine answers.
	dockerDialTimeout = time.Second
)

// startContainer starts a PostgreSQL container with testcontainers-go and
// returns it with its connection string. It first checks, within about a
// second, that a Docker engine answers, so that a machine without Docker
// never waits on testcontainers.
func startContainer() (*tcpostgres.PostgresContainer, string, error) {
	if err := dockerAnswers(); err != nil {
		return nil, "", err
	}
	ctx, cancel := context.WithTimeout(context.Background(), containerTimeout)
	defer cancel()
	ctr, err := tcpostgres.Run(ctx, containerImage,
		tcpostgres.BasicWaitStrategies(),
		testcontainers.WithCmdArgs("-c", "max_connections=200", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"),
	)
	if err != nil {
		if ctr != nil {
			_ = stopContainer(ctr)
		}
		return nil, "", fmt.Errorf("start %s container: %w", containerImage, err)
	}
	url, err := ctr.ConnectionString(ctx, "sslmode=disable")
	if err != nil {
		_ = stopContainer(ctr)
		return nil, "", fmt.Errorf("get connection string of %s container: %w", containerImage, err)
	}
	return ctr, url, nil
}

// stopContainer terminates and removes the container.
func stopContainer(ctr *tcpostgres.PostgresContainer) error {
	if err := testcontainers.TerminateContainer(ctr); err != nil {
		return fmt.Errorf("terminate %s container %s: %w", containerImage, ctr.GetContainerID(), err)
	}
	fmt.Fprintf(os.Stderr, "testdb: terminated %s container %s\n", containerImage, ctr.GetContainerID())
	return nil
}

// dockerAnswers reports, quickly, whether a Docker (or Podman) engine accepts
// connections: at DOCKER_HOST when set, else at the usual socket paths.
func dockerAnswers() error {
	if host := os.Getenv("DOCKER_HOST"); host != "" {
		u, err := url.Parse(host)
		if err != nil {
			return fmt.Errorf("DOCKER_HOST=%q does not parse: %w", host, err)
		}
		switch u.Scheme {
		case "unix":
			return dial("unix", u.Path)
		case "tcp", "http", "https":
			return dial("tcp", u.Host)
		default:
			return nil // ssh:// and others: let testcontainers try
		}
	}
	candidates := []string{"/var/run/docker.sock", "/run/podman/podman.sock"}
	if dir := os.Getenv("XDG_RUNTIME_DIR"); dir != "" {
		candidates = append(candidates, filepath.Join(dir, "docker.sock"), filepath.Join(dir, "podman", "podman.sock"))
	}
	if home, err := os.UserHomeDir(); err == nil {
		candidates = append(candidates,
			filepath.Join(home, ".docker", "run", "docker.sock"),
			filepath.Join(home, ".docker", "desktop", "docker.sock"),
			filepath.Join(home, ".colima", "default", "docker.sock"),
		)
	}
	var errs []error
	for _, path := range candidates {
		if _, err := os.Stat(path); err != nil {
			continue
		}
		err := dial("unix", path)
		if err == nil {
			return nil
		}
		errs = append(errs, err)
	}
	if len(errs) == 0 {
		return fmt.Errorf("no Docker engine: DOCKER_HOST is not set and there is no socket at %s", strings.Join(candidates, ", "))
	}
	return fmt.Errorf("no Docker engine answers: %w", errors.Join(errs...))
}

// dial checks that something accepts connections at address.
func dial(network, address string) error {
	conn, err := net.DialTimeout(network, address, dockerDialTimeout)
	if err != nil {
		return fmt.Errorf("dial %s://%s: %w", network, address, err)
	}
	return conn.Close()
}
