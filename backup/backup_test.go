package backup

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/fieldcrypt/fieldcrypt/envelope"
	"github.com/fieldcrypt/fieldcrypt/keyring/kms"
)

func encrypt(t testing.TB, mk kms.MasterKey, pt []byte, opts EncryptOptions) []byte {
	t.Helper()
	if opts.Class == 0 {
		opts.Class = envelope.High
	}
	var out bytes.Buffer
	res, err := Encrypt(context.Background(), &out, bytes.NewReader(pt), mk, opts)
	if err != nil {
		t.Fatal(err)
	}
	if res.CiphertextBytes != int64(out.Len()) || res.PlaintextBytes != int64(len(pt)) {
		t.Fatalf("Encrypt result %+v for %d -> %d bytes", res.Progress, len(pt), out.Len())
	}
	return out.Bytes()
}

func TestRoundTripSizes(t *testing.T) {
	mk := randomMasterKey("local-test://roundtrip")
	seg := MinSegmentSize
	sizes := []int{0, 1, 15, 16, 17, seg - 1, seg, seg + 1, 2*seg - 1, 2 * seg, 2*seg + 1, 7*seg + 5, 16 * seg}
	for _, n := range sizes {
		for _, workers := range []int{1, 2, 5} {
			t.Run(fmt.Sprintf("n=%d/workers=%d", n, workers), func(t *testing.T) {
				pt := detBytes(fmt.Sprint("rt", n), n)
				ct := encrypt(t, mk, pt, EncryptOptions{SegmentSize: seg, Workers: workers})
				// size: header + ceil(n/seg) segments (at least one) with a tag each
				segs := (n + seg - 1) / seg
				if segs == 0 {
					segs = 1
				}
				h, err := Inspect(bytes.NewReader(ct))
				if err != nil {
					t.Fatal(err)
				}
				if want := h.Size + n + segs*tagSize; len(ct) != want {
					t.Fatalf("ciphertext %d bytes, want %d", len(ct), want)
				}
				var out bytes.Buffer
				res, err := Decrypt(context.Background(), &out, bytes.NewReader(ct), openerFor(mk), DecryptOptions{Workers: 3 - workers%3})
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(out.Bytes(), pt) {
					t.Fatal("plaintext mismatch")
				}
				if res.Segments != int64(segs) {
					t.Fatalf("segments %d, want %d", res.Segments, segs)
				}
			})
		}
	}
}

func TestDefaultSegmentSizeAndHeader(t *testing.T) {
	mk := randomMasterKey("local-test://hdr")
	pt := detBytes("hdr", 3*DefaultSegmentSize+100)
	before := time.Now().UTC().Truncate(time.Second)
	ct := encrypt(t, mk, pt, EncryptOptions{Class: envelope.Moderate, Name: "orders-db nightly"})
	h, err := Inspect(bytes.NewReader(ct))
	if err != nil {
		t.Fatal(err)
	}
	if h.Version != Version || h.Class != envelope.Moderate || h.SegmentSize != DefaultSegmentSize ||
		h.Name != "orders-db nightly" || h.MasterKeyURI != mk.URI() || h.CreatedAt.Before(before) || h.ExportID == (ExportID{}) {
		t.Fatalf("header %+v", h)
	}
	ec := h.EncryptionContext()
	if ec[ECPurpose] != "backup" || ec[ECClass] != "moderate" || ec[ECExportID] != h.ExportID.String() ||
		ec[ECCreatedAt] != h.CreatedAt.Format(time.RFC3339) || ec[ECExportName] != "orders-db nightly" || ec[ECVersion] != "1" {
		t.Fatalf("encryption context %v", ec)
	}
	// Two exports of the same input differ entirely (fresh file key, id, salt).
	ct2 := encrypt(t, mk, pt, EncryptOptions{Class: envelope.Moderate, Name: "orders-db nightly"})
	h2, _ := Inspect(bytes.NewReader(ct2))
	if h2.ExportID == h.ExportID || bytes.Equal(ct[h.Size:h.Size+64], ct2[h2.Size:h2.Size+64]) {
		t.Fatal("two exports share an export id or payload bytes")
	}
	res, err := Verify(context.Background(), bytes.NewReader(ct), openerFor(mk), DecryptOptions{Class: envelope.Moderate, KeyURIs: []string{mk.URI()}})
	if err != nil || res.PlaintextBytes != int64(len(pt)) || res.Segments != 4 {
		t.Fatalf("Verify: %+v, %v", res, err)
	}
}

