package matrixevent

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha512"
	"slices"

	"filippo.io/edwards25519"
)

// Batch checks many events as Check does, but verifies their Ed25519
// signatures together: one equation for the whole batch instead of one
// per signature, several times cheaper when most events are signed by
// one key, as an archive's are (its server's).
//
// What it accepts. Signatures a batch holds are checked with the
// standard random linear combination, z_i random 128-bit scalars:
//
//	[8]([-Σ z_i·s_i]B + Σ [z_i]R_i + Σ [z_i·k_i]A_i) = 0
//
// which is the cofactored verification equation, where crypto/ed25519
// (and Check) verify the cofactorless one, [s]B = R + [k]A, comparing
// R's encoding. The two differ only for a signature whose R or A has a
// small-order component, and only the holder of the private key can make
// one that passes either (it is a signature by that key). To keep even
// those out of the batch's reach, it batches only signatures with a
// canonical R and s (non-canonical ones are verified alone) by keys with
// no small-order component (checked once per key); what remains is a
// signature its key's holder made with a small-order component added to
// R, which a batch accepts and crypto/ed25519 refuses: not damage, and
// not a forgery. Every signature crypto/ed25519 accepts, a batch accepts.
//
// When the batch equation fails, each of its signatures is verified
// alone with crypto/ed25519, so a bad signature is found, and named, as
// Check would name it. A Batch is not safe for concurrent use.
type Batch struct {
	v      batchVerifier
	events []batchedEvent
}

// batchedEvent is an added event whose signature outcome waits for Verify.
type batchedEvent struct {
	out          *Checked
	senderServer string
	sigs         []batchedSig
}

// batchedSig is one signature by a known key, in the event's order:
// entry is its index in the verifier, -1 when it could not be decoded.
type batchedSig struct {
	server, keyID string
	entry         int
}

// Add checks data as Check(v, data, keys, contentHash) does and writes
// the outcome to *out; its Signatures and SigErr are final only once
// Verify has returned. data must not change until then.
func (b *Batch) Add(v RoomVersion, data []byte, keys KeyLookup, contentHash bool, out *Checked) {
	c, pending, ok := checkFast(v, data, keys, contentHash, true)
	if !ok {
		*out = Check(v, data, keys, contentHash)
		return
	}
	*out = c
	if pending == nil {
		return
	}
	ev := batchedEvent{out: out, senderServer: pending.senderServer}
	for _, s := range pending.sigs {
		entry := -1
		if s.raw != nil {
			entry = b.v.add(s.pub, pending.signed, s.raw)
		}
		ev.sigs = append(ev.sigs, batchedSig{server: s.server, keyID: s.keyID, entry: entry})
	}
	b.events = append(b.events, ev)
}

// Verify verifies the signatures of the events added since the last
// Verify and completes their Checked.
func (b *Batch) Verify() {
	ok := b.v.verify()
	for _, ev := range b.events {
		ev.out.Signatures = SignatureUnverifiable
		for _, s := range ev.sigs {
			if s.entry < 0 || !ok[s.entry] {
				ev.out.Signatures, ev.out.SigErr = SignatureInvalid, sigError(s.server, s.keyID)
				break
			}
			if s.server == ev.senderServer {
				ev.out.Signatures = SignatureValid
			}
		}
	}
	b.events = b.events[:0]
}

// batchVerifier verifies Ed25519 signatures in one equation (see Batch).
type batchVerifier struct {
	entries []batchEntry
	keys    map[string]*batchKey
}

type batchEntry struct {
	pub      ed25519.PublicKey
	msg, sig []byte
}

// batchKey is a public key decoded once: nil point when it cannot be
// batched (it does not decode, or it has a small-order component).
type batchKey struct {
	point *edwards25519.Point
	// sum accumulates Σ z_i·k_i over an equation's signatures by the key.
	sum edwards25519.Scalar
}

// minBatch: below this many signatures, verifying each alone is as cheap.
const minBatch = 4

func (bv *batchVerifier) add(pub ed25519.PublicKey, msg, sig []byte) int {
	bv.entries = append(bv.entries, batchEntry{pub: pub, msg: msg, sig: sig})
	return len(bv.entries) - 1
}

// verify says, for each entry added since the last verify, whether its
// signature verifies, and forgets the entries.
func (bv *batchVerifier) verify() []bool {
	ok := make([]bool, len(bv.entries))
	var batch []int
	for i, e := range bv.entries {
		if len(e.pub) == ed25519.PublicKeySize && batchable(e.sig) && bv.key(e.pub).point != nil {
			batch = append(batch, i)
		} else {
			ok[i] = len(e.sig) == ed25519.SignatureSize && ed25519.Verify(e.pub, e.msg, e.sig)
		}
	}
	if len(batch) >= minBatch && bv.equation(batch) {
		for _, i := range batch {
			ok[i] = true
		}
	} else {
		for _, i := range batch {
			e := bv.entries[i]
			ok[i] = ed25519.Verify(e.pub, e.msg, e.sig)
		}
	}
	clear(bv.entries)
	bv.entries = bv.entries[:0]
	return ok
}

