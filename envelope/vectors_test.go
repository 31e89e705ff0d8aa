package envelope_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fieldcrypt/fieldcrypt/envelope"
)

var update = flag.Bool("update", false, "regenerate envelope/testdata/vectors")

// vector is one test vector file. A second implementation needs only this
// file and docs/format.md to check it.
type vector struct {
	Proves     string            `json:"proves"`
	Op         string            `json:"op"`                    // "open" or "blind-index"
	KEKs       map[string]string `json:"keks"`                  // version -> hex key
	Search     []uint32          `json:"search_keks,omitempty"` // search key versions, newest first
	Class      string            `json:"class"`
	Tenant     string            `json:"tenant"`
	Table      string            `json:"table"`
	Column     string            `json:"column"`
	Row        string            `json:"row"`
	Ciphertext string            `json:"ciphertext,omitempty"` // hex, or the text form if it starts with fc1:
	Index      *vectorIndex      `json:"blind_index,omitempty"`
	Value      string            `json:"value_hex,omitempty"` // blind-index input
	Plaintext  *string           `json:"plaintext_hex,omitempty"`
	Output     string            `json:"output_hex,omitempty"` // expected blind index
	Error      string            `json:"error,omitempty"`      // sentinel name
}

type vectorIndex struct {
	Name string `json:"name"`
	Size int    `json:"size"`
}

type vectorKeys struct {
	keks    map[uint32]*envelope.KEK
	search  []uint32
	primary uint32
}

func newVectorKeys(t testing.TB, v vector) *vectorKeys {
	class, err := envelope.ParseClass(v.Class)
	require.NoError(t, err)
	vk := &vectorKeys{keks: map[uint32]*envelope.KEK{}, search: v.Search}
	for ver, h := range v.KEKs {
		n, err := strconv.ParseUint(ver, 10, 32)
		require.NoError(t, err)
		raw, err := hex.DecodeString(h)
		require.NoError(t, err)
		k, err := envelope.NewKEK(envelope.KEKRef{Class: class, Tenant: v.Tenant, Version: uint32(n)}, raw)
		require.NoError(t, err)
		vk.keks[uint32(n)] = k
		vk.primary = max(vk.primary, uint32(n))
	}
	if len(vk.search) == 0 {
		vk.search = []uint32{1}
	}
	return vk
}

func (vk *vectorKeys) PrimaryKEK(context.Context, envelope.Scope) (*envelope.KEK, error) {
	return vk.keks[vk.primary], nil
}

func (vk *vectorKeys) KEK(_ context.Context, ref envelope.KEKRef) (*envelope.KEK, error) {
	k, ok := vk.keks[ref.Version]
	if !ok || k.Ref() != ref {
		return nil, fmt.Errorf("%w: %s", envelope.ErrUnknownKey, ref)
	}
	return k, nil
}

func (vk *vectorKeys) SearchKEKs(context.Context, envelope.Scope) ([]*envelope.KEK, error) {
	var out []*envelope.KEK
	for _, v := range vk.search {
		out = append(out, vk.keks[v])
	}
	return out, nil
}

var sentinels = map[string]error{
	"authentication":      envelope.ErrAuthentication,
	"malformed":           envelope.ErrMalformed,
	"unsupported-version": envelope.ErrUnsupportedVersion,
	"unknown-key":         envelope.ErrUnknownKey,
}

func (v vector) binding(t testing.TB) envelope.Binding {
	class, err := envelope.ParseClass(v.Class)
	require.NoError(t, err)
	return envelope.Binding{Class: class, Tenant: v.Tenant, Table: v.Table, Column: v.Column, Row: v.Row}
}

func TestVectors(t *testing.T) {
	if *update {
		generateVectors(t)
	}
	files, err := filepath.Glob("testdata/vectors/*.json")
	require.NoError(t, err)
	require.GreaterOrEqual(t, len(files), 20)
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".json")
		t.Run(name, func(t *testing.T) {
			raw, err := os.ReadFile(f)
			require.NoError(t, err)
			var v vector
			require.NoError(t, json.Unmarshal(raw, &v))
			require.Equal(t, strings.HasPrefix(name, "good_"), v.Error == "", "good_ vectors succeed, fail_ vectors fail")
			e := envelope.New(newVectorKeys(t, v))
			b := v.binding(t)
			switch v.Op {
			case "open":
				ct := []byte(v.Ciphertext)
				if !envelope.IsText(v.Ciphertext) {
					ct, err = hex.DecodeString(v.Ciphertext)
					require.NoError(t, err)
				}
				pt, err := e.Open(ctx, b, ct)
				if v.Error != "" {
					require.ErrorIs(t, err, sentinels[v.Error])
					return
				}
				require.NoError(t, err)
				assert.Equal(t, *v.Plaintext, hex.EncodeToString(pt))
				if h, _ := envelope.Inspect(ct); h.Suite == envelope.SuiteDeterministic {
					again, err := e.SealDeterministic(ctx, b, pt)
					require.NoError(t, err)
					assert.Equal(t, v.Ciphertext, hex.EncodeToString(again), "deterministic vectors reproduce bit for bit")
				}
			case "blind-index":
				val, err := hex.DecodeString(v.Value)
				require.NoError(t, err)
				out, err := e.ComputeBlindIndex(ctx, b, envelope.BlindIndex{Name: v.Index.Name, Size: v.Index.Size}, val)
				require.NoError(t, err)
				assert.Equal(t, v.Output, hex.EncodeToString(out))
			default:
				t.Fatalf("unknown op %q", v.Op)
			}
		})
	}
}