// TestNoUnauthenticatedOutput tampers each segment in turn and checks that
// Decrypt wrote exactly the plaintext of the segments before it.
func TestNoUnauthenticatedOutput(t *testing.T) {
	mk := randomMasterKey("local-test://partial")
	seg := MinSegmentSize
	pt := detBytes("partial", 6*seg+99)
	ct := encrypt(t, mk, pt, EncryptOptions{SegmentSize: seg})
	hdr, segs := split(t, ct)
	for k := range segs {
		tampered := make([][]byte, len(segs))
		copy(tampered, segs)
		tampered[k] = flip(segs[k], len(segs[k])/2)
		var out bytes.Buffer
		_, err := Decrypt(context.Background(), &out, bytes.NewReader(join(hdr, tampered...)), openerFor(mk), DecryptOptions{Workers: 4})
		if !errors.Is(err, ErrAuthentication) {
			t.Fatalf("segment %d tampered: %v", k, err)
		}
		if !strings.Contains(err.Error(), fmt.Sprintf("segment %d ", k)) {
			t.Errorf("error does not name segment %d: %v", k, err)
		}
		if !bytes.Equal(out.Bytes(), pt[:k*seg]) {
			t.Fatalf("segment %d tampered: wrote %d bytes, want exactly the %d authenticated ones", k, out.Len(), k*seg)
		}
	}
}

// TestEveryByteAuthenticated flips each byte of a small backup: every
// variant must fail (with a sentinel), none may panic.
func TestEveryByteAuthenticated(t *testing.T) {
	mk := randomMasterKey("local-test://bytes")
	ct := encrypt(t, mk, detBytes("bytes", 2*MinSegmentSize+10), EncryptOptions{SegmentSize: MinSegmentSize, Name: "n"})
	h, _ := Inspect(bytes.NewReader(ct))
	step := 1
	if testing.Short() {
		step = 97
	}
	for i := 0; i < len(ct); i += step {
		if i >= h.Size && i < len(ct)-200 && (i-h.Size)%(MinSegmentSize+tagSize) > 64 && (i-h.Size)%(MinSegmentSize+tagSize) < MinSegmentSize-64 {
			i += 61 // sample the middle of segments; every header and tag byte is tried
		}
		_, err := Verify(context.Background(), bytes.NewReader(flip(ct, i)), openerFor(mk), DecryptOptions{})
		if err == nil {
			t.Fatalf("flipping byte %d went unnoticed", i)
		}
		if !errors.Is(err, ErrAuthentication) && !errors.Is(err, ErrMalformedHeader) && !errors.Is(err, ErrUnsupportedVersion) &&
			!errors.Is(err, kms.ErrKeyNotFound) && !errors.Is(err, ErrTruncated) {
			t.Fatalf("byte %d: unexpected error %v", i, err)
		}
	}
	// Every truncation fails too.
	for n := 0; n < len(ct); n += 1 + n/8 {
		if _, err := Verify(context.Background(), bytes.NewReader(ct[:n]), openerFor(mk), DecryptOptions{}); err == nil {
			t.Fatalf("truncation to %d bytes went unnoticed", n)
		}
	}
}

func TestWrongAndUntrustedKeys(t *testing.T) {
	mk := randomMasterKey("local-test://right")
	ct := encrypt(t, mk, []byte("hello"), EncryptOptions{Class: envelope.Critical})
	ctx := context.Background()

	// Same URI, different key material: the KMS unwrap fails.
	impostor := randomMasterKey(mk.URI())
	if _, err := Verify(ctx, bytes.NewReader(ct), openerFor(impostor), DecryptOptions{}); !errors.Is(err, ErrAuthentication) || !errors.Is(err, kms.ErrAuthentication) {
		t.Fatalf("wrong master key: %v", err)
	}
	// Unknown key: the opener's error comes through.
	if _, err := Verify(ctx, bytes.NewReader(ct), openerFor(), DecryptOptions{}); !errors.Is(err, kms.ErrKeyNotFound) {
		t.Fatalf("unknown key: %v", err)
	}
	// Pinning: another URI or class is refused before the opener runs.
	called := false
	spy := kms.OpenerFunc(func(ctx context.Context, uri string) (kms.MasterKey, error) { called = true; return mk, nil })
	if _, err := Verify(ctx, bytes.NewReader(ct), spy, DecryptOptions{KeyURIs: []string{"aws-kms://other"}}); !errors.Is(err, ErrUntrustedKey) {
		t.Fatalf("untrusted URI: %v", err)
	}
	if _, err := Verify(ctx, bytes.NewReader(ct), spy, DecryptOptions{Class: envelope.Low}); !errors.Is(err, ErrUntrustedKey) {
		t.Fatalf("unexpected class: %v", err)
	}
	if called {
		t.Fatal("opener called for an untrusted header")
	}
	// KMS down: the kms sentinel comes through, not ErrAuthentication.
	down := kms.OpenerFunc(func(ctx context.Context, uri string) (kms.MasterKey, error) {
		return nil, &kms.Error{Op: "open", URI: uri, Err: kms.ErrUnavailable}
	})
	if _, err := Verify(ctx, bytes.NewReader(ct), down, DecryptOptions{}); !errors.Is(err, kms.ErrUnavailable) || errors.Is(err, ErrAuthentication) {
		t.Fatalf("kms down: %v", err)
	}
	// nil opener uses the kms registry: no backend registered for local-test.
	if _, err := Verify(ctx, bytes.NewReader(ct), nil, DecryptOptions{}); !errors.Is(err, kms.ErrInvalidURI) {
		t.Fatalf("registry: %v", err)
	}
}

