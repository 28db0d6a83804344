package redistest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/gomodule/redigo/redis"
	"github.com/ory/dockertest/v3"
	dc "github.com/ory/dockertest/v3/docker"
)

// start starts an owned Redis: a container from REDIS_IMAGE when Docker has
// that image, else redis-server from PATH.
func start(extra []string) (*Server, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	args := append([]string{
		"--port", strconv.Itoa(port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--protected-mode", "no",
	}, extra...)
	s := &Server{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), Owned: true, args: args}
	s.URL = "redis://" + s.Addr

	var why []string
	if err := s.startDocker(); err == nil {
		s.How = "docker"
	} else {
		why = append(why, "docker: "+err.Error())
		if err := s.startProcess(); err != nil {
			why = append(why, "redis-server: "+err.Error())
			return nil, fmt.Errorf("%w: %s", errUnavailable, strings.Join(why, "; "))
		}
		s.How = "redis-server"
	}
	if err := s.waitReady(10 * time.Second); err != nil {
		s.stop()
		return nil, err
	}
	return s, nil
}

func (s *Server) startDocker() error {
	image := os.Getenv("REDIS_IMAGE")
	if image == "" {
		image = DefaultImage
	}
	repo, tag := image, "latest"
	if i := strings.LastIndex(image, ":"); i > strings.LastIndex(image, "/") {
		repo, tag = image[:i], image[i+1:]
	}
	pool, err := dockertest.NewPool("")
	if err != nil {
		return err
	}
	if err := pool.Client.Ping(); err != nil {
		return fmt.Errorf("no Docker engine: %w", err)
	}
	if _, err := pool.Client.InspectImage(repo + ":" + tag); err != nil {
		return fmt.Errorf("image %s:%s is not available locally (nothing can be pulled here): %w", repo, tag, err)
	}
	// Host networking: the Redis listens on 127.0.0.1:port of this machine, so
	// its address survives a restart and cluster nodes can announce it.
	res, err := pool.RunWithOptions(&dockertest.RunOptions{
		Repository: repo,
		Tag:        tag,
		Cmd:        append([]string{"redis-server"}, s.args...),
		Labels:     map[string]string{"floodgate-test": "redis"},
	}, func(hc *dc.HostConfig) {
		hc.NetworkMode = "host"
		hc.PublishAllPorts = false
		hc.AutoRemove = false
		hc.RestartPolicy = dc.RestartPolicy{Name: "no"}
	})
	if err != nil {
		return err
	}
	_ = res.Expire(1800) // a safety net should the test binary die before its cleanup
	s.pool, s.res = pool, res
	return nil
}

func (s *Server) startProcess() error {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return err
	}
	if s.dir == "" {
		if s.dir, err = os.MkdirTemp("", "floodgate-redis-"); err != nil {
			return err
		}
	}
	cmd := exec.Command(bin, append(s.args, "--dir", s.dir, "--logfile", filepath.Join(s.dir, "redis.log"))...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	s.mu.Lock()
	s.cmd, s.waitErr = cmd, done
	s.mu.Unlock()
	return nil
}

func (s *Server) waitReady(d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		c, err := redis.DialContext(ctx, "tcp", s.Addr)
		if err == nil {
			_, err = redis.DoContext(c, ctx, "PING")
			c.Close()
		}
		cancel()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s Redis at %s not ready after %v: %w", s.How, s.Addr, d, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (s *Server) signal(sig syscall.Signal) error {
	if s.res != nil {
		id := s.res.Container.ID
		if sig == syscall.SIGSTOP {
			return s.pool.Client.PauseContainer(id)
		}
		err := s.pool.Client.UnpauseContainer(id)
		if err != nil && strings.Contains(err.Error(), "is not paused") {
			return nil // resumed already: Resume is idempotent
		}
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return errors.New("not running")
	}
	return s.cmd.Process.Signal(sig)
}

func (s *Server) kill() error {
	if s.res != nil {
		id := s.res.Container.ID
		if err := s.pool.Client.KillContainer(dc.KillContainerOptions{ID: id, Signal: dc.SIGKILL}); err != nil {
			return err
		}
		// docker kill returns once the signal is sent; wait for the death.
		for i := 0; i < 500; i++ {
			c, err := s.pool.Client.InspectContainer(id)
			if err == nil && !c.State.Running {
				return nil
			}
			time.Sleep(10 * time.Millisecond)
		}
		return errors.New("container still running 5s after SIGKILL")
	}
	s.mu.Lock()
	cmd, done := s.cmd, s.waitErr
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		return nil
	}
	_ = cmd.Process.Signal(syscall.SIGCONT) // a paused process must be able to die
	if err := cmd.Process.Kill(); err != nil {
		return err
	}
	<-done
	return nil
}

func (s *Server) restart() error {
	if s.res != nil {
		if err := s.pool.Client.StartContainer(s.res.Container.ID, nil); err != nil {
			return err
		}
	} else if err := s.startProcess(); err != nil {
		return err
	}
	return s.waitReady(10 * time.Second)
}

func (s *Server) stop() {
	if s.res != nil {
		_ = s.pool.Client.UnpauseContainer(s.res.Container.ID)
		_ = s.pool.Purge(s.res)
		return
	}
	_ = s.kill()
	if s.dir != "" {
		os.RemoveAll(s.dir)
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
