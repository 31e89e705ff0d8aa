package backup

import (
	"bufio"
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"runtime"
	"slices"
	"time"

	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/fieldcrypt/fieldcrypt/audit"
	"github.com/fieldcrypt/fieldcrypt/envelope"
	"github.com/fieldcrypt/fieldcrypt/internal/telemetry"
	"github.com/fieldcrypt/fieldcrypt/keyring/kms"
)

// Progress reports how far an operation got. Callbacks receive cumulative
// totals after each segment, in segment order; calls never overlap (they
// are serialized, though they may come from different goroutines), so a
// callback needs no locking but must not block for long.
type Progress struct {
	Segments        int64 // payload segments done
	PlaintextBytes  int64 // plaintext bytes read (Encrypt) or authenticated (Decrypt, Verify)
	CiphertextBytes int64 // backup-file bytes written (Encrypt) or read (Decrypt, Verify), header included
}

// Result describes a finished operation: the header (authenticated, except
// from Inspect) and the final totals.
type Result struct {
	Header *Header
	Progress
}

// EncryptOptions configures Encrypt. The zero value of every field but
// Class is a sensible default.
type EncryptOptions struct {
	// Class is the data classification of the export; the master key passed
	// to Encrypt must be that class's master key. Required; Public is
	// refused (it has no master key).
	Class envelope.Class
	// Name is an optional human label for the export (for example
	// "orders-db 2026-11-23"), at most MaxNameLen bytes of printable UTF-8.
	// It is stored in the header and sent to the KMS in the encryption
	// context, so it shows in KMS audit logs. It is not secret.
	Name string
	// SegmentSize is the plaintext size of each segment: 0 means
	// DefaultSegmentSize (1 MiB); otherwise MinSegmentSize..MaxSegmentSize.
	SegmentSize int
	// Workers is the number of segments encrypted in parallel: 0 means
	// runtime.GOMAXPROCS(0).
	Workers int
	// Progress, if set, is called after each segment is written.
	Progress func(Progress)
	// Audit, if set, records a backup.encrypted event (class, master key,
	// export id, bytes; the error on failure).
	Audit audit.Sink
	// MeterProvider receives the operation's metrics
	// (fieldcrypt.backup.bytes, fieldcrypt.backup.runs, and the file key's
	// KMS call in fieldcrypt.kms.calls: docs/operations.md, "Metrics and
	// traces"); nil means the global provider (otel.GetMeterProvider, which
	// does nothing unless the application installs one).
	MeterProvider metric.MeterProvider
	// TracerProvider traces the operation and its KMS call; nil means the
	// global provider.
	TracerProvider trace.TracerProvider

	rand io.Reader        // tests: deterministic vectors
	now  func() time.Time // tests: deterministic vectors
}

// DecryptOptions configures Decrypt and Verify.
type DecryptOptions struct {
	// Class, if set, is the class the backup must declare; another class
	// fails with ErrUntrustedKey before any KMS call.
	Class envelope.Class
	// KeyURIs, if non-empty, lists the master key URIs the caller trusts;
	// a header naming another URI fails with ErrUntrustedKey before the
	// opener is called. A backup is authentic only relative to the master
	// key its header names, so a restore should pin the expected key here
	// (or in its opener) rather than open whatever URI a file names.
	KeyURIs []string
	// Workers is the number of segments authenticated in parallel: 0 means
	// runtime.GOMAXPROCS(0).
	Workers int
	// Progress, if set, is called after each segment is authenticated (and,
	// for Decrypt, written).
	Progress func(Progress)
	// Audit, if set, records a backup.decrypted or backup.verified event
	// (class, master key, export id, bytes; the error on failure).
	Audit audit.Sink
	// MeterProvider receives the operation's metrics
	// (fieldcrypt.backup.bytes, fieldcrypt.backup.runs, and the file key's
	// KMS call in fieldcrypt.kms.calls: docs/operations.md, "Metrics and
	// traces"); nil means the global provider (otel.GetMeterProvider, which
	// does nothing unless the application installs one).
	MeterProvider metric.MeterProvider
	// TracerProvider traces the operation and its KMS call; nil means the
	// global provider.
	TracerProvider trace.TracerProvider
}

func defaultWorkers(n int) int {
	if n <= 0 {
		return runtime.GOMAXPROCS(0)
	}
	return n
}

