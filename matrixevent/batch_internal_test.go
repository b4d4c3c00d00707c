package matrixevent

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha512"
	"fmt"
	"math/big"
	"slices"
	"testing"

	"filippo.io/edwards25519"
)

// The batch equation is cofactored: a signature its key's holder made
// with a small-order component added to R verifies in a batch, while
// crypto/ed25519 (and a batch too small to be one) refuses it. This is
// the one difference Batch's doc comment allows.
func TestBatchIsCofactored(t *testing.T) {
	_, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	pub := priv.Public().(ed25519.PublicKey)
	h := sha512.Sum512(priv.Seed())
	a, err := new(edwards25519.Scalar).SetBytesWithClamping(h[:32])
	if err != nil {
		t.Fatal(err)
	}
	// (0, -1), of order 2.
	order2 := append(make([]byte, 0, 32), 0xec)
	for range 30 {
		order2 = append(order2, 0xff)
	}
	order2 = append(order2, 0x7f)
	torsion, err := new(edwards25519.Point).SetBytes(order2)
	if err != nil {
		t.Fatal(err)
	}
	msg := []byte("crafted")
	var seed [64]byte
	seed[0] = 7
	r, _ := new(edwards25519.Scalar).SetUniformBytes(seed[:])
	R := new(edwards25519.Point).ScalarBaseMult(r)
	R.Add(R, torsion)
	rb := R.Bytes()
	kh := sha512.New()
	kh.Write(rb)
	kh.Write(pub)
	kh.Write(msg)
	k, _ := new(edwards25519.Scalar).SetUniformBytes(kh.Sum(nil))
	s := new(edwards25519.Scalar).MultiplyAdd(k, a, r)
	crafted := append(rb, s.Bytes()...)
	if ed25519.Verify(pub, msg, crafted) {
		t.Fatal("crypto/ed25519 accepts the crafted signature: the test crafted nothing")
	}

	// 8 signatures and the crafted one: edwards25519's multi-scalar
	// multiplication; 600 and it: the bucket method. Were either wrong,
	// the equation would fail, each signature would be verified alone,
	// and the crafted one refused.
	var bv batchVerifier
	for _, good := range []int{8, 600} {
		for i := range good {
			m := []byte(fmt.Sprint("good ", i))
			bv.add(pub, m, ed25519.Sign(priv, m))
		}
		bv.add(pub, msg, crafted)
		for i, ok := range bv.verify() {
			if !ok {
				t.Errorf("batch of %d: entry %d does not verify", good+1, i)
			}
		}
	}
	bv.add(pub, msg, crafted)
	if bv.verify()[0] {
		t.Error("a batch of one (verified alone) accepts the crafted signature")
	}
}

// Keys with a small-order component, and signatures with a non-canonical
// R, are verified alone.
func TestBatchLeavesOddInputAlone(t *testing.T) {
	pub, _, _ := ed25519.GenerateKey(nil)
	var bv batchVerifier
	if bv.key(pub).point == nil {
		t.Error("an ordinary key is not batched")
	}
	p, _ := new(edwards25519.Point).SetBytes(pub)
	zero := make([]byte, 32) // (sqrt(-1), 0), of order 4
	t4, _ := new(edwards25519.Point).SetBytes(zero)
	if bv.key(p.Add(p, t4).Bytes()).point != nil {
		t.Error("a key with a small-order component is batched")
	}
	sig := func(r []byte) []byte { return append(append([]byte{}, r...), make([]byte, 32)...) }
	ff := func(low, high byte) []byte {
		r := []byte{low}
		for range 30 {
			r = append(r, 0xff)
		}
		return append(r, high)
	}
	one := append([]byte{1}, make([]byte, 31)...)
	oneSigned := append([]byte{1}, make([]byte, 31)...)
	oneSigned[31] = 0x80
	for _, c := range []struct {
		name string
		r    []byte
		want bool
	}{
		{"y = p-1", ff(0xec, 0x7f), true},
		{"y = p", ff(0xed, 0x7f), false},
		{"y = p with the sign bit", ff(0xed, 0xff), false},
		{"y = 2^255-1", ff(0xff, 0x7f), false},
		{"y = 1", one, true},
		{"y = 1, x = -0", oneSigned, false},
		{"y = p-1, x = -0", ff(0xec, 0xff), false},
	} {
		if got := batchable(sig(c.r)); got != c.want {
			t.Errorf("%s: batchable %v", c.name, got)
		}
	}
}

