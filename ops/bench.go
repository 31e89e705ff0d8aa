package ops

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"time"

	"github.com/fieldcrypt/fieldcrypt/backup"
	"github.com/fieldcrypt/fieldcrypt/envelope"
	"github.com/fieldcrypt/fieldcrypt/fielderr"
	"github.com/fieldcrypt/fieldcrypt/keyring"
	"github.com/fieldcrypt/fieldcrypt/keyring/kms"
	"github.com/fieldcrypt/fieldcrypt/keyring/kms/localkms"
)

// BenchRow is one measurement and its baseline.
type BenchRow struct {
	Name            string  `json:"name"`
	Bytes           int     `json:"bytes"` // bytes processed per op
	NsPerOp         float64 `json:"ns_per_op"`
	MBPerS          float64 `json:"mb_per_s"`
	Ops             int     `json:"ops"`
	Baseline        string  `json:"baseline"`
	BaselineNsPerOp float64 `json:"baseline_ns_per_op"`
	BaselineMBPerS  float64 `json:"baseline_mb_per_s"`
	RatioToBaseline float64 `json:"ratio"` // ns/op divided by the baseline's ns/op
}

// BenchResult is a whole bench run, with the machine it ran on.
type BenchResult struct {
	GoVersion    string     `json:"go_version"`
	GOOS         string     `json:"goos"`
	GOARCH       string     `json:"goarch"`
	CPUs         int        `json:"cpus"`
	DurationPerS float64    `json:"duration_per_test_s"`
	Results      []BenchRow `json:"results"`
}

// measure runs fn repeatedly for about d and returns ns/op and the count.
func measure(ctx context.Context, d time.Duration, fn func() error) (float64, int, error) {
	if err := fn(); err != nil { // warm-up, and fail fast
		return 0, 0, err
	}
	n, batch := 0, 1
	start := time.Now()
	for {
		if err := ctx.Err(); err != nil {
			return 0, n, err
		}
		t := time.Now()
		for i := 0; i < batch; i++ {
			if err := fn(); err != nil {
				return 0, n, err
			}
		}
		n += batch
		el := time.Since(start)
		if el >= d {
			return float64(el.Nanoseconds()) / float64(n), n, nil
		}
		if time.Since(t) < d/50 && batch < 1<<20 {
			batch *= 2
		}
	}
}

func mbps(bytes int, ns float64) float64 {
	if ns == 0 {
		return 0
	}
	return round2(float64(bytes) / ns * 1e9 / 1e6)
}

// Bench measures, on this machine, field seal and open (64 B, 1 KiB)
// through a keyring with a local master key (KEKs cached, as in a running
// application), rewrap, blind index, and backup stream encryption and
// decryption, each beside raw AES-256-GCM measured in the same run, with
// the ratio of the two. It spends about d on each test and on each
// baseline; streamSize is the bytes of each stream operation (whole MiB).
// announce, if set, is called before each test. It needs no configuration
// and touches no database (keys live in a temporary directory).
func Bench(ctx context.Context, d time.Duration, streamSize int, announce func(string)) (*BenchResult, error) {
	if d <= 0 || streamSize < 1<<20 {
		return nil, fmt.Errorf("%w: bench needs a positive duration and at least 1 MiB per stream", fielderr.ErrInvalidInput)
	}
	if announce == nil {
		announce = func(string) {}
	}
	rows, err := runBench(ctx, d, streamSize, announce)
	if err != nil {
		return nil, err
	}
	return &BenchResult{GoVersion: runtime.Version(), GOOS: runtime.GOOS, GOARCH: runtime.GOARCH, CPUs: runtime.NumCPU(), DurationPerS: d.Seconds(), Results: rows}, nil
}