func TestEncryptOptionErrors(t *testing.T) {
	mk := randomMasterKey("local-test://opts")
	ctx := context.Background()
	for name, opts := range map[string]EncryptOptions{
		"no class":      {},
		"public":        {Class: envelope.Public},
		"bad class":     {Class: 9},
		"small segment": {Class: envelope.Low, SegmentSize: MinSegmentSize - 1},
		"huge segment":  {Class: envelope.Low, SegmentSize: MaxSegmentSize + 1},
		"long name":     {Class: envelope.Low, Name: strings.Repeat("x", MaxNameLen+1)},
		"control name":  {Class: envelope.Low, Name: "a\x1b[2Jb"},
	} {
		if _, err := Encrypt(ctx, io.Discard, strings.NewReader("x"), mk, opts); !errors.Is(err, ErrInvalidInput) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := Encrypt(ctx, io.Discard, strings.NewReader("x"), nil, EncryptOptions{Class: envelope.Low}); !errors.Is(err, ErrInvalidInput) {
		t.Errorf("nil key: %v", err)
	}
	if _, err := Encrypt(ctx, io.Discard, strings.NewReader("x"), randomMasterKey(""), EncryptOptions{Class: envelope.Low}); !errors.Is(err, ErrInvalidInput) {
		t.Errorf("empty URI: %v", err)
	}
}

type failingWriter struct{ after int }

var errDisk = errors.New("disk full")

func (w *failingWriter) Write(p []byte) (int, error) {
	if w.after <= 0 {
		return 0, errDisk
	}
	w.after--
	return len(p), nil
}

type failingReader struct {
	r   io.Reader
	n   int
	err error
}

func (r *failingReader) Read(p []byte) (int, error) {
	if r.n <= 0 {
		return 0, r.err
	}
	if len(p) > r.n {
		p = p[:r.n]
	}
	n, err := r.r.Read(p)
	r.n -= n
	return n, err
}

func TestIOErrorsAndCancel(t *testing.T) {
	mk := randomMasterKey("local-test://io")
	ctx := context.Background()
	pt := detBytes("io", 10*MinSegmentSize)
	opts := EncryptOptions{Class: envelope.Low, SegmentSize: MinSegmentSize, Workers: 2}
	if _, err := Encrypt(ctx, &failingWriter{after: 3}, bytes.NewReader(pt), mk, opts); !errors.Is(err, errDisk) {
		t.Fatalf("write error: %v", err)
	}
	errRead := errors.New("read failed")
	if _, err := Encrypt(ctx, io.Discard, &failingReader{r: bytes.NewReader(pt), n: 5000, err: errRead}, mk, opts); !errors.Is(err, errRead) {
		t.Fatalf("read error: %v", err)
	}
	ct := encrypt(t, mk, pt, opts)
	if _, err := Decrypt(ctx, &failingWriter{after: 2}, bytes.NewReader(ct), openerFor(mk), DecryptOptions{}); !errors.Is(err, errDisk) {
		t.Fatalf("decrypt write error: %v", err)
	}
	if _, err := Decrypt(ctx, io.Discard, &failingReader{r: bytes.NewReader(ct), n: 9000, err: errRead}, openerFor(mk), DecryptOptions{}); !errors.Is(err, errRead) {
		t.Fatalf("decrypt read error: %v", err)
	}
	// Cancellation mid-stream stops with the context's error.
	cctx, cancel := context.WithCancel(ctx)
	n := 0
	_, err := Decrypt(cctx, io.Discard, bytes.NewReader(ct), openerFor(mk), DecryptOptions{Progress: func(Progress) {
		if n++; n == 2 {
			cancel()
		}
	}})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("cancel: %v", err)
	}
	// An endless source is stopped by cancellation too.
	cctx, cancel = context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if _, err := Encrypt(cctx, io.Discard, newDetReader("endless"), mk, opts); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("timeout: %v", err)
	}
}

