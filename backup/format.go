package backup

import (
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/fieldcrypt/fieldcrypt/envelope"
	"github.com/fieldcrypt/fieldcrypt/keyring/kms"
)

// Format constants. See docs/backup-format.md for the byte layout.
const (
	// Version is the format version this package writes.
	Version = 1

	// DefaultSegmentSize is the plaintext size of every segment but the
	// last when EncryptOptions.SegmentSize is zero.
	DefaultSegmentSize = 1 << 20
	// MinSegmentSize and MaxSegmentSize bound the segment size a header may
	// declare; anything else is rejected on parse.
	MinSegmentSize = 4 << 10
	MaxSegmentSize = 16 << 20

	// MaxPlaintextSize is the largest plaintext one backup file may hold
	// (2^48 bytes = 256 TiB), whatever the segment size. It keeps the
	// amount of data encrypted under one AES-GCM key far below the bounds
	// of NIST SP 800-38D (see docs/backup-format.md, "Usage bounds").
	MaxPlaintextSize = 1 << 48
	// MaxSegments is the largest number of segments in one file, whatever
	// the segment size (the nonce counter never exceeds 2^32-1).
	MaxSegments = 1 << 32

	// MaxNameLen, MaxURILen and MaxWrappedKeyLen bound the variable-length
	// header fields.
	MaxNameLen       = 255
	MaxURILen        = 2048
	MaxWrappedKeyLen = 8192

	magic        = "FCBACKUP"
	fileKeySize  = 32
	exportIDSize = 16
	saltSize     = 32
	macSize      = sha256.Size
	tagSize      = 16 // AES-GCM tag
	nonceSize    = 12 // AES-GCM nonce
	lastFlag     = 0x01

	// fixed part: magic, version, class, segment size, created-at,
	// export id, salt.
	fixedHeaderLen = len(magic) + 1 + 1 + 4 + 8 + exportIDSize + saltSize
	// MaxHeaderSize is the largest header a file may start with.
	MaxHeaderSize = fixedHeaderLen + 2 + MaxNameLen + 2 + MaxURILen + 2 + MaxWrappedKeyLen + macSize

	labelPayloadKey = "fieldcrypt/v1/backup/payload-key"
	labelHeaderMAC  = "fieldcrypt/v1/backup/header-mac-key"

	// Encryption-context keys bound to the wrapped file key.
	ECPurpose    = "fieldcrypt:purpose"
	ECClass      = "fieldcrypt:class"
	ECExportID   = "fieldcrypt:export-id"
	ECCreatedAt  = "fieldcrypt:created-at"
	ECExportName = "fieldcrypt:export-name"
	ECVersion    = "fieldcrypt:backup-version"
	// ECPurposeBackup is the value of ECPurpose for backup file keys.
	ECPurposeBackup = "backup"
)

// ExportID identifies one export (one backup file). It is random, and is
// bound to the wrapped file key through the KMS encryption context.
type ExportID [exportIDSize]byte

// String returns the export id in lower-case hex.
func (id ExportID) String() string { return hex.EncodeToString(id[:]) }

// Header is the parsed header of a backup file. Fields returned by Inspect
// are NOT authenticated (Inspect has no key); Decrypt and Verify
// authenticate them before trusting any.
type Header struct {
	Version      int
	Class        envelope.Class
	SegmentSize  int       // plaintext bytes per segment (all but the last)
	CreatedAt    time.Time // UTC, whole seconds
	ExportID     ExportID
	Name         string // export name; may be empty
	MasterKeyURI string // the class master key that wrapped the file key
	WrappedKey   []byte // the file key wrapped by MasterKeyURI (not secret)
	Size         int    // header length in bytes, MAC included

	salt [saltSize]byte
	mac  [macSize]byte
	raw  []byte // the encoded header without its MAC
}

