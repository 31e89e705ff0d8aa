package ops_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/fieldcrypt/fieldcrypt/envelope"
	"github.com/fieldcrypt/fieldcrypt/envelope/envelopetest"
	"github.com/fieldcrypt/fieldcrypt/ops"
)

// Serving metrics for Prometheus while work runs: give the server's
// provider to what reports (ops.Options{MeterProvider} for an operator),
// scrape /metrics, Close when done.
func ExampleServeMetrics() {
	ctx := context.Background()
	ms, err := ops.ServeMetrics(ctx, "127.0.0.1:0") // a free loopback port
	if err != nil {
		panic(err)
	}
	defer ms.Close(ctx)

	e := envelope.New(envelopetest.New(), envelope.WithMeterProvider(ms.MeterProvider))
	_, _ = e.Seal(ctx, envelope.Binding{Class: envelope.High, Table: "t", Column: "c"}, []byte("v"))

	resp, err := http.Get("http://" + ms.Addr + "/metrics")
	if err != nil {
		panic(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for line := range strings.Lines(string(body)) {
		if strings.HasPrefix(line, "fieldcrypt_seal_total{") {
			fmt.Print(line[:strings.Index(line, "{")], " ", strings.Contains(line, `class="high"`), " ", strings.TrimSpace(line[strings.LastIndex(line, " "):]), "\n")
		}
	}
	// Output: fieldcrypt_seal_total true 1
}
