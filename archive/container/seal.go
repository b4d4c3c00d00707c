package container

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	tinksubtle "github.com/tink-crypto/tink-go/v2/subtle"
)

// The streaming AEAD's layout (Tink's AES-GCM-HKDF, which reads it back:
// OpenPart): a header of its own length, a random salt and a random
// nonce prefix; then segments of SegmentSize ciphertext bytes (the first
// shortened by the header), each its plaintext sealed with AES-GCM under
// the key HKDF-SHA256(archive key, salt, info = the part header), with
// the nonce prefix, the segment's number (big-endian) and a last-segment
// flag as nonce.
const (
	sealPrefixSize = 7
	sealHeaderSize = 1 + KeySize + sealPrefixSize
	sealTagSize    = 16
	sealPlainSize  = SegmentSize - sealTagSize // a segment's plaintext
)

// Plaintext buffer sizes of sealWriter: it starts with what the first
// write needs (at least minSealBuffer), doubles up to maxSmallSeal, then
// takes the full segment (sealPlainSize plus room for the tag, sealed in
// place). A part of a few KiB (an export's final part, a small
// selection's) so takes a few KiB instead of Tink's 1 MiB plaintext
// buffer and its 1 MiB ciphertext buffer (allocated twice: the first
// segment is shorter than the others), and a big part copies at most
// maxSmallSeal bytes on its way to full size: on some VMs every first
// touch of a page costs 15-17 µs (docs/SYNAPSE.md).
const (
	minSealBuffer = 4 << 10
	maxSmallSeal  = 64 << 10
)

// sealWriter writes the streaming AEAD of one part, byte for byte as
// Tink's encrypting writer does (TestSealWriterMatchesTink), with one
// buffer that grows with what is written and seals in place.
type sealWriter struct {
	w      io.Writer
	aead   cipher.AEAD
	prefix [sealPrefixSize]byte
	buf    []byte // the segment's plaintext; cap includes its tag
	seg    uint32 // segments written
	closed bool
}

// newSealWriter starts the streaming AEAD of a part on w with a random
// salt and nonce prefix; aad is the part header.
func newSealWriter(w io.Writer, key, aad []byte) (*sealWriter, error) {
	var random [KeySize + sealPrefixSize]byte
	if _, err := rand.Read(random[:]); err != nil {
		return nil, err
	}
	return newSealWriterWith(w, key, aad, random[:KeySize], random[KeySize:])
}

func newSealWriterWith(w io.Writer, key, aad, salt, prefix []byte) (*sealWriter, error) {
	if len(key) != KeySize {
		return nil, fmt.Errorf("archive key must be %d bytes, got %d", KeySize, len(key))
	}
	derived, err := tinksubtle.ComputeHKDF("SHA256", key, salt, aad, KeySize)
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(derived)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	sw := &sealWriter{w: w, aead: aead}
	copy(sw.prefix[:], prefix)
	var header [sealHeaderSize]byte
	header[0] = sealHeaderSize
	copy(header[1:], salt)
	copy(header[1+KeySize:], prefix)
	if _, err := w.Write(header[:]); err != nil {
		return nil, err
	}
	return sw, nil
}

// limit is the plaintext size of the current segment: the first one
// shares its SegmentSize bytes with the header.
func (sw *sealWriter) limit() int {
	if sw.seg == 0 {
		return sealPlainSize - sealHeaderSize
	}
	return sealPlainSize
}

// Write buffers p, sealing each full segment once more data follows it
// (the last segment, sealed by Close, is never empty unless the part is).
func (sw *sealWriter) Write(p []byte) (int, error) {
	if sw.closed {
		return 0, errors.New("write on closed writer")
	}
	written := 0
	for {
		lim := sw.limit()
		sw.buf = growSealBuffer(sw.buf, min(len(sw.buf)+len(p), lim))
		n := copy(sw.buf[len(sw.buf):min(lim, cap(sw.buf)-sealTagSize)], p)
		sw.buf = sw.buf[:len(sw.buf)+n]
		p, written = p[n:], written+n
		if len(p) == 0 {
			return written, nil
		}
		if err := sw.seal(false); err != nil {
			return written, err
		}
	}
}

// growSealBuffer returns buf with room for need plaintext bytes (and a
// tag after them), grown as minSealBuffer describes.
func growSealBuffer(buf []byte, need int) []byte {
	if need+sealTagSize <= cap(buf) {
		return buf
	}
	size := max(2*cap(buf), need+sealTagSize, minSealBuffer)
	if size > maxSmallSeal {
		size = SegmentSize // sealPlainSize plus the tag
	}
	grown := make([]byte, len(buf), max(size, need+sealTagSize))
	copy(grown, buf)
	return grown
}

// seal encrypts the buffered plaintext as the next segment, in place,
// and writes it.
func (sw *sealWriter) seal(last bool) error {
	if sw.seg == ^uint32(0) {
		return errors.New("too many segments")
	}
	var nonce [sealPrefixSize + 5]byte
	copy(nonce[:], sw.prefix[:])
	binary.BigEndian.PutUint32(nonce[sealPrefixSize:], sw.seg)
	if last {
		nonce[sealPrefixSize+4] = 1
	}
	ct := sw.aead.Seal(sw.buf[:0], nonce[:], sw.buf, nil)
	if _, err := sw.w.Write(ct); err != nil {
		return err
	}
	sw.buf = sw.buf[:0]
	sw.seg++
	return nil
}

// Close seals the last segment.
func (sw *sealWriter) Close() error {
	if sw.closed {
		return nil
	}
	if err := sw.seal(true); err != nil {
		return err
	}
	sw.closed = true
	return nil
}
