package ops_test

import (
	"context"
	"io"
	"net/http"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fieldcrypt/fieldcrypt/envelope"
	"github.com/fieldcrypt/fieldcrypt/internal/telemetry/telemetrytest"
	"github.com/fieldcrypt/fieldcrypt/internal/testsvc"
	"github.com/fieldcrypt/fieldcrypt/ops"
	"github.com/fieldcrypt/fieldcrypt/reencrypt"
)

// scrape reads /metrics of addr over loopback and parses the exposition.
func scrape(t *testing.T, addr string) (string, map[string][]map[string]string) {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(strings.NewReader(string(body)))
	require.NoError(t, err)
	out := map[string][]map[string]string{}
	for name, f := range fams {
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			out[name] = append(out[name], labels)
		}
	}
	return string(body), out
}

// TestServeMetrics runs an operator's encrypt-existing, rotation and
// rewrap with a MetricsServer's provider, scrapes it over loopback and
// checks the families; no label carries a value, a table or a tenant.
func TestServeMetrics(t *testing.T) {
	ctx := context.Background()
	ms, err := ops.ServeMetrics(ctx, "127.0.0.1:0")
	require.NoError(t, err)
	defer ms.Close(ctx)
	assert.True(t, strings.HasPrefix(ms.Addr, "127.0.0.1:") && !strings.HasSuffix(ms.Addr, ":0"), ms.Addr)

	cfg := project(t, testsvc.SQLite)
	op, err := ops.Open(ctx, cfg, ops.Options{Migrate: true, MeterProvider: ms.MeterProvider})
	require.NoError(t, err)
	defer op.Close()
	_, err = op.Setup(ctx)
	require.NoError(t, err)
	_, err = op.Reencrypt(ctx, cfg.Columns, ops.ReencryptOptions{Options: reencrypt.Options{Mode: reencrypt.EncryptExisting}})
	require.NoError(t, err)
	_, err = op.Rotate(ctx, []envelope.Class{envelope.Critical})
	require.NoError(t, err)
	_, err = op.Reencrypt(ctx, cfg.Columns, ops.ReencryptOptions{Options: reencrypt.Options{Mode: reencrypt.Full}})
	require.NoError(t, err)

	body, fams := scrape(t, ms.Addr)
	names := make([]string, 0, len(fams))
	for n := range fams {
		names = append(names, n)
	}
	sort.Strings(names)
	t.Logf("families: %v", names)
	for _, want := range []string{
		"fieldcrypt_kms_calls_total", "fieldcrypt_kms_duration_seconds", "fieldcrypt_kek_cache_total",
		"fieldcrypt_seal_total", "fieldcrypt_open_total", "fieldcrypt_reencrypt_rows_total", "fieldcrypt_reencrypt_chunks_total",
	} {
		assert.Contains(t, names, want)
	}
	has := func(family string, want map[string]string) bool {
		for _, labels := range fams[family] {
			ok := true
			for k, v := range want {
				ok = ok && labels[k] == v
			}
			if ok {
				return true
			}
		}
		return false
	}
	assert.True(t, has("fieldcrypt_kms_calls_total", map[string]string{"backend": "local", "op": "wrap", "outcome": "ok"}))
	assert.True(t, has("fieldcrypt_reencrypt_rows_total", map[string]string{"mode": "encrypt-existing", "outcome": "changed"}))
	assert.True(t, has("fieldcrypt_reencrypt_rows_total", map[string]string{"mode": "full", "outcome": "changed"}))
	assert.True(t, has("fieldcrypt_seal_total", map[string]string{"class": "critical", "kind": "random", "outcome": "ok"}))
	for _, canary := range []string{"secret-", "customers", "critical.key", "local://"} {
		assert.NotContains(t, body, canary)
	}
	for fam, series := range fams {
		for _, labels := range series {
			_, tenant := labels["tenant"]
			assert.False(t, tenant, "%s has a tenant label", fam)
		}
	}

	require.NoError(t, ms.Close(ctx))
	c := http.Client{Timeout: 2 * time.Second}
	_, err = c.Get("http://" + ms.Addr + "/metrics")
	assert.Error(t, err, "closed with the command")
}

// TestServeMetricsBadAddr: an address that cannot be listened on is
// ErrMetricsAddr.
func TestServeMetricsBadAddr(t *testing.T) {
	_, err := ops.ServeMetrics(context.Background(), "127.0.0.1:notaport")
	require.ErrorIs(t, err, ops.ErrMetricsAddr)
}

// TestTenantLabels: the tenant is a label of the keyring's and the
// envelope's metrics only when Options.TenantLabels turns it on
// (fieldcrypt reencrypt --metrics-tenant-labels).
func TestTenantLabels(t *testing.T) {
	for _, on := range []bool{false, true} {
		t.Run(map[bool]string{false: "off", true: "on"}[on], func(t *testing.T) {
			ctx := context.Background()
			cfg := project(t, testsvc.SQLite)
			cc := cfg.Classes["critical"]
			cc.TenantScoped = true
			cfg.Classes["critical"] = cc
			m := telemetrytest.New(t)
			op, err := ops.Open(ctx, cfg, ops.Options{Migrate: true, MeterProvider: m, TenantLabels: on})
			require.NoError(t, err)
			defer op.Close()
			_, err = op.Setup(ctx)
			require.NoError(t, err)
			b := envelope.Binding{Class: envelope.Critical, Tenant: "acme-canary", Table: "customers", Column: "secret"}
			env := op.Envelope()
			ct, err := env.Seal(ctx, b, []byte("secret-value"))
			require.NoError(t, err)
			_, err = env.Open(ctx, b, ct)
			require.NoError(t, err)

			labelled := map[string]bool{}
			for _, p := range m.Collect(t) {
				if tenant, ok := p.Attrs["tenant"]; ok {
					assert.Equal(t, "acme-canary", tenant, p.Metric)
					labelled[p.Metric] = true
				}
			}
			if !on {
				assert.Empty(t, labelled)
				return
			}
			for _, metric := range []string{"fieldcrypt.seal", "fieldcrypt.open", "fieldcrypt.kek.cache"} {
				assert.True(t, labelled[metric], "%s has no tenant label: %v", metric, labelled)
			}
		})
	}
}

// TestSealSuiteConfig: seal_suite: siv makes the operator's sealing
// commands (encrypt-existing here) write suite 0x04.
func TestSealSuiteConfig(t *testing.T) {
	ctx := context.Background()
	cfg := project(t, testsvc.SQLite)
	cfg.SealSuite = "siv"
	op, err := ops.Open(ctx, cfg, ops.Options{Migrate: true})
	require.NoError(t, err)
	defer op.Close()
	_, err = op.Setup(ctx)
	require.NoError(t, err)
	_, err = op.Reencrypt(ctx, cfg.Columns, ops.ReencryptOptions{Options: reencrypt.Options{Mode: reencrypt.EncryptExisting}})
	require.NoError(t, err)
	var vals []string
	require.NoError(t, op.DB.Raw("SELECT secret FROM customers").Scan(&vals).Error)
	require.Len(t, vals, 5)
	for _, v := range vals {
		h, err := envelope.InspectHeader([]byte(v))
		require.NoError(t, err)
		assert.Equal(t, envelope.SuiteRandomizedSIVWrap, h.Suite)
	}
}
