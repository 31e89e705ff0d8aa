package cli

import (
	"context"
	"time"

	"github.com/spf13/cobra"
	"go.opentelemetry.io/otel/metric"

	"github.com/fieldcrypt/fieldcrypt/ops"
)

// addMetricsFlag adds --metrics-addr to a long-running command.
func addMetricsFlag(cmd *cobra.Command, addr *string) {
	cmd.Flags().StringVar(addr, "metrics-addr", "", "serve Prometheus metrics on http://ADDR/metrics while the command runs (e.g. 127.0.0.1:9464; port 0 picks one)")
}

// addTenantLabelsFlag adds --metrics-tenant-labels to a command whose
// work spans tenants (re-encryption).
func (a *app) addTenantLabelsFlag(cmd *cobra.Command) {
	cmd.Flags().BoolVar(&a.tenantLabels, "metrics-tenant-labels", false, "label the keyring's and the envelope's metrics with the tenant (off: tenant names may be sensitive, and each tenant is a series)")
}

// serveMetrics starts the metrics server of --metrics-addr, if given, for
// the rest of the command, and returns its provider (nil without one).
// Call it before the operator is opened: the keyring reports to it.
func (a *app) serveMetrics(ctx context.Context, addr string) (metric.MeterProvider, error) {
	if addr == "" {
		return nil, nil
	}
	if a.metrics != nil {
		return a.metrics.MeterProvider, nil
	}
	m, err := ops.ServeMetrics(ctx, addr)
	if err != nil {
		return nil, err
	}
	a.metrics = m
	a.closers = append(a.closers, func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = m.Close(ctx)
	})
	a.note("fieldcrypt: serving metrics on http://%s/metrics", m.Addr)
	return m.MeterProvider, nil
}

// meterProvider is the provider of --metrics-addr, or nil.
func (a *app) meterProvider() metric.MeterProvider {
	if a.metrics == nil {
		return nil
	}
	return a.metrics.MeterProvider
}
