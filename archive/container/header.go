// Package container is the byte layer of an archive: parts, each a plaintext
// header followed by a tar stream compressed with zstd and, in encrypted
// archives, sealed with AES-256-GCM-HKDF segmented streaming AEAD whose
// associated data is the header itself (archive ID, part index, is-last
// flag). It knows nothing about records; package archive builds on it.
package container

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"fmt"
)

// HeaderSize is the fixed size of a part header.
const HeaderSize = 32

var partMagic = []byte("FRYPART1")

// ArchiveID identifies one archive; every part carries it.
type ArchiveID [16]byte

// NewArchiveID returns a random archive ID.
func NewArchiveID() ArchiveID {
	var id ArchiveID
	if _, err := rand.Read(id[:]); err != nil {
		panic(fmt.Sprintf("container: no randomness: %v", err))
	}
	return id
}

func (id ArchiveID) String() string { return hex.EncodeToString(id[:]) }

// ParseArchiveID parses the hex form of an archive ID.
func ParseArchiveID(s string) (ArchiveID, error) {
	var id ArchiveID
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != len(id) {
		return id, fmt.Errorf("archive ID %q is not 32 hex digits", s)
	}
	copy(id[:], b)
	return id, nil
}

// Header is the plaintext start of every part. In encrypted parts it is the
// AEAD's associated data, so none of it can be changed unnoticed.
type Header struct {
	ArchiveID ArchiveID
	Index     uint32
	Last      bool // the final part: it holds the manifest
	Encrypted bool
}

const (
	flagLast      = 1 << 0
	flagEncrypted = 1 << 1
	knownFlags    = flagLast | flagEncrypted
)

// Marshal returns the 32-byte header: magic(8) archive_id(16) index(4, big
// endian) flags(1) reserved(3, zero).
func (h Header) Marshal() []byte {
	b := make([]byte, HeaderSize)
	copy(b, partMagic)
	copy(b[8:24], h.ArchiveID[:])
	binary.BigEndian.PutUint32(b[24:28], h.Index)
	if h.Last {
		b[28] |= flagLast
	}
	if h.Encrypted {
		b[28] |= flagEncrypted
	}
	return b
}

// ParseHeader checks and decodes a part header.
func ParseHeader(b []byte) (Header, error) {
	var h Header
	if len(b) < HeaderSize {
		return h, fmt.Errorf("part header is %d bytes, expected %d (truncated part)", len(b), HeaderSize)
	}
	if !bytes.Equal(b[:8], partMagic) {
		return h, fmt.Errorf("not a Ferry archive part (magic %q)", b[:8])
	}
	if b[28]&^knownFlags != 0 || b[29] != 0 || b[30] != 0 || b[31] != 0 {
		return h, fmt.Errorf("part header has unknown flags %#x %x: written by a newer Ferry?", b[28], b[29:32])
	}
	copy(h.ArchiveID[:], b[8:24])
	h.Index = binary.BigEndian.Uint32(b[24:28])
	h.Last = b[28]&flagLast != 0
	h.Encrypted = b[28]&flagEncrypted != 0
	return h, nil
}

// PartName is the object name of part i in the stored form.
func PartName(i int) string { return fmt.Sprintf("part-%08d", i) }