// key decodes pub once per verifier.
func (bv *batchVerifier) key(pub ed25519.PublicKey) *batchKey {
	if k, ok := bv.keys[string(pub)]; ok {
		return k
	}
	if bv.keys == nil {
		bv.keys = map[string]*batchKey{}
	}
	k := &batchKey{}
	if p, err := new(edwards25519.Point).SetBytes(pub); err == nil && torsionFree(p) {
		k.point = p
	}
	bv.keys[string(pub)] = k
	return k
}

// equation checks the batch equation over the entries batch names.
func (bv *batchVerifier) equation(batch []int) bool {
	n := len(batch)
	// Points: B, then each key once, then each R_i.
	scalars := make([]*edwards25519.Scalar, 0, n+8)
	points := make([]*edwards25519.Point, 0, n+8)
	bCoeff := edwards25519.NewScalar()
	scalars = append(scalars, bCoeff)
	points = append(points, edwards25519.NewGeneratorPoint())
	var used []*batchKey
	rs := make([]edwards25519.Point, n)
	zs := make([]edwards25519.Scalar, n)
	random := make([]byte, 16*n)
	rand.Read(random)
	var buf [32]byte
	var k, s edwards25519.Scalar
	for j, i := range batch {
		e := bv.entries[i]
		key := bv.key(e.pub)
		if _, err := rs[j].SetBytes(e.sig[:32]); err != nil {
			return false
		}
		if _, err := s.SetCanonicalBytes(e.sig[32:]); err != nil {
			return false
		}
		h := sha512.New()
		h.Write(e.sig[:32])
		h.Write(e.pub)
		h.Write(e.msg)
		var digest [64]byte
		if _, err := k.SetUniformBytes(h.Sum(digest[:0])); err != nil {
			return false
		}
		copy(buf[:16], random[16*j:])
		if _, err := zs[j].SetCanonicalBytes(buf[:]); err != nil {
			return false
		}
		bCoeff.MultiplyAdd(&zs[j], &s, bCoeff)
		if !slices.Contains(used, key) {
			key.sum = edwards25519.Scalar{}
			used = append(used, key)
		}
		key.sum.MultiplyAdd(&zs[j], &k, &key.sum)
	}
	bCoeff.Negate(bCoeff)
	for _, key := range used {
		scalars = append(scalars, &key.sum)
		points = append(points, key.point)
	}
	for j := range rs {
		scalars = append(scalars, &zs[j])
		points = append(points, &rs[j])
	}
	check := new(edwards25519.Point).VarTimeMultiScalarMult(scalars, points)
	return check.MultByCofactor(check).Equal(edwards25519.NewIdentityPoint()) == 1
}

// batchable: a signature of the right size whose R is canonically encoded
// (y below the field prime, and not a zero x with the sign bit set);
// others are verified alone, where crypto/ed25519 refuses them.
func batchable(sig []byte) bool {
	if len(sig) != ed25519.SignatureSize {
		return false
	}
	r := sig[:32]
	// y >= p = 2^255 - 19: ff..ff 7f above a low byte of at least 0xed.
	high := r[31] & 0x7f
	allOnes := high == 0x7f
	for _, c := range r[1:31] {
		allOnes = allOnes && c == 0xff
	}
	if allOnes && r[0] >= 0xed {
		return false
	}
	// x = 0 only for y = 1 and y = p-1; with the sign bit set, those are
	// non-canonical encodings of (0, 1) and (0, -1).
	if r[31]&0x80 != 0 {
		if isOne := r[0] == 1 && high == 0 && allZero(r[1:31]); isOne {
			return false
		}
		if minusOne := r[0] == 0xec && high == 0x7f && allFF(r[1:31]); minusOne {
			return false
		}
	}
	return true
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

func allFF(b []byte) bool {
	for _, c := range b {
		if c != 0xff {
			return false
		}
	}
	return true
}

// minusOne is ℓ-1, the largest scalar.
var minusOne = func() *edwards25519.Scalar {
	var one [32]byte
	one[0] = 1
	s, _ := new(edwards25519.Scalar).SetCanonicalBytes(one[:])
	return s.Negate(s)
}()

// torsionFree reports whether p is in the prime-order subgroup: [ℓ]p = 0,
// computed as [ℓ-1]p + p (ScalarMult multiplies by the scalar's integer
// value, so a small-order component survives).
func torsionFree(p *edwards25519.Point) bool {
	q := new(edwards25519.Point).ScalarMult(minusOne, p)
	return q.Add(q, p).Equal(edwards25519.NewIdentityPoint()) == 1
}
