// Package telemetrytest reads the metrics fieldcrypt's packages record, for
// their tests: a MeterProvider over the SDK's ManualReader, and sums of
// counters by attributes.
package telemetrytest

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
)

// Metrics is a MeterProvider whose metrics a test reads with Collect.
type Metrics struct {
	*sdkmetric.MeterProvider
	reader *sdkmetric.ManualReader
}

// New returns a provider with a manual reader, shut down at the end of
// the test.
func New(t testing.TB) *Metrics {
	r := sdkmetric.NewManualReader()
	m := &Metrics{MeterProvider: sdkmetric.NewMeterProvider(sdkmetric.WithReader(r)), reader: r}
	t.Cleanup(func() { _ = m.Shutdown(context.Background()) })
	return m
}

// Point is one data point: its metric, its attributes, and its value (a
// counter's sum, a histogram's count).
type Point struct {
	Metric string
	Attrs  map[string]string
	Value  int64
}

// Collect returns every data point recorded so far.
func (m *Metrics) Collect(t testing.TB) []Point {
	t.Helper()
	var rm metricdata.ResourceMetrics
	require.NoError(t, m.reader.Collect(context.Background(), &rm))
	var out []Point
	for _, sm := range rm.ScopeMetrics {
		for _, md := range sm.Metrics {
			add := func(attrs map[string]string, v int64) {
				out = append(out, Point{Metric: md.Name, Attrs: attrs, Value: v})
			}
			switch d := md.Data.(type) {
			case metricdata.Sum[int64]:
				for _, p := range d.DataPoints {
					add(attrMap(p.Attributes.ToSlice()), p.Value)
				}
			case metricdata.Histogram[float64]:
				for _, p := range d.DataPoints {
					add(attrMap(p.Attributes.ToSlice()), int64(p.Count))
				}
			}
		}
	}
	return out
}

// Sum adds the values of the points of metric whose attributes include
// every one of want.
func (m *Metrics) Sum(t testing.TB, metric string, want map[string]string) int64 {
	t.Helper()
	var n int64
	for _, p := range m.Collect(t) {
		if p.Metric == metric && includes(p.Attrs, want) {
			n += p.Value
		}
	}
	return n
}

func includes(have, want map[string]string) bool {
	for k, v := range want {
		if have[k] != v {
			return false
		}
	}
	return true
}

func attrMap(kvs []attribute.KeyValue) map[string]string {
	out := make(map[string]string, len(kvs))
	for _, kv := range kvs {
		out[string(kv.Key)] = kv.Value.Emit()
	}
	return out
}