func runBench(ctx context.Context, d time.Duration, streamSize int, announce func(string)) ([]BenchRow, error) {
	dir, err := os.MkdirTemp("", "fieldcrypt-bench-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	keyPath := filepath.Join(dir, "master.key")
	mk, err := localkms.Create(keyPath)
	if err != nil {
		return nil, err
	}
	kr, err := keyring.New(keyring.Config{Name: "bench", Classes: map[string]keyring.ClassConfig{"critical": {MasterKey: mk.URI()}}},
		keyring.NewFileStore(filepath.Join(dir, "keyring.json")), keyring.WithMasterKeys(mk))
	if err != nil {
		return nil, err
	}
	defer kr.Close()
	env := envelope.New(kr)
	bind := envelope.Binding{Class: envelope.Critical, Table: "bench", Column: "value", Row: "1"}
	scope := bind.Scope()
	if _, err := kr.Init(ctx); err != nil {
		return nil, err
	}

	// Raw AES-256-GCM baseline: one fixed key, a random nonce per seal.
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	block, _ := aes.NewCipher(key)
	gcm, _ := cipher.NewGCM(block)
	nonce := make([]byte, gcm.NonceSize())
	rawSeal := func(n int) (func() error, []byte) {
		pt := make([]byte, n)
		buf := make([]byte, 0, n+gcm.Overhead())
		return func() error {
			if _, err := rand.Read(nonce); err != nil {
				return err
			}
			buf = gcm.Seal(buf[:0], nonce, pt, nil)
			return nil
		}, pt
	}
	rawOpen := func(n int) func() error {
		pt := make([]byte, n)
		_, _ = rand.Read(nonce)
		ct := gcm.Seal(nil, nonce, pt, nil)
		buf := make([]byte, 0, n)
		nc := bytes.Clone(nonce)
		return func() error {
			var err error
			buf, err = gcm.Open(buf[:0], nc, ct, nil)
			return err
		}
	}
	rawStream := func(seal bool) func() error {
		const seg = 1 << 20
		pt := make([]byte, seg)
		nonce := make([]byte, gcm.NonceSize())
		ct := gcm.Seal(nil, nonce, pt, nil)
		buf := make([]byte, 0, seg+gcm.Overhead())
		return func() error {
			for i := 0; i < streamSize/seg; i++ {
				if seal {
					buf = gcm.Seal(buf[:0], nonce, pt, nil)
				} else if _, err := gcm.Open(buf[:0], nonce, ct, nil); err != nil {
					return err
				}
			}
			return nil
		}
	}

	type test struct {
		name     string
		bytes    int
		fn       func() error
		baseName string
		base     func() error
	}
	sealN := func(n int) func() error {
		pt := make([]byte, n)
		return func() error { _, err := env.Seal(ctx, bind, pt); return err }
	}
	openN := func(n int) (func() error, error) {
		ct, err := env.Seal(ctx, bind, make([]byte, n))
		if err != nil {
			return nil, err
		}
		return func() error {
			pt, err := env.Open(ctx, bind, ct)
			clear(pt)
			return err
		}, nil
	}
	open64, err := openN(64)
	if err != nil {
		return nil, err
	}
	open1k, err := openN(1024)
	if err != nil {
		return nil, err
	}
	// Rewrap: a value under v1 moved to v2 (the primary after a rotation).
	old, err := env.Seal(ctx, bind, make([]byte, 1024))
	if err != nil {
		return nil, err
	}
	if _, err := kr.Rotate(ctx, scope); err != nil {
		return nil, err
	}
	rewrap := func() error { _, err := env.Rewrap(ctx, bind, old); return err }
	blind := func() error {
		_, err := env.ComputeBlindIndex(ctx, bind, envelope.BlindIndex{}, make([]byte, 64))
		return err
	}
	src := make([]byte, streamSize)
	streamEnc := func() error {
		_, err := backup.Encrypt(ctx, io.Discard, bytes.NewReader(src), mk, backup.EncryptOptions{Class: envelope.Critical})
		return err
	}
	var encrypted bytes.Buffer
	if _, err := backup.Encrypt(ctx, &encrypted, bytes.NewReader(src), mk, backup.EncryptOptions{Class: envelope.Critical}); err != nil {
		return nil, err
	}
	streamDec := func() error {
		_, err := backup.Decrypt(ctx, io.Discard, bytes.NewReader(encrypted.Bytes()), kms.OpenerFunc(func(context.Context, string) (kms.MasterKey, error) { return mk, nil }), backup.DecryptOptions{})
		return err
	}
	seal64, _ := rawSeal(64)
	seal1k, _ := rawSeal(1024)
	seal32, _ := rawSeal(32)
	tests := []test{
		{"field seal 64B", 64, sealN(64), "gcm seal 64B", seal64},
		{"field open 64B", 64, open64, "gcm open 64B", rawOpen(64)},
		{"field seal 1KiB", 1024, sealN(1024), "gcm seal 1KiB", seal1k},
		{"field open 1KiB", 1024, open1k, "gcm open 1KiB", rawOpen(1024)},
		{"rewrap (DEK 32B)", 32, rewrap, "gcm seal 32B", seal32},
		{"blind index 64B", 64, blind, "gcm seal 64B", seal64},
		{fmt.Sprintf("stream encrypt %dMiB", streamSize>>20), streamSize, streamEnc, "gcm seal 1MiB x" + fmt.Sprint(streamSize>>20), rawStream(true)},
		{fmt.Sprintf("stream decrypt %dMiB", streamSize>>20), streamSize, streamDec, "gcm open 1MiB x" + fmt.Sprint(streamSize>>20), rawStream(false)},
	}
	var rows []BenchRow
	for _, t := range tests {
		announce(t.name)
		ns, n, err := measure(ctx, d, t.fn)
		if err != nil {
			return nil, fmt.Errorf("bench %s: %w", t.name, err)
		}
		bns, _, err := measure(ctx, d, t.base)
		if err != nil {
			return nil, fmt.Errorf("bench %s: %w", t.baseName, err)
		}
		rows = append(rows, BenchRow{
			Name: t.name, Bytes: t.bytes, NsPerOp: round2(ns), MBPerS: mbps(t.bytes, ns), Ops: n,
			Baseline: t.baseName, BaselineNsPerOp: round2(bns), BaselineMBPerS: mbps(t.bytes, bns), RatioToBaseline: round2(ns / bns),
		})
	}
	return rows, nil
}