func newAEAD(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// Encrypt reads src to EOF and writes a backup of it to dst: a header
// naming mk and carrying a fresh random file key wrapped by mk, then the
// payload as STREAM segments of AES-256-GCM. Segments are encrypted in
// parallel; memory use is bounded whatever the size of src.
//
// On error, what was written to dst is not a valid backup.
func Encrypt(ctx context.Context, dst io.Writer, src io.Reader, mk kms.MasterKey, opts EncryptOptions) (*Result, error) {
	ctx, tel := start(ctx, opts.MeterProvider, opts.TracerProvider, dirWrite)
	res, err := encryptStream(ctx, dst, src, mk, opts, tel)
	tel.end(ctx, res, err)
	uri := ""
	if mk != nil {
		uri = mk.URI()
	}
	record(ctx, opts.Audit, audit.BackupEncrypted, opts.Class, uri, res, err)
	return res, err
}

func encryptStream(ctx context.Context, dst io.Writer, src io.Reader, mk kms.MasterKey, opts EncryptOptions, tel *runTelemetry) (*Result, error) {
	if mk == nil || dst == nil || src == nil {
		return nil, fmt.Errorf("%w: nil master key, destination or source", ErrInvalidInput)
	}
	if opts.SegmentSize == 0 {
		opts.SegmentSize = DefaultSegmentSize
	}
	rnd := opts.rand
	if rnd == nil {
		rnd = rand.Reader
	}
	now := time.Now
	if opts.now != nil {
		now = opts.now
	}
	h := &Header{
		Version:      Version,
		Class:        opts.Class,
		SegmentSize:  opts.SegmentSize,
		CreatedAt:    now().UTC().Truncate(time.Second),
		Name:         opts.Name,
		MasterKeyURI: mk.URI(),
		WrappedKey:   []byte{0}, // placeholder for the field check
	}
	if err := h.checkFields(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidInput, err)
	}
	fileKey := make([]byte, fileKeySize)
	defer clear(fileKey)
	for _, b := range [][]byte{fileKey, h.ExportID[:], h.salt[:]} {
		if _, err := io.ReadFull(rnd, b); err != nil {
			return nil, fmt.Errorf("backup: random: %w", err)
		}
	}
	kctx, endKMS := tel.kms.Start(ctx, mk.URI(), telemetry.OpWrap)
	wrapped, err := mk.Wrap(kctx, fileKey, h.EncryptionContext())
	endKMS(err)
	if err != nil {
		return nil, fmt.Errorf("backup: wrap file key with %s: %w", h.MasterKeyURI, err)
	}
	h.WrappedKey = wrapped
	if err := h.checkFields(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidInput, err)
	}
	keys, err := deriveKeys(fileKey, h.salt[:])
	if err != nil {
		return nil, err
	}
	defer clear(keys.mac[:])
	defer clear(keys.payload[:])
	h.raw = h.encodeBody()
	copy(h.mac[:], headerMAC(keys.mac[:], h.raw))
	hdr := append(slices.Clip(h.raw), h.mac[:]...)
	h.Size = len(hdr)
	if _, err := dst.Write(hdr); err != nil {
		return nil, fmt.Errorf("backup: writing header: %w", err)
	}
	aead, err := newAEAD(keys.payload[:])
	if err != nil {
		return nil, err
	}

	res := &Result{Header: h}
	res.CiphertextBytes = int64(h.Size)
	segSize := h.SegmentSize
	limit := maxSegments(segSize)
	br := bufio.NewReaderSize(src, 4096)
	p := &pipeline{
		workers: sizing(defaultWorkers(opts.Workers), segSize+tagSize),
		bufSize: segSize + tagSize,
		fill: func(s *slot) (bool, error) {
			n, err := io.ReadFull(br, s.buf[:segSize])
			s.n = n
			switch {
			case err == io.EOF || err == io.ErrUnexpectedEOF:
				return true, nil
			case err != nil:
				return false, fmt.Errorf("backup: reading input: %w", err)
			}
			if _, err := br.Peek(1); err == io.EOF {
				return true, nil // input is an exact multiple: full final segment
			} else if err != nil {
				return false, fmt.Errorf("backup: reading input: %w", err)
			}
			if s.idx+1 >= limit {
				return false, fmt.Errorf("%w: more than %d segments of %d bytes (max %d bytes per backup)", ErrTooLarge, limit, segSize, uint64(MaxPlaintextSize))
			}
			return false, nil
		},
		process: func(s *slot) {
			segmentNonce(&s.nonce, s.idx, s.last)
			s.out = aead.Seal(s.buf[:0], s.nonce[:], s.buf[:s.n], nil)
		},
		emit: func(s *slot) error {
			if _, err := dst.Write(s.out); err != nil {
				return fmt.Errorf("backup: writing segment %d: %w", s.idx, err)
			}
			res.Segments++
			res.PlaintextBytes += int64(s.n)
			res.CiphertextBytes += int64(len(s.out))
			tel.segment(ctx, s.n)
			if opts.Progress != nil {
				opts.Progress(res.Progress)
			}
			return nil
		},
	}
	if err := p.run(ctx); err != nil {
		return nil, err
	}
	return res, nil
}

