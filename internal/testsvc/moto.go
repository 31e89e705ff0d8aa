package testsvc

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os/exec"
	"sync"
	"syscall"
	"testing"
	"time"
)

var (
	motoOnce sync.Once
	motoURL  string
	motoErr  error
)

// Moto returns the endpoint (http://127.0.0.1:PORT) of a moto_server the
// test binary started on a free loopback port. One server serves the whole
// test binary; it dies with it (PR_SET_PDEATHSIG).
func Moto(t testing.TB) string {
	t.Helper()
	motoOnce.Do(func() { motoURL, motoErr = startMoto() })
	if motoErr != nil {
		Unavailable(t, "moto_server", motoErr)
	}
	return motoURL
}

func startMoto() (string, error) {
	port, err := freePort()
	if err != nil {
		return "", err
	}
	_, err = launchMoto(port)
	return motoEndpoint(port), err
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	port := l.Addr().(*net.TCPAddr).Port
	return port, l.Close()
}

func motoEndpoint(port int) string { return fmt.Sprintf("http://127.0.0.1:%d", port) }

// launchMoto starts moto_server on port and waits until it answers.
func launchMoto(port int) (*exec.Cmd, error) {
	path, err := exec.LookPath("moto_server")
	if err != nil {
		return nil, fmt.Errorf("moto_server not on PATH (pip install 'moto[server]'): %w", err)
	}
	cmd := exec.Command(path, "-H", "127.0.0.1", "-p", fmt.Sprint(port))
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	go func() { // drain so the server never blocks on a full pipe
		s := bufio.NewScanner(stderr)
		for s.Scan() {
		}
	}()
	url := motoEndpoint(port)
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get(url + "/moto-api/")
		if err == nil {
			resp.Body.Close()
			return cmd, nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	return nil, errors.New("moto_server did not answer within 30s on " + url)
}

// MotoServer is a moto_server of one test's own, on a free loopback port,
// that the test can kill and start again on the same port: a KMS outage
// and its end. moto keeps no state across a restart (keys created before
// are gone). It is killed when the test ends.
type MotoServer struct {
	URL  string // http://127.0.0.1:PORT
	t    testing.TB
	port int
	cmd  *exec.Cmd
}

// StartMoto starts a MotoServer.
func StartMoto(t testing.TB) *MotoServer {
	t.Helper()
	port, err := freePort()
	if err != nil {
		Unavailable(t, "moto_server", err)
	}
	m := &MotoServer{URL: motoEndpoint(port), t: t, port: port}
	m.Start()
	t.Cleanup(m.Stop)
	return m
}

// Start starts the server (again) on its port and waits until it answers.
func (m *MotoServer) Start() {
	m.t.Helper()
	if m.cmd != nil {
		return
	}
	cmd, err := launchMoto(m.port)
	if err != nil {
		Unavailable(m.t, "moto_server", err)
	}
	m.cmd = cmd
}

// Stop kills the server (SIGKILL: no goodbye to clients) and waits for it
// to exit; the port stops answering.
func (m *MotoServer) Stop() {
	if m.cmd == nil {
		return
	}
	_ = m.cmd.Process.Kill()
	_ = m.cmd.Wait()
	m.cmd = nil
}
