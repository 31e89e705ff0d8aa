package cli

import (
	"net"
	"regexp"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var servingRE = regexp.MustCompile(`serving metrics on http://(127\.0\.0\.1:\d+)/metrics`)

// TestMetricsAddr: the long-running commands serve metrics while they run
// (the scrape itself is ops' TestServeMetrics) and stop when they end.
func TestMetricsAddr(t *testing.T) {
	e, _ := quickstartEnv(t)
	e.ok("keys", "rotate", "--class", "critical")
	for _, args := range [][]string{
		{"reencrypt", "--column", "patients.ssn", "--metrics-addr", "127.0.0.1:0"},
		{"reencrypt", "--column", "patients.ssn", "--full", "--dry-run", "--metrics-addr", "127.0.0.1:0"},
	} {
		r := e.ok(args...)
		m := servingRE.FindStringSubmatch(r.stderr)
		require.Len(t, m, 2, "stderr: %s", r.stderr)
		_, err := net.DialTimeout("tcp", m[1], time.Second)
		assert.Error(t, err, "%v: the server stops with the command", args)
	}
	r := e.runIn("some data", "backup", "encrypt", "--class", "critical", "--metrics-addr", "127.0.0.1:0")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Regexp(t, servingRE, r.stderr)
	e.write("d.fcb", r.stdout)
	assert.Regexp(t, servingRE, e.ok("backup", "verify", "d.fcb", "--metrics-addr", "127.0.0.1:0").stderr)

	r = e.run("reencrypt", "--column", "patients.ssn", "--metrics-addr", "127.0.0.1:notaport")
	assert.NotEqual(t, 0, r.code)
	assert.Contains(t, r.stderr, "metrics: cannot listen")
}