// EncryptionContext returns the KMS encryption context the file key is
// wrapped under. KMS audit logs (and AWS key-policy conditions) see it.
func (h *Header) EncryptionContext() kms.EncryptionContext {
	ec := kms.EncryptionContext{
		ECPurpose:   ECPurposeBackup,
		ECVersion:   strconv.Itoa(h.Version),
		ECClass:     h.Class.String(),
		ECExportID:  h.ExportID.String(),
		ECCreatedAt: h.CreatedAt.UTC().Format(time.RFC3339),
	}
	if h.Name != "" {
		ec[ECExportName] = h.Name
	}
	return ec
}

// encodeBody returns the header bytes covered by the MAC.
func (h *Header) encodeBody() []byte {
	b := make([]byte, 0, fixedHeaderLen+6+len(h.Name)+len(h.MasterKeyURI)+len(h.WrappedKey))
	b = append(b, magic...)
	b = append(b, byte(h.Version), byte(h.Class))
	b = binary.BigEndian.AppendUint32(b, uint32(h.SegmentSize))
	b = binary.BigEndian.AppendUint64(b, uint64(h.CreatedAt.Unix()))
	b = append(b, h.ExportID[:]...)
	b = append(b, h.salt[:]...)
	for _, f := range []string{h.Name, h.MasterKeyURI, string(h.WrappedKey)} {
		b = binary.BigEndian.AppendUint16(b, uint16(len(f)))
		b = append(b, f...)
	}
	return b
}

// validText reports whether s is valid UTF-8 without control characters,
// so Inspect output cannot smuggle terminal escapes.
func validText(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return false
		}
	}
	return true
}

// checkFields validates the header fields shared by the writer and parser.
func (h *Header) checkFields() error {
	switch {
	case !h.Class.Encrypted():
		return fmt.Errorf("class %s cannot be backed up encrypted", h.Class)
	case h.SegmentSize < MinSegmentSize || h.SegmentSize > MaxSegmentSize:
		return fmt.Errorf("segment size %d outside [%d, %d]", h.SegmentSize, MinSegmentSize, MaxSegmentSize)
	case len(h.Name) > MaxNameLen || !validText(h.Name):
		return fmt.Errorf("export name must be at most %d bytes of printable UTF-8", MaxNameLen)
	case len(h.MasterKeyURI) == 0 || len(h.MasterKeyURI) > MaxURILen || !validText(h.MasterKeyURI):
		return fmt.Errorf("master key URI must be 1..%d bytes of printable UTF-8", MaxURILen)
	case len(h.WrappedKey) == 0 || len(h.WrappedKey) > MaxWrappedKeyLen:
		return fmt.Errorf("wrapped key must be 1..%d bytes, got %d", MaxWrappedKeyLen, len(h.WrappedKey))
	}
	return nil
}

// headerReader reads exactly-sized fields, tracking what it consumed.
type headerReader struct {
	r   io.Reader
	raw []byte
	err error
}

func (hr *headerReader) read(n int, what string) []byte {
	if hr.err != nil {
		return nil
	}
	start := len(hr.raw)
	hr.raw = append(hr.raw, make([]byte, n)...)
	if _, err := io.ReadFull(hr.r, hr.raw[start:]); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			hr.err = fmt.Errorf("%w: %w: input ends inside the header (%s)", ErrMalformedHeader, ErrTruncated, what)
		} else {
			hr.err = fmt.Errorf("backup: reading header: %w", err)
		}
		return nil
	}
	return hr.raw[start:]
}

func (hr *headerReader) readVar(max int, what string) []byte {
	l := hr.read(2, what+" length")
	if l == nil {
		return nil
	}
	n := int(binary.BigEndian.Uint16(l))
	if n > max {
		hr.err = fmt.Errorf("%w: %s length %d exceeds %d", ErrMalformedHeader, what, n, max)
		return nil
	}
	if n == 0 {
		return []byte{}
	}
	return hr.read(n, what)
}