// Inspect parses the header at the start of src without any key. Its
// fields are NOT authenticated: use them to display a backup or to pick
// the master key, and use Verify or Decrypt to trust them.
func Inspect(src io.Reader) (*Header, error) {
	return parseHeader(src)
}

// Decrypt authenticates and decrypts a backup from src to dst. It opens
// the master key the header names through opener (nil means kms.Open, the
// registry of imported backends), unwraps the file key, checks the header
// MAC, then authenticates each segment before writing its plaintext.
//
// A failing segment stops the stream with an error naming the segment
// (errors.Is ErrAuthentication, ErrTruncated, ...). Plaintext of the
// segments before it has already been written to dst: unless Decrypt
// returns nil, treat everything written to dst as invalid (decrypt to a
// temporary file and rename it on success, or run Verify first).
func Decrypt(ctx context.Context, dst io.Writer, src io.Reader, opener kms.Opener, opts DecryptOptions) (*Result, error) {
	var res *Result
	err := fmt.Errorf("%w: nil destination", ErrInvalidInput)
	ctx, tel := start(ctx, opts.MeterProvider, opts.TracerProvider, dirRestore)
	if dst != nil {
		res, err = decrypt(ctx, dst, src, opener, opts, tel)
	}
	tel.end(ctx, res, err)
	record(ctx, opts.Audit, audit.BackupDecrypted, opts.Class, "", res, err)
	return res, err
}

// Verify authenticates a backup end to end (header, file key, every
// segment, and the final-segment marker) without writing any plaintext.
// It needs the same KMS access as Decrypt.
func Verify(ctx context.Context, src io.Reader, opener kms.Opener, opts DecryptOptions) (*Result, error) {
	ctx, tel := start(ctx, opts.MeterProvider, opts.TracerProvider, dirVerify)
	res, err := decrypt(ctx, nil, src, opener, opts, tel)
	tel.end(ctx, res, err)
	record(ctx, opts.Audit, audit.BackupVerified, opts.Class, "", res, err)
	return res, err
}

// record sends the event of an operation to sink (if any): the header's
// class, master key and export id when it got that far, the byte counts,
// the error.
func record(ctx context.Context, sink audit.Sink, typ audit.Type, class envelope.Class, uri string, res *Result, err error) {
	if sink == nil {
		return
	}
	e := audit.Event{Type: typ, MasterKeyURI: uri, Outcome: audit.OK}
	if class.Valid() {
		e.Class = class.String()
	}
	if res != nil && res.Header != nil {
		e.Class, e.MasterKeyURI, e.Job = res.Header.Class.String(), res.Header.MasterKeyURI, res.Header.ExportID.String()
		e.Counts = map[string]int64{"plaintext_bytes": res.PlaintextBytes, "ciphertext_bytes": res.CiphertextBytes}
	}
	if err != nil {
		e.Outcome, e.Error = audit.Error, err.Error()
	}
	sink.Record(context.WithoutCancel(ctx), e)
}

// openHeader parses and authenticates the header, returning the payload
// AEAD.
func openHeader(ctx context.Context, br io.Reader, opener kms.Opener, opts DecryptOptions, tel *runTelemetry) (*Header, cipher.AEAD, error) {
	h, err := parseHeader(br)
	if err != nil {
		return nil, nil, err
	}
	if opts.Class != 0 && h.Class != opts.Class {
		return nil, nil, fmt.Errorf("%w: backup is class %s, expected %s", ErrUntrustedKey, h.Class, opts.Class)
	}
	if len(opts.KeyURIs) > 0 && !slices.Contains(opts.KeyURIs, h.MasterKeyURI) {
		return nil, nil, fmt.Errorf("%w: backup names master key %q, which is not in the allowed list", ErrUntrustedKey, h.MasterKeyURI)
	}
	var mk kms.MasterKey
	if opener != nil {
		mk, err = opener.OpenMasterKey(ctx, h.MasterKeyURI)
	} else {
		mk, err = kms.Open(ctx, h.MasterKeyURI)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("backup: open master key %s: %w", h.MasterKeyURI, err)
	}
	if mk == nil {
		return nil, nil, fmt.Errorf("%w: opener returned no master key for %s", ErrInvalidInput, h.MasterKeyURI)
	}
	kctx, endKMS := tel.kms.Start(ctx, h.MasterKeyURI, telemetry.OpUnwrap)
	fileKey, err := mk.Unwrap(kctx, h.WrappedKey, h.EncryptionContext())
	endKMS(err)
	if err != nil {
		if errors.Is(err, kms.ErrAuthentication) {
			return nil, nil, fmt.Errorf("%w: file key does not unwrap under %s with this header's context (header altered, or wrong master key): %w", ErrAuthentication, h.MasterKeyURI, err)
		}
		return nil, nil, fmt.Errorf("backup: unwrap file key with %s: %w", h.MasterKeyURI, err)
	}
	defer clear(fileKey)
	if len(fileKey) != fileKeySize {
		return nil, nil, fmt.Errorf("%w: unwrapped file key is %d bytes, want %d", ErrMalformedHeader, len(fileKey), fileKeySize)
	}
	keys, err := deriveKeys(fileKey, h.salt[:])
	if err != nil {
		return nil, nil, err
	}
	defer clear(keys.mac[:])
	defer clear(keys.payload[:])
	if !hmac.Equal(headerMAC(keys.mac[:], h.raw), h.mac[:]) {
		return nil, nil, fmt.Errorf("%w: header MAC mismatch (header altered)", ErrAuthentication)
	}
	aead, err := newAEAD(keys.payload[:])
	if err != nil {
		return nil, nil, err
	}
	return h, aead, nil
}

