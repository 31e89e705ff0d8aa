package ops

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"github.com/fieldcrypt/fieldcrypt/fielderr"
)

// ErrMetricsAddr means ServeMetrics could not listen on the address given.
var ErrMetricsAddr = fielderr.New(fielderr.InvalidInput, "metrics: cannot listen")

// MetricsServer serves fieldcrypt's metrics for Prometheus on /metrics of
// one address, through the OpenTelemetry Prometheus exporter, on a
// registry of its own (not Prometheus' global default one: nothing else
// in the process is exposed). Give MeterProvider to Options (Open) and,
// for the operations that take one, to their options; Close it when the
// work is done.
type MetricsServer struct {
	// Addr is the address served, with the port chosen when the one asked
	// for was 0 ("127.0.0.1:0").
	Addr string
	// MeterProvider is the provider whose metrics are served.
	MeterProvider *sdkmetric.MeterProvider

	srv       *http.Server
	done      chan error
	closeOnce sync.Once
	closeErr  error
}

// ServeMetrics listens on addr ("127.0.0.1:9464"; port 0 picks a free
// one) and serves the metrics of a new MeterProvider on /metrics until
// Close. The listener is open when it returns, so a scrape right after it
// succeeds. Serve on loopback or a private interface: the metrics carry
// no value, row key or tenant (unless tenant labels are turned on), but
// they tell who calls which KMS how often.
func ServeMetrics(ctx context.Context, addr string) (*MetricsServer, error) {
	reg := prometheus.NewRegistry()
	exp, err := otelprom.New(otelprom.WithRegisterer(reg))
	if err != nil {
		return nil, fmt.Errorf("metrics: prometheus exporter: %w", err)
	}
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(exp))
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		_ = mp.Shutdown(context.WithoutCancel(ctx))
		return nil, fmt.Errorf("%w on %q: %w", ErrMetricsAddr, addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	m := &MetricsServer{
		Addr:          ln.Addr().String(),
		MeterProvider: mp,
		srv:           &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second},
		done:          make(chan error, 1),
	}
	go func() { m.done <- m.srv.Serve(ln) }()
	return m, nil
}

// Close stops serving (waiting for scrapes in progress, at most until ctx
// ends) and shuts the provider down. Metrics recorded after Close are
// dropped. Later calls return the first one's error.
func (m *MetricsServer) Close(ctx context.Context) error {
	m.closeOnce.Do(func() {
		err := m.srv.Shutdown(ctx)
		if serr := <-m.done; !errors.Is(serr, http.ErrServerClosed) && err == nil {
			err = serr
		}
		m.closeErr = errors.Join(err, m.MeterProvider.Shutdown(ctx))
	})
	return m.closeErr
}