func seqKey(start byte) string {
	b := make([]byte, 32)
	for i := range b {
		b[i] = start + byte(i)
	}
	return hex.EncodeToString(b)
}

func generateVectors(t *testing.T) {
	dir := "testdata/vectors"
	require.NoError(t, os.MkdirAll(dir, 0o755))
	old, _ := filepath.Glob(filepath.Join(dir, "*.json"))
	for _, f := range old {
		require.NoError(t, os.Remove(f))
	}
	k1, k2 := seqKey(0x00), seqKey(0x20)
	base := vector{Op: "open", KEKs: map[string]string{"1": k1}, Class: "critical", Table: "patients", Column: "ssn", Row: "42"}
	hexp := func(s string) *string { h := hex.EncodeToString([]byte(s)); return &h }
	write := func(name string, v vector) {
		out, err := json.MarshalIndent(v, "", "  ")
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(dir, name+".json"), append(out, '\n'), 0o644))
	}
	seal := func(v vector, pt string) []byte {
		ct, err := envelope.New(newVectorKeys(t, v)).Seal(ctx, v.binding(t), []byte(pt))
		require.NoError(t, err)
		return ct
	}
	const ssn = "123-45-6789"
	good := base
	ct := seal(good, ssn)
	good.Proves, good.Ciphertext, good.Plaintext = "a row-bound randomized value opens with its binding", hex.EncodeToString(ct), hexp(ssn)
	write("good_randomized_row_bound", good)

	empty := base
	ect := seal(empty, "")
	empty.Proves, empty.Ciphertext, empty.Plaintext = "the empty value round-trips (62 bytes)", hex.EncodeToString(ect), hexp("")
	write("good_randomized_empty", empty)

	norow := base
	norow.Row = ""
	nct := seal(norow, ssn)
	norow.Proves, norow.Ciphertext, norow.Plaintext = "a value sealed without a row key records it (flag 0) and opens whatever row the reader knows", hex.EncodeToString(nct), hexp(ssn)
	norowRead := norow
	norowRead.Row = "777"
	write("good_randomized_no_row", norowRead)

	ten := base
	ten.Tenant, ten.Class = "acme", "high"
	tct := seal(ten, ssn)
	ten.Proves, ten.Ciphertext, ten.Plaintext = "a tenant-scoped value opens in its tenant", hex.EncodeToString(tct), hexp(ssn)
	write("good_randomized_tenant", ten)

	big := base
	big.KEKs = map[string]string{"300": k2}
	bct := seal(big, ssn)
	big.Proves, big.Ciphertext, big.Plaintext = "KEK version 300 takes a two-byte varint (63 bytes overhead)", hex.EncodeToString(bct), hexp(ssn)
	write("good_kek_version_two_byte_varint", big)

	txt := good
	txt.Proves, txt.Ciphertext = "the text form (fc1: + unpadded base64) opens like the binary form", envelope.EncodeText(ct)
	write("good_text_encoding", txt)

	// Rewrap from v1 to v2.
	two := base
	two.KEKs = map[string]string{"1": k1, "2": k2}
	rw, err := envelope.New(newVectorKeys(t, two)).Rewrap(ctx, two.binding(t), ct)
	require.NoError(t, err)
	rewrapped := two
	rewrapped.Proves, rewrapped.Ciphertext, rewrapped.Plaintext = "a value rewrapped from KEK v1 to v2 keeps its data bytes and opens under v2", hex.EncodeToString(rw), hexp(ssn)
	write("good_rewrapped_v1_to_v2", rewrapped)
	onlyV2 := rewrapped
	onlyV2.KEKs = map[string]string{"2": k2}
	onlyV2.Proves = "after rewrap, the value opens with only v2 present (v1 destroyed)"
	write("good_rewrapped_without_old_kek", onlyV2)

	det := base
	det.Class, det.Table, det.Column, det.Row = "high", "users", "email", ""
	dct, err := envelope.New(newVectorKeys(t, det)).SealDeterministic(ctx, det.binding(t), []byte("a@example.com"))
	require.NoError(t, err)
	det.Proves, det.Ciphertext, det.Plaintext = "a deterministic (AES-SIV) value is reproducible bit for bit by a second implementation", hex.EncodeToString(dct), hexp("a@example.com")
	write("good_deterministic", det)

	bi := vector{Op: "blind-index", KEKs: map[string]string{"1": k1}, Class: "critical", Table: "patients", Column: "ssn",
		Index: &vectorIndex{Size: 16}, Value: hex.EncodeToString([]byte(ssn))}
	out, err := envelope.New(newVectorKeys(t, bi)).ComputeBlindIndex(ctx, bi.binding(t), envelope.BlindIndex{Size: 16}, []byte(ssn))
	require.NoError(t, err)
	bi.Proves, bi.Output = "HMAC-SHA256 blind index, 16 bytes, key derived per class/tenant/table/column/index", hex.EncodeToString(out)
	write("good_blind_index_hmac", bi)

	fail := func(name, proves, errName string, v vector, ct []byte) {
		v.Proves, v.Ciphertext, v.Plaintext, v.Error = proves, hex.EncodeToString(ct), nil, errName
		write(name, v)
	}
	mut := func(i int, x byte) []byte { b := bytes.Clone(ct); b[i] ^= x; return b }
	other := good
	other.Row = "43"
	fail("fail_other_row", "a value copied to another row does not open", "authentication", other, ct)
	other = good
	other.Row = ""
	fail("fail_row_key_missing", "a row-bound value needs its row key", "authentication", other, ct)
	other = good
	other.Column = "name"
	fail("fail_other_column", "a value copied to another column does not open", "authentication", other, ct)
	other = good
	other.Table = "employees"
	fail("fail_other_table", "a value copied to another table does not open", "authentication", other, ct)
	other = good
	other.Class = "high"
	fail("fail_other_class", "a value read as another class does not open", "authentication", other, ct)
	other = ten
	other.Tenant = "globex"
	fail("fail_other_tenant", "a value copied to another tenant does not open (other tenant's KEK)", "authentication", other, tct)
	fail("fail_flipped_tag", "one flipped bit in the GCM tag", "authentication", good, mut(len(ct)-1, 0x01))
	fail("fail_flipped_data", "one flipped bit in the data ciphertext", "authentication", good, mut(6+40, 0x80))
	fail("fail_flipped_wrapped_dek", "one flipped bit in the wrapped data key (KWP integrity check)", "authentication", good, mut(6+3, 0x04))
	fail("fail_row_flag_stripped", "clearing the row-bound flag changes the associated data", "authentication", good, mut(3, 0x01))
	fail("fail_class_byte_changed", "changing the class byte (to high) fails even if the reader agrees", "authentication",
		func() vector { v := good; v.Class = "high"; return v }(), mut(4, byte(envelope.Critical)^byte(envelope.High)))
	fail("fail_truncated_tag", "a value missing its last byte", "authentication", good, ct[:len(ct)-1])
	fail("fail_truncated_header", "a value cut inside the header", "malformed", good, ct[:4])
	fail("fail_truncated_wrapped_dek", "a value cut inside the wrapped key", "malformed", good, ct[:30])
	fail("fail_bad_magic", "a value that does not start with 0xFC", "malformed", good, mut(0, 0xFF))
	fail("fail_future_version", "format version 2 is refused, not guessed at", "unsupported-version", good, mut(1, 0x03))
	fail("fail_unknown_suite", "an unknown suite byte is refused", "unsupported-version", good, mut(2, 0x70))
	fail("fail_unknown_flags", "an unknown flag bit is refused", "malformed", good, mut(3, 0x80))
	fail("fail_unknown_kek_version", "a KEK version the key source lacks", "unknown-key", good, mut(5, 0x06))
	overlong := append(append(bytes.Clone(ct[:5]), 0x81, 0x00), ct[6:]...)
	fail("fail_overlong_varint", "a non-minimal KEK version encoding is refused (no malleability)", "malformed", good, overlong)
	back := bytes.Clone(rw)
	back[5] = 1
	fail("fail_kek_version_pointed_back", "a rewrapped value whose header is pointed back at v1 fails the KWP check", "authentication", two, back)
	otherDet := det
	otherDet.Column = "backup_email"
	fail("fail_deterministic_other_column", "a deterministic value copied to another column does not open", "authentication", otherDet, dct)

	// List for the docs.
	names, _ := filepath.Glob(filepath.Join(dir, "*.json"))
	sort.Strings(names)
	t.Logf("wrote %d vectors", len(names))
}

// TestVectorsSecondImplementation runs the independent Python checker of
// the vectors (envelope/testdata/verify_vectors.py), when python3 with the
// cryptography package is installed.
func TestVectorsSecondImplementation(t *testing.T) {
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 not installed")
	}
	if exec.Command(py, "-c", "import cryptography.hazmat.primitives.keywrap").Run() != nil {
		t.Skip("python3 cryptography package not installed")
	}
	cmd := exec.Command(py, "testdata/verify_vectors.py")
	cmd.Dir = "."
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)
	assert.Contains(t, string(out), "vectors verified independently")
}