func decrypt(ctx context.Context, dst io.Writer, src io.Reader, opener kms.Opener, opts DecryptOptions, tel *runTelemetry) (*Result, error) {
	if src == nil {
		return nil, fmt.Errorf("%w: nil source", ErrInvalidInput)
	}
	br := bufio.NewReaderSize(src, 4096)
	h, aead, err := openHeader(ctx, br, opener, opts, tel)
	if err != nil {
		return nil, err
	}
	res := &Result{Header: h}
	res.CiphertextBytes = int64(h.Size)
	encSeg := h.SegmentSize + tagSize
	limit := maxSegments(h.SegmentSize)
	offset := func(idx uint64) int64 { return int64(h.Size) + int64(idx)*int64(encSeg) }
	p := &pipeline{
		workers: sizing(defaultWorkers(opts.Workers), encSeg),
		bufSize: encSeg,
		fill: func(s *slot) (bool, error) {
			if s.idx >= limit {
				return false, fmt.Errorf("%w: more than %d segments", ErrTooLarge, limit)
			}
			n, err := io.ReadFull(br, s.buf[:encSeg])
			s.n = n
			switch {
			case err == io.EOF:
				if s.idx == 0 {
					return false, fmt.Errorf("%w: input ends after the header, before the first segment", ErrTruncated)
				}
				return false, fmt.Errorf("%w: input ends before segment %d", ErrTruncated, s.idx)
			case err == io.ErrUnexpectedEOF:
				if n < tagSize {
					return false, fmt.Errorf("%w: segment %d at offset %d is %d bytes, shorter than its %d-byte tag", ErrTruncated, s.idx, offset(s.idx), n, tagSize)
				}
				return true, nil
			case err != nil:
				return false, fmt.Errorf("backup: reading segment %d: %w", s.idx, err)
			}
			if _, err := br.Peek(1); err == io.EOF {
				return true, nil
			} else if err != nil {
				return false, fmt.Errorf("backup: reading after segment %d: %w", s.idx, err)
			}
			return false, nil
		},
		process: func(s *slot) {
			nonce := &s.nonce
			ct := s.buf[:s.n]
			var keep []byte
			if s.last {
				// Keep the ciphertext to tell truncation from tampering:
				// Open clears its output on failure.
				keep = bytes.Clone(ct)
			}
			segmentNonce(nonce, s.idx, s.last)
			out, err := aead.Open(ct[:0], nonce[:], ct, nil)
			if err == nil {
				s.out = out
				return
			}
			if s.last {
				segmentNonce(nonce, s.idx, false)
				if _, err := aead.Open(keep[:0], nonce[:], keep, nil); err == nil {
					s.err = fmt.Errorf("%w: input ends after segment %d (offset %d), which is authentic but not the final segment", ErrTruncated, s.idx, offset(s.idx))
					return
				}
				s.err = fmt.Errorf("%w: final segment %d at offset %d (tampered, truncated mid-segment, or from another backup)", ErrAuthentication, s.idx, offset(s.idx))
				return
			}
			s.err = fmt.Errorf("%w: segment %d at offset %d (tampered, reordered, dropped, or from another backup)", ErrAuthentication, s.idx, offset(s.idx))
		},
		emit: func(s *slot) error {
			if dst != nil {
				if _, err := dst.Write(s.out); err != nil {
					return fmt.Errorf("backup: writing plaintext of segment %d: %w", s.idx, err)
				}
			}
			res.Segments++
			res.PlaintextBytes += int64(len(s.out))
			res.CiphertextBytes += int64(s.n)
			tel.segment(ctx, len(s.out))
			if opts.Progress != nil {
				opts.Progress(res.Progress)
			}
			return nil
		},
	}
	if err := p.run(ctx); err != nil {
		return nil, err
	}
	return res, nil
}
