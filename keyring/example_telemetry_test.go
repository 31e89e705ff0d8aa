package keyring_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/fieldcrypt/fieldcrypt/envelope"
	"github.com/fieldcrypt/fieldcrypt/keyring"
)

// A keyring reporting KMS calls and KEK cache results to the application's
// provider (the global one, installed with otel.SetMeterProvider, needs
// no option). The first seal creates the KEK: two KMS wraps (the KEK, and
// the class key that seals the keyring on first use), and the new KEK is
// cached, so every lookup is a hit. A process that finds the KEK in the
// store counts a miss (and a KMS unwrap) first.
func ExampleWithMeterProvider() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "keyring-example")
	defer os.RemoveAll(dir)
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	cfg := keyring.Config{Name: "billing", Classes: map[string]keyring.ClassConfig{"critical": {MasterKey: criticalKey}}}
	kr, _ := keyring.New(cfg, keyring.NewFileStore(filepath.Join(dir, "keks.json")),
		keyring.WithMasterKeys(newDemoKey(criticalKey)), keyring.WithMeterProvider(mp))
	defer kr.Close()
	e := envelope.New(kr)
	for range 3 {
		_, _ = e.Seal(ctx, envelope.Binding{Class: envelope.Critical, Table: "invoices", Column: "iban"}, []byte("DE89..."))
	}

	var rm metricdata.ResourceMetrics
	_ = reader.Collect(ctx, &rm)
	for _, m := range rm.ScopeMetrics[0].Metrics {
		if sum, ok := m.Data.(metricdata.Sum[int64]); ok {
			for _, p := range sum.DataPoints {
				fmt.Println(m.Name, p.Attributes.Encoded(attribute.DefaultEncoder()), p.Value)
			}
		}
	}
	// Unordered output:
	// fieldcrypt.kms.calls backend=awskms,op=wrap,outcome=ok 2
	// fieldcrypt.kek.cache class=critical,result=hit 3
}