func TestProgress(t *testing.T) {
	mk := randomMasterKey("local-test://progress")
	pt := detBytes("progress", 5*MinSegmentSize+1)
	var seen []Progress
	var out bytes.Buffer
	res, err := Encrypt(context.Background(), &out, bytes.NewReader(pt), mk, EncryptOptions{Class: envelope.Low, SegmentSize: MinSegmentSize,
		Progress: func(p Progress) { seen = append(seen, p) }})
	if err != nil {
		t.Fatal(err)
	}
	if len(seen) != 6 || seen[5] != res.Progress || seen[0].PlaintextBytes != MinSegmentSize || seen[5].CiphertextBytes != int64(out.Len()) {
		t.Fatalf("progress %+v, result %+v", seen, res.Progress)
	}
	seen = nil
	res, err = Verify(context.Background(), bytes.NewReader(out.Bytes()), openerFor(mk), DecryptOptions{Progress: func(p Progress) { seen = append(seen, p) }})
	if err != nil || len(seen) != 6 || seen[5] != res.Progress || res.PlaintextBytes != int64(len(pt)) || res.CiphertextBytes != int64(out.Len()) {
		t.Fatalf("verify progress %+v, %v", seen, err)
	}
}

func TestSizing(t *testing.T) {
	for _, c := range []struct{ workers, seg int }{{1, DefaultSegmentSize}, {2, DefaultSegmentSize}, {64, DefaultSegmentSize}, {1, MaxSegmentSize}, {64, MaxSegmentSize}, {1000, MinSegmentSize}} {
		w := sizing(c.workers, c.seg+tagSize)
		// worker buffers + the last-segment copy stay under 64 MiB
		if w < 1 || w > c.workers || (w+1)*(c.seg+tagSize) > 64<<20 {
			t.Errorf("sizing(%d, %d) = %d workers", c.workers, c.seg, w)
		}
	}
}

func TestMaxSegments(t *testing.T) {
	if maxSegments(MinSegmentSize) != MaxSegments || maxSegments(DefaultSegmentSize) != 1<<28 || maxSegments(MaxSegmentSize) != 1<<24 {
		t.Fatal(maxSegments(MinSegmentSize), maxSegments(DefaultSegmentSize), maxSegments(MaxSegmentSize))
	}
	var n [nonceSize]byte
	segmentNonce(&n, MaxSegments-1, true)
	if n != [nonceSize]byte{0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 1} {
		t.Fatalf("nonce %x", n)
	}
}

func TestDecryptFile(t *testing.T) {
	mk := randomMasterKey("local-test://file")
	pt := detBytes("file", 3*MinSegmentSize+7)
	ct := encrypt(t, mk, pt, EncryptOptions{SegmentSize: MinSegmentSize})
	dir := t.TempDir()
	path := filepath.Join(dir, "restored.dump")
	if _, err := DecryptFile(context.Background(), path, bytes.NewReader(ct), openerFor(mk), DecryptOptions{}); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(path)
	if err != nil || !bytes.Equal(got, pt) {
		t.Fatalf("restored file: %v", err)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", fi.Mode())
	}
	// A failure leaves no file behind, and an existing file untouched.
	bad := flip(ct, len(ct)-5)
	if _, err := DecryptFile(context.Background(), path, bytes.NewReader(bad), openerFor(mk), DecryptOptions{}); !errors.Is(err, ErrAuthentication) {
		t.Fatalf("tampered: %v", err)
	}
	if got, _ := os.ReadFile(path); !bytes.Equal(got, pt) {
		t.Fatal("failed DecryptFile changed the existing file")
	}
	other := filepath.Join(dir, "other.dump")
	if _, err := DecryptFile(context.Background(), other, bytes.NewReader(bad), openerFor(mk), DecryptOptions{}); err == nil {
		t.Fatal("tampered backup restored")
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("directory holds %d entries after a failed restore, want 1", len(entries))
	}
}

// TestOddReaders feeds Encrypt and Decrypt through readers that return
// short reads, one byte at a time, or data together with io.EOF.
func TestOddReaders(t *testing.T) {
	mk := randomMasterKey("local-test://odd")
	for _, n := range []int{0, 1, MinSegmentSize, 2*MinSegmentSize + 3} {
		pt := detBytes("odd", n)
		for name, wrap := range map[string]func(io.Reader) io.Reader{
			"half":    iotest.HalfReader,
			"onebyte": iotest.OneByteReader,
			"dataerr": iotest.DataErrReader,
		} {
			var ct bytes.Buffer
			if _, err := Encrypt(context.Background(), &ct, wrap(bytes.NewReader(pt)), mk, EncryptOptions{Class: envelope.Low, SegmentSize: MinSegmentSize, Workers: 3}); err != nil {
				t.Fatalf("%s/%d: %v", name, n, err)
			}
			var out bytes.Buffer
			if _, err := Decrypt(context.Background(), &out, wrap(bytes.NewReader(ct.Bytes())), openerFor(mk), DecryptOptions{Workers: 3}); err != nil || !bytes.Equal(out.Bytes(), pt) {
				t.Fatalf("%s/%d: %v", name, n, err)
			}
		}
	}
}
