package container

import (
	"bytes"
	"io"
	"math/rand/v2"
	"testing"
)

// sealCases are plaintext sizes around the segment boundaries (the first
// segment is shorter by the header) and the write sizes to feed them in.
func sealCases() []struct {
	size   int
	writes []int // cycled; 0 means all at once
} {
	first := sealPlainSize - sealHeaderSize
	return []struct {
		size   int
		writes []int
	}{
		{0, nil}, {1, nil}, {100, []int{7}},
		{first - 1, nil}, {first, nil}, {first + 1, nil}, {first, []int{1 << 10, 3}},
		{first + sealPlainSize, []int{128 << 10}}, {first + sealPlainSize + 1, []int{128 << 10, 5, 70 << 10}},
		{3*sealPlainSize + 12345, []int{0}}, {3*sealPlainSize + 12345, []int{131072, 1, 65536, 200000}},
	}
}

// writeIn writes data to w in pieces of the given sizes (cycled), then closes it.
func writeIn(t *testing.T, w io.WriteCloser, data []byte, sizes []int) {
	t.Helper()
	for i := 0; len(data) > 0; i++ {
		n := len(data)
		if len(sizes) > 0 && sizes[i%len(sizes)] > 0 {
			n = min(n, sizes[i%len(sizes)])
		}
		if k, err := w.Write(data[:n]); err != nil || k != n {
			t.Fatalf("write %d bytes: wrote %d, %v", n, k, err)
		}
		data = data[n:]
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
}

// The part's ciphertext is what Tink's encrypting writer makes, byte for
// byte, given the same salt and nonce prefix, whatever the sizes of the
// writes; and Tink's reader (OpenPart's) decrypts it.
func TestSealWriterMatchesTink(t *testing.T) {
	key := bytes.Repeat([]byte{7}, KeySize)
	aad := []byte("part header")
	tink, err := newAEAD(key)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for _, c := range sealCases() {
		data := make([]byte, c.size)
		for i := range data {
			data[i] = byte(rng.IntN(7)) // compressible, like a zstd stream is not, but bytes are bytes
		}
		var want bytes.Buffer
		tw, err := tink.NewEncryptingWriter(&want, aad)
		if err != nil {
			t.Fatal(err)
		}
		writeIn(t, tw, data, nil)
		header := want.Bytes()[:sealHeaderSize]
		var got bytes.Buffer
		sw, err := newSealWriterWith(&got, key, aad, header[1:1+KeySize], header[1+KeySize:])
		if err != nil {
			t.Fatal(err)
		}
		writeIn(t, sw, data, c.writes)
		if !bytes.Equal(got.Bytes(), want.Bytes()) {
			t.Fatalf("%d bytes written in %v: %d ciphertext bytes differ from Tink's %d", c.size, c.writes, got.Len(), want.Len())
		}

		// A random salt and prefix of its own: Tink's reader still decrypts it.
		got.Reset()
		sw, err = newSealWriter(&got, key, aad)
		if err != nil {
			t.Fatal(err)
		}
		writeIn(t, sw, data, c.writes)
		r, err := tink.NewDecryptingReader(&got, aad)
		if err != nil {
			t.Fatal(err)
		}
		plain, err := io.ReadAll(r)
		if err != nil || !bytes.Equal(plain, data) {
			t.Fatalf("%d bytes: decrypted %d bytes, %v", c.size, len(plain), err)
		}
	}
}

// The buffer follows what is written: a part of a few bytes holds
// minSealBuffer, growth doubles to maxSmallSeal and then takes the whole
// segment (plaintext and tag) at once, and no buffer is ever bigger than
// a segment.
func TestSealBufferGrowth(t *testing.T) {
	var sizes []int
	sw, err := newSealWriter(io.Discard, bytes.Repeat([]byte{1}, KeySize), nil)
	if err != nil {
		t.Fatal(err)
	}
	chunk := make([]byte, 3000)
	for range 2000 { // about 6 MB: several segments
		if _, err := sw.Write(chunk); err != nil {
			t.Fatal(err)
		}
		if len(sizes) == 0 || sizes[len(sizes)-1] != cap(sw.buf) {
			sizes = append(sizes, cap(sw.buf))
		}
	}
	want := []int{4 << 10, 8 << 10, 16 << 10, 32 << 10, 64 << 10, SegmentSize}
	if !slicesEqual(sizes, want) {
		t.Fatalf("buffer sizes %v, want %v", sizes, want)
	}
	if err := sw.Close(); err != nil {
		t.Fatal(err)
	}

	for _, c := range []struct{ cap, need, want int }{
		{0, 1, minSealBuffer},
		{0, 10 << 10, 10<<10 + sealTagSize},
		{4 << 10, 5 << 10, 8 << 10},
		{32 << 10, 40 << 10, 64 << 10},
		{32 << 10, 64 << 10, SegmentSize}, // 64 KiB and the tag do not fit 64 KiB
		{0, 200 << 10, SegmentSize},
		{64 << 10, sealPlainSize, SegmentSize},
		{SegmentSize, sealPlainSize, SegmentSize},
	} {
		held := min(10, c.cap)
		buf := growSealBuffer(make([]byte, held, c.cap), c.need)
		if cap(buf) != c.want || len(buf) != held {
			t.Errorf("cap %d, need %d: got len %d cap %d, want cap %d", c.cap, c.need, len(buf), cap(buf), c.want)
		}
	}
}

func slicesEqual(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
