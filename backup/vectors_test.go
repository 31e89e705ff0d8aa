package backup

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fieldcrypt/fieldcrypt/envelope"
)

var update = flag.Bool("update", false, "regenerate backup/testdata vectors (go test ./backup -run TestVectors -update)")

const vectorSegmentSize = MinSegmentSize // 4 KiB keeps the vectors small

var vectorTime = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// sentinels maps the manifest's expectation names to errors.
var sentinels = map[string]error{
	"ErrAuthentication":     ErrAuthentication,
	"ErrTruncated":          ErrTruncated,
	"ErrMalformedHeader":    ErrMalformedHeader,
	"ErrUnsupportedVersion": ErrUnsupportedVersion,
}

// manifestEntry is one line of testdata/vectors.json.
type manifestEntry struct {
	File            string `json:"file"`
	Description     string `json:"description"`
	Expect          string `json:"expect"` // "ok" or a sentinel name
	PlaintextSize   int    `json:"plaintext_size,omitempty"`
	PlaintextSHA256 string `json:"plaintext_sha256,omitempty"`
}

// vectorPlaintext is the plaintext of the good vectors: the first n bytes
// of the AES-256-CTR keystream under SHA-256("fieldcrypt backup vector
// plaintext"), zero IV.
func vectorPlaintext(n int) []byte { return detBytes("fieldcrypt backup vector plaintext", n) }