// parseHeader reads and parses a backup header from r, leaving r positioned
// at the first payload segment. It checks structure only: the header is
// not authenticated (that needs the master key; see Decrypt and Verify).
func parseHeader(r io.Reader) (*Header, error) {
	hr := &headerReader{r: r, raw: make([]byte, 0, fixedHeaderLen+64)}
	m := hr.read(len(magic), "magic")
	if hr.err != nil {
		return nil, hr.err
	}
	if string(m) != magic {
		return nil, fmt.Errorf("%w: not a fieldcrypt backup (bad magic)", ErrMalformedHeader)
	}
	v := hr.read(1, "version")
	if hr.err != nil {
		return nil, hr.err
	}
	if v[0] != Version {
		return nil, fmt.Errorf("%w: version %d (this build reads version %d)", ErrUnsupportedVersion, v[0], Version)
	}
	fixed := hr.read(fixedHeaderLen-len(magic)-1, "fixed fields")
	if hr.err != nil {
		return nil, hr.err
	}
	h := &Header{Version: int(v[0]), Class: envelope.Class(fixed[0])}
	h.SegmentSize = int(binary.BigEndian.Uint32(fixed[1:5]))
	created := int64(binary.BigEndian.Uint64(fixed[5:13]))
	copy(h.ExportID[:], fixed[13:13+exportIDSize])
	copy(h.salt[:], fixed[13+exportIDSize:])
	if created < 0 || created > 1<<40 { // ~ year 36812: rejects nonsense
		return nil, fmt.Errorf("%w: created-at %d out of range", ErrMalformedHeader, created)
	}
	h.CreatedAt = time.Unix(created, 0).UTC()
	name := hr.readVar(MaxNameLen, "export name")
	uri := hr.readVar(MaxURILen, "master key URI")
	wrapped := hr.readVar(MaxWrappedKeyLen, "wrapped key")
	if hr.err != nil {
		return nil, hr.err
	}
	h.Name, h.MasterKeyURI = string(name), string(uri)
	h.WrappedKey = append([]byte(nil), wrapped...)
	if err := h.checkFields(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformedHeader, err)
	}
	h.raw = hr.raw
	mac := hr.read(macSize, "header MAC")
	if hr.err != nil {
		return nil, hr.err
	}
	copy(h.mac[:], mac)
	h.Size = len(hr.raw)
	return h, nil
}

// fileKeys are the keys derived from one file key.
type fileKeys struct {
	payload [32]byte
	mac     [32]byte
}

func deriveKeys(fileKey []byte, salt []byte) (*fileKeys, error) {
	var k fileKeys
	p, err := hkdf.Key(sha256.New, fileKey, salt, labelPayloadKey, len(k.payload))
	if err != nil {
		return nil, err
	}
	m, err := hkdf.Key(sha256.New, fileKey, salt, labelHeaderMAC, len(k.mac))
	if err != nil {
		return nil, err
	}
	copy(k.payload[:], p)
	copy(k.mac[:], m)
	clear(p)
	clear(m)
	return &k, nil
}

func headerMAC(macKey []byte, body []byte) []byte {
	m := hmac.New(sha256.New, macKey)
	m.Write(body)
	return m.Sum(nil)
}

// segmentNonce writes the STREAM nonce of segment i: an 11-byte big-endian
// counter followed by the last-segment flag byte.
func segmentNonce(nonce *[nonceSize]byte, i uint64, last bool) {
	nonce[0], nonce[1], nonce[2] = 0, 0, 0
	binary.BigEndian.PutUint64(nonce[3:11], i)
	nonce[11] = 0
	if last {
		nonce[11] = lastFlag
	}
}

// maxSegments returns the segment limit for a segment size: the smaller of
// MaxSegments and what keeps the plaintext within MaxPlaintextSize.
func maxSegments(segmentSize int) uint64 {
	n := uint64(MaxPlaintextSize) / uint64(segmentSize)
	if n > MaxSegments {
		n = MaxSegments
	}
	return n
}
