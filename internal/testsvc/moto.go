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
	path, err := exec.LookPath("moto_server")
	if err != nil {
		return "", fmt.Errorf("moto_server not on PATH (pip install 'moto[server]'): %w", err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	port := l.Addr().(*net.TCPAddr).Port
	_ = l.Close()
	cmd := exec.Command(path, "-H", "127.0.0.1", "-p", fmt.Sprint(port))
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		return "", err
	}
	go func() { // drain so the server never blocks on a full pipe
		s := bufio.NewScanner(stderr)
		for s.Scan() {
		}
	}()
	url := fmt.Sprintf("http://127.0.0.1:%d", port)
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get(url + "/moto-api/")
		if err == nil {
			resp.Body.Close()
			return url, nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	_ = cmd.Process.Kill()
	return "", errors.New("moto_server did not answer within 30s on " + url)
}