// signedMessages signs n messages of an event's size with one new key.
func signedMessages(n int) (pub ed25519.PublicKey, msgs, sigs [][]byte) {
	_, priv, _ := ed25519.GenerateKey(nil)
	for i := range n {
		m := fmt.Appendf(nil, "event %d with some bytes to sign, as long as a small event's redacted JSON is, give or take", i)
		msgs, sigs = append(msgs, m), append(sigs, ed25519.Sign(priv, m))
	}
	return priv.Public().(ed25519.PublicKey), msgs, sigs
}

// Signatures of one key, 256 at a time: batched,
// and one by one with crypto/ed25519.
func BenchmarkVerify(b *testing.B) {
	pub, msgs, sigs := signedMessages(256)
	b.Run("batch", func(b *testing.B) {
		var bv batchVerifier
		for b.Loop() {
			for i := range msgs {
				bv.add(pub, msgs[i], sigs[i])
			}
			bv.verify()
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(msgs)), "ns/sig")
	})
	b.Run("single", func(b *testing.B) {
		for b.Loop() {
			for i := range msgs {
				ed25519.Verify(pub, msgs[i], sigs[i])
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(msgs)), "ns/sig")
	})
}

// The bucket method computes what edwards25519's own multi-scalar
// multiplication computes, for batch sizes on both sides of every digit
// size it picks, with the extreme 128-bit scalars among random ones, and
// points both decoded (Z = 1) and computed (any Z).
func TestBucketMultiScalarMultAgrees(t *testing.T) {
	var seed [64]byte
	var sc msmScratch // reused, as a verifier does, from large to small and back
	for _, n := range []int{1, 2, 7, 100, 513, 1500, 3000, 600} {
		random := make([]byte, 16*n)
		rand.Read(random)
		// z = 0, z = 2^128 - 1, z = 2^127, then random.
		copy(random[:16], make([]byte, 16))
		if n > 1 {
			copy(random[16:32], bytes.Repeat([]byte{0xff}, 16))
		}
		if n > 2 {
			copy(random[32:48], append(make([]byte, 15), 0x80))
		}
		points := make([]edwards25519.Point, n)
		scalars := make([]*edwards25519.Scalar, n)
		ptrs := make([]*edwards25519.Point, n)
		for j := range n {
			seed[0], seed[1] = byte(j), byte(j>>8)
			s, _ := new(edwards25519.Scalar).SetUniformBytes(seed[:])
			points[j].ScalarBaseMult(s)
			if j%2 == 1 { // decoded, as signatures' R are: Z = 1
				if _, err := points[j].SetBytes(points[j].Bytes()); err != nil {
					t.Fatal(err)
				}
			}
			ptrs[j] = &points[j]
			var z [32]byte
			copy(z[:16], random[16*j:])
			scalars[j], _ = new(edwards25519.Scalar).SetCanonicalBytes(z[:])
		}
		want := new(edwards25519.Point).VarTimeMultiScalarMult(scalars, ptrs)
		if got := bucketMultiScalarMult(random, points, &sc); got.Equal(want) != 1 {
			t.Errorf("%d points (digits of %d bits): the bucket method's sum differs", n, bucketBits(n))
		}
	}
}

// Signed digits add up to the integer they were cut from, each within
// [-2^(c-1), 2^(c-1)], for every digit size.
func TestSignedDigits(t *testing.T) {
	values := [][]byte{make([]byte, 16), bytes.Repeat([]byte{0xff}, 16), append(make([]byte, 15), 0x80)}
	for range 50 {
		z := make([]byte, 16)
		rand.Read(z)
		values = append(values, z)
	}
	for c := 4; c <= 16; c++ {
		for _, z := range values {
			out := make([]int32, (128+c-1)/c+1)
			signedDigits(z, c, out)
			sum := new(big.Int)
			for i := len(out) - 1; i >= 0; i-- {
				if out[i] > 1<<(c-1) || out[i] < -(1<<(c-1)) {
					t.Fatalf("c=%d: digit %d is %d", c, i, out[i])
				}
				sum.Lsh(sum, uint(c)).Add(sum, big.NewInt(int64(out[i])))
			}
			be := slices.Clone(z)
			slices.Reverse(be)
			want := new(big.Int).SetBytes(be)
			if sum.Cmp(want) != 0 {
				t.Fatalf("c=%d: digits of %x add up to %x", c, want, sum)
			}
		}
	}
}

// Signatures of one key in batches of a validation job's sizes: from 512
// on, the R_j's part of the equation is computed by buckets.
func BenchmarkVerifyLarge(b *testing.B) {
	pub, msgs, sigs := signedMessages(4096)
	for _, n := range []int{256, 1024, 2048, 4096} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			var bv batchVerifier
			for b.Loop() {
				for i := range n {
					bv.add(pub, msgs[i], sigs[i])
				}
				bv.verify()
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/sig")
		})
	}
}