// encryptVector encrypts pt deterministically (seeded randomness, fixed
// clock) under the vector master key.
func encryptVector(t testing.TB, seed string, pt []byte) []byte {
	t.Helper()
	mk := vectorMasterKey(t, newDetReader("wrap nonce "+seed))
	var out bytes.Buffer
	_, err := Encrypt(context.Background(), &out, bytes.NewReader(pt), mk, EncryptOptions{
		Class:       envelope.Critical,
		Name:        "test vector " + seed,
		SegmentSize: vectorSegmentSize,
		Workers:     2,
		rand:        newDetReader("file key " + seed),
		now:         func() time.Time { return vectorTime },
	})
	if err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// split returns a backup's header and its encrypted segments.
func split(t testing.TB, b []byte) (hdr []byte, segs [][]byte) {
	t.Helper()
	h, err := Inspect(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	enc := h.SegmentSize + tagSize
	rest := b[h.Size:]
	for len(rest) > enc {
		segs = append(segs, rest[:enc])
		rest = rest[enc:]
	}
	segs = append(segs, rest)
	return b[:h.Size], segs
}

func join(hdr []byte, segs ...[]byte) []byte {
	out := slices.Clone(hdr)
	for _, s := range segs {
		out = append(out, s...)
	}
	return out
}

func flip(b []byte, i int) []byte {
	b = slices.Clone(b)
	b[i] ^= 0x01
	return b
}

type vector struct {
	manifestEntry
	data []byte
}

// buildVectors generates every vector. Generation is deterministic, so
// TestVectors also checks the checked-in files still match it.
func buildVectors(t testing.TB) []vector {
	seg := vectorSegmentSize
	multiLen := 3*seg + 123
	multi := encryptVector(t, "multi", vectorPlaintext(multiLen))
	other := encryptVector(t, "other", vectorPlaintext(multiLen))
	hdr, segs := split(t, multi)
	_, otherSegs := split(t, other)
	if len(segs) != 4 {
		t.Fatalf("multi vector has %d segments, want 4", len(segs))
	}
	// header offsets: magic 0..8, version 8, class 9, segment size 10..14,
	// created-at 14..22, export id 22..38, salt 38..70.
	setSegSize := slices.Clone(multi)
	copy(setSegSize[10:14], []byte{0, 0, 0x04, 0}) // 1024 < MinSegmentSize
	badVersion := slices.Clone(multi)
	badVersion[8] = 2

	good := func(file, desc string, n int) vector {
		pt := vectorPlaintext(n)
		sum := sha256.Sum256(pt)
		return vector{manifestEntry{File: file, Description: desc, Expect: "ok", PlaintextSize: n, PlaintextSHA256: hex.EncodeToString(sum[:])},
			encryptVector(t, strings.TrimSuffix(file, ".fcb"), pt)}
	}
	fail := func(file, desc, expect string, data []byte) vector {
		return vector{manifestEntry{File: file, Description: desc, Expect: expect}, data}
	}
	return []vector{
		good("good_empty.fcb", "empty input: one final segment holding only a tag", 0),
		good("good_one_segment.fcb", "1000 bytes: one short final segment", 1000),
		good("good_exact_segment.fcb", "exactly one segment (4096 bytes): a full final segment, no empty trailer", seg),
		good("good_exact_multi_segment.fcb", "exactly three segments: the third is full and final", 3*seg),
		{manifestEntry{File: "good_multi_segment.fcb", Description: "3 full segments and a 123-byte final segment", Expect: "ok", PlaintextSize: multiLen,
			PlaintextSHA256: func() string { s := sha256.Sum256(vectorPlaintext(multiLen)); return hex.EncodeToString(s[:]) }()}, multi},
		fail("fail_truncated.fcb", "good_multi_segment without its final segment (cut at a segment boundary)", "ErrTruncated", join(hdr, segs[:3]...)),
		fail("fail_truncated_mid_segment.fcb", "good_multi_segment cut 50 bytes into segment 3", "ErrAuthentication", join(hdr, segs[0], segs[1], segs[2], segs[3][:50])),
		fail("fail_truncated_header.fcb", "good_multi_segment cut inside the header", "ErrTruncated", multi[:len(hdr)-10]),
		fail("fail_no_segments.fcb", "good_multi_segment header only, no segments", "ErrTruncated", slices.Clone(hdr)),
		fail("fail_reordered.fcb", "good_multi_segment with segments 0 and 1 swapped", "ErrAuthentication", join(hdr, segs[1], segs[0], segs[2], segs[3])),
		fail("fail_dropped_segment.fcb", "good_multi_segment without segment 1", "ErrAuthentication", join(hdr, segs[0], segs[2], segs[3])),
		fail("fail_duplicated_segment.fcb", "good_multi_segment with segment 1 repeated", "ErrAuthentication", join(hdr, segs[0], segs[1], segs[1], segs[2], segs[3])),
		fail("fail_spliced.fcb", "good_multi_segment with segment 1 taken from another backup (same master key, other file key)", "ErrAuthentication", join(hdr, segs[0], otherSegs[1], segs[2], segs[3])),
		fail("fail_spliced_header.fcb", "another backup's header on good_multi_segment's segments", "ErrAuthentication", join(other[:len(hdr)], segs...)),
		fail("fail_tampered_header.fcb", "good_multi_segment with one bit of the HKDF salt flipped (header MAC fails)", "ErrAuthentication", flip(multi, 40)),
		fail("fail_tampered_class.fcb", "good_multi_segment with the class byte changed (KMS unwrap fails: encryption context)", "ErrAuthentication", func() []byte { b := slices.Clone(multi); b[9] = byte(envelope.High); return b }()),
		fail("fail_tampered_mac.fcb", "good_multi_segment with one bit of the header MAC flipped", "ErrAuthentication", flip(multi, len(hdr)-1)),
		fail("fail_tampered_payload.fcb", "good_multi_segment with one bit of segment 1 flipped", "ErrAuthentication", flip(multi, len(hdr)+seg+tagSize+7)),
		fail("fail_trailing_data.fcb", "good_multi_segment followed by 20 extra bytes", "ErrAuthentication", append(slices.Clone(multi), make([]byte, 20)...)),
		fail("fail_bad_version.fcb", "good_multi_segment with version byte 2", "ErrUnsupportedVersion", badVersion),
		fail("fail_bad_magic.fcb", "good_multi_segment with a wrong magic", "ErrMalformedHeader", flip(multi, 0)),
		fail("fail_bad_segment_size.fcb", "good_multi_segment declaring a 1024-byte segment size (below the minimum)", "ErrMalformedHeader", setSegSize),
	}
}

// TestVectors runs every vector in testdata: good ones must decrypt (and
// verify) to the plaintext hash in vectors.json, fail ones must fail with
// the named sentinel, through both Decrypt and Verify. Run with -update to
// regenerate them.
func TestVectors(t *testing.T) {
	vectors := buildVectors(t)
	manifestPath := filepath.Join("testdata", "vectors.json")
	if *update {
		var m []manifestEntry
		for _, v := range vectors {
			if err := os.WriteFile(filepath.Join("testdata", v.File), v.data, 0o644); err != nil {
				t.Fatal(err)
			}
			m = append(m, v.manifestEntry)
		}
		js, _ := json.MarshalIndent(m, "", "  ")
		if err := os.WriteFile(manifestPath, append(js, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	js, err := os.ReadFile(manifestPath)
	if err != nil {
		t.Fatalf("%v (regenerate: go test ./backup -run TestVectors -update)", err)
	}
	var manifest []manifestEntry
	if err := json.Unmarshal(js, &manifest); err != nil {
		t.Fatal(err)
	}
	// Every .fcb file is in the manifest, and the other way round.
	files, _ := filepath.Glob(filepath.Join("testdata", "*.fcb"))
	listed := map[string]bool{}
	for _, e := range manifest {
		listed[e.File] = true
	}
	for _, f := range files {
		if !listed[filepath.Base(f)] {
			t.Errorf("%s is not in vectors.json", f)
		}
	}
	generated := map[string][]byte{}
	for _, v := range vectors {
		generated[v.File] = v.data
	}
	opener := openerFor(vectorMasterKey(t, nil))
	for _, e := range manifest {
		t.Run(strings.TrimSuffix(e.File, ".fcb"), func(t *testing.T) {
			data, err := os.ReadFile(filepath.Join("testdata", e.File))
			if err != nil {
				t.Fatal(err)
			}
			if g, ok := generated[e.File]; !ok {
				t.Errorf("vectors.json lists %s, which buildVectors no longer generates", e.File)
			} else if !bytes.Equal(g, data) {
				t.Errorf("%s differs from what this build generates: the format changed (regenerate with -update only if intended)", e.File)
			}
			for _, workers := range []int{1, 3} {
				var out bytes.Buffer
				res, err := Decrypt(context.Background(), &out, bytes.NewReader(data), opener, DecryptOptions{Workers: workers})
				_, verr := Verify(context.Background(), bytes.NewReader(data), opener, DecryptOptions{Workers: workers})
				if e.Expect == "ok" {
					if err != nil || verr != nil {
						t.Fatalf("workers=%d: Decrypt: %v; Verify: %v", workers, err, verr)
					}
					sum := sha256.Sum256(out.Bytes())
					if out.Len() != e.PlaintextSize || hex.EncodeToString(sum[:]) != e.PlaintextSHA256 {
						t.Fatalf("plaintext: %d bytes sha256 %x, want %d bytes %s", out.Len(), sum, e.PlaintextSize, e.PlaintextSHA256)
					}
					if res.PlaintextBytes != int64(e.PlaintextSize) || res.CiphertextBytes != int64(len(data)) {
						t.Fatalf("result %+v", res.Progress)
					}
					continue
				}
				want, ok := sentinels[e.Expect]
				if !ok {
					t.Fatalf("unknown expectation %q", e.Expect)
				}
				if !errors.Is(err, want) || !errors.Is(verr, want) {
					t.Fatalf("workers=%d: Decrypt: %v; Verify: %v; want %s", workers, err, verr, e.Expect)
				}
				t.Logf("%s: %v", e.File, err)
			}
		})
	}
}
