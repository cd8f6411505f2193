package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// service is an inventoryd the harness started on a temp dir.
type service struct {
	cmd     *exec.Cmd
	dir     string // temp dir: binary, data, log
	logPath string
	url     string
	exited  chan error
}

// moduleRoot finds the directory of this module's go.mod, walking up
// from the working directory.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && bytes.Contains(b, []byte("module github.com/inventory-ledger/inventory\n")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("run from inside the inventory module (no go.mod of github.com/inventory-ledger/inventory above the working directory)")
		}
		dir = parent
	}
}

// buildService builds ./cmd/inventoryd of the module into dir.
func buildService(ctx context.Context, dir string) (string, error) {
	root, err := moduleRoot()
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "inventoryd")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/inventoryd")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/inventoryd: %w\n%s", err, out)
	}
	return bin, nil
}

// freePort asks the kernel for a free loopback port. Another process may
// take it before the service binds it; startService then retries.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// startService builds (unless bin is given) and starts inventoryd on a
// free loopback port with a fresh data dir under a new temp dir, and
// waits up to readyWait for /readyz. extra are more flags for it.
func startService(ctx context.Context, bin string, extra []string) (*service, error) {
	dir, err := os.MkdirTemp("", "inventory-bench-")
	if err != nil {
		return nil, err
	}
	if bin == "" {
		if bin, err = buildService(ctx, dir); err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
	}
	var lastErr error
	for attempt := range 3 {
		s, err := launch(ctx, bin, dir, attempt, extra)
		if err == nil {
			return s, nil
		}
		lastErr = err
	}
	os.RemoveAll(dir)
	return nil, lastErr
}

const readyWait = 30 * time.Second

func launch(ctx context.Context, bin, dir string, attempt int, extra []string) (*service, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	s := &service{dir: dir, logPath: filepath.Join(dir, fmt.Sprintf("inventoryd-%d.log", attempt)),
		url: "http://" + addr, exited: make(chan error, 1)}
	logf, err := os.Create(s.logPath)
	if err != nil {
		return nil, err
	}
	defer logf.Close() // the child holds its own descriptor
	args := append([]string{"--addr", addr, "--data-dir", filepath.Join(dir, fmt.Sprintf("data-%d", attempt))}, extra...)
	s.cmd = exec.Command(bin, args...)
	s.cmd.Stdout, s.cmd.Stderr = logf, logf
	if err := s.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	go func() { s.exited <- s.cmd.Wait() }()
	c := newClient(s.url, 1, 2*time.Second)
	defer c.close()
	wctx, cancel := context.WithTimeout(ctx, readyWait)
	defer cancel()
	ready := make(chan error, 1)
	go func() { ready <- c.waitReady(wctx, readyWait) }()
	select {
	case err := <-ready:
		if err != nil {
			s.stop()
			return nil, fmt.Errorf("inventoryd on %s: %w\n%s", addr, err, s.logTail())
		}
		return s, nil
	case err := <-s.exited:
		cancel()
		<-ready
		return nil, fmt.Errorf("inventoryd on %s exited before ready: %v\n%s", addr, err, s.logTail())
	}
}

// logTail is the end of the service's log, for error messages.
func (s *service) logTail() string {
	b, _ := os.ReadFile(s.logPath)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return strings.Join(lines[max(0, len(lines)-15):], "\n")
}

// stop sends SIGTERM and waits up to 15 s (the service promises 10 s),
// then kills it. It reports a non-zero exit.
func (s *service) stop() error {
	if s.cmd.Process == nil {
		return nil
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-s.exited:
		s.exited <- err // a second stop sees it too
		if err != nil {
			return fmt.Errorf("inventoryd exit after SIGTERM: %w\n%s", err, s.logTail())
		}
		return nil
	case <-time.After(15 * time.Second):
		_ = s.cmd.Process.Kill()
		err := <-s.exited
		s.exited <- err
		return fmt.Errorf("inventoryd did not exit within 15s of SIGTERM; killed\n%s", s.logTail())
	}
}

// cleanup stops the service and removes its temp dir.
func (s *service) cleanup() error {
	err := s.stop()
	os.RemoveAll(s.dir)
	return err
}
