package matrixevent

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha512"
	"encoding/binary"
	"slices"

	"filippo.io/edwards25519"
	"filippo.io/edwards25519/field"
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
// Check would name it. A Batch is not safe for concurrent use; used
// again after Verify, it reuses its memory and the keys it decoded.
type Batch struct {
	v      batchVerifier
	events []batchedEvent
	// signed holds the bytes the pending signatures sign, back to back.
	signed []byte
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
	c, pending, ok := checkFast(v, data, keys, contentHash, &b.signed)
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
	clear(b.events) // no reference to the events outlives Verify
	b.events = b.events[:0]
	b.signed = b.signed[:0]
}

// batchVerifier verifies Ed25519 signatures in one equation (see Batch).
type batchVerifier struct {
	entries []batchEntry
	keys    map[string]*batchKey
	scratch equationScratch
}

// equationScratch is the memory of a batch equation, which the next
// equation reuses: its contents do not outlive an equation.
type equationScratch struct {
	rs     []edwards25519.Point
	zs     []edwards25519.Scalar
	random []byte
	msm    msmScratch
}

// msmScratch is bucketMultiScalarMult's memory.
type msmScratch struct {
	digits  []int32
	affine  []affinePoint
	buckets []extendedPoint
	filled  []bool
}

// resize returns s with length n, reusing its array when it is large
// enough; the elements are not cleared.
func resize[T any](s []T, n int) []T {
	if cap(s) < n {
		return make([]T, n)
	}
	return s[:n]
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
	if len(bv.keys) > maxKeptKeys {
		bv.keys = nil // an archive of unusually many keys: decode them again
	}
	return ok
}

// maxKeptKeys bounds the decoded keys a verifier keeps from one verify to
// the next (an archive's servers' keys, usually a handful).
const maxKeptKeys = 1024

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
	sc := &bv.scratch
	sc.rs, sc.zs, sc.random = resize(sc.rs, n), resize(sc.zs, n), resize(sc.random, 16*n)
	rs, zs, random := sc.rs, sc.zs, sc.random
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
	var check *edwards25519.Point
	if n >= minBuckets {
		// The R_j, most of the points, by buckets; B and the keys, a few
		// points with full-size scalars, as before.
		rSum := bucketMultiScalarMult(random, rs, &sc.msm)
		if rSum == nil {
			return false // each signature is then verified alone
		}
		check = new(edwards25519.Point).VarTimeMultiScalarMult(scalars, points)
		check.Add(check, rSum)
	} else {
		for j := range rs {
			scalars = append(scalars, &zs[j])
			points = append(points, &rs[j])
		}
		check = new(edwards25519.Point).VarTimeMultiScalarMult(scalars, points)
	}
	return check.MultByCofactor(check).Equal(edwards25519.NewIdentityPoint()) == 1
}

// minBuckets: from this many signatures on, the R_j's part of the batch
// equation is computed by buckets (bucketMultiScalarMult), which costs
// fewer point additions than edwards25519's VarTimeMultiScalarMult for
// large batches only (about 19 additions a point at 2,048 against 28,
// the same at 256).
const minBuckets = 512

// bucketMultiScalarMult returns Σ [z_j]P_j, z_j the little-endian 128-bit
// integer in random[16j:16j+16], by Pippenger's bucket method: each z_j is
// cut into signed digits of c bits, and for each digit position (most
// significant first) every point is added once into the bucket of its
// digit's magnitude (subtracted for a negative digit), the buckets are
// summed with their weights by a running sum (2·2^(c-1) additions), and
// the result is doubled c times before the next position. With n points
// that is about (128/c + 1)·(n + 2^c) additions, against about 7 to build
// each point's table plus 21 for its digits in Straus's method.
//
// sc is its memory, reused from one call to the next.
//
// It is variable time, as the batch equation may be: every input is
// public. nil means the sum came out off the curve, which only a bug in
// its point formulas could do.
func bucketMultiScalarMult(random []byte, points []edwards25519.Point, sc *msmScratch) *edwards25519.Point {
	n := len(points)
	c := bucketBits(n)
	windows := (128+c-1)/c + 1 // the last digit takes the final carry
	half := 1 << (c - 1)
	sc.digits, sc.affine = resize(sc.digits, n*windows), resize(sc.affine, n)
	sc.buckets, sc.filled = resize(sc.buckets, half), resize(sc.filled, half)
	digits, affine, buckets, filled := sc.digits, sc.affine, sc.buckets, sc.filled
	for j := range points {
		signedDigits(random[16*j:16*j+16], c, digits[j*windows:(j+1)*windows])
	}
	// Each point is added into some bucket at every digit position: in
	// affine form once, each of those additions costs 7 multiplications
	// instead of edwards25519's 9 (Point.Add of two extended points).
	for j := range points {
		affine[j].set(&points[j])
	}
	acc := edwards25519.NewIdentityPoint()
	var sum, total extendedPoint
	var totalPoint edwards25519.Point
	for w := windows - 1; w >= 0; w-- {
		for range c {
			acc.Add(acc, acc)
		}
		clear(filled)
		for j := range affine {
			d := digits[j*windows+w]
			switch {
			case d > 0:
				if b := &buckets[d-1]; filled[d-1] {
					b.addAffine(b, &affine[j], false)
				} else {
					b.setAffine(&affine[j], false)
					filled[d-1] = true
				}
			case d < 0:
				if b := &buckets[-d-1]; filled[-d-1] {
					b.addAffine(b, &affine[j], true)
				} else {
					b.setAffine(&affine[j], true)
					filled[-d-1] = true
				}
			}
		}
		// Σ (k+1)·bucket[k]: a running sum from the top bucket down,
		// added to the total at every step.
		started := false
		sum.setIdentity()
		total.setIdentity()
		for k := half - 1; k >= 0; k-- {
			if filled[k] {
				sum.add(&sum, &buckets[k])
				started = true
			}
			if started {
				total.add(&total, &sum)
			}
		}
		if _, err := totalPoint.SetExtendedCoordinates(&total.X, &total.Y, &total.Z, &total.T); err != nil {
			return nil // off the curve: a bug in the formulas below, never in the input
		}
		acc.Add(acc, &totalPoint)
	}
	return acc
}

// affinePoint is a point with Z = 1, in the forms the bucket additions
// take: x, y and t = xy for a bucket's first point, y+x, y-x and 2d·xy
// for a mixed addition (as ref10's ge_precomp).
type affinePoint struct {
	x, y, t, yPlusX, yMinusX, xy2d field.Element
}

// extendedPoint is a point in extended coordinates (X:Y:Z:T): x = X/Z,
// y = Y/Z, xy = T/Z.
type extendedPoint struct{ X, Y, Z, T field.Element }

// curveD2 is 2d, d the curve constant: -x² + y² = 1 + d·x²y².
var curveD2 = func() *field.Element {
	d, err := new(field.Element).SetBytes([]byte{
		0xa3, 0x78, 0x59, 0x13, 0xca, 0x4d, 0xeb, 0x75, 0xab, 0xd8, 0x41, 0x41, 0x4d, 0x0a, 0x70, 0x00,
		0x98, 0xe8, 0x79, 0x77, 0x79, 0x40, 0xc7, 0x8c, 0x73, 0xfe, 0x6f, 0x2b, 0xee, 0x6c, 0x03, 0x52})
	if err != nil {
		panic(err)
	}
	return d.Add(d, d)
}()

var feOne = new(field.Element).One()

// set makes a the affine form of p.
func (a *affinePoint) set(p *edwards25519.Point) {
	X, Y, Z, _ := p.ExtendedCoordinates()
	if Z.Equal(feOne) == 1 { // as SetBytes leaves a point
		a.x.Set(X)
		a.y.Set(Y)
	} else {
		var inv field.Element
		inv.Invert(Z)
		a.x.Multiply(X, &inv)
		a.y.Multiply(Y, &inv)
	}
	a.t.Multiply(&a.x, &a.y)
	a.yPlusX.Add(&a.y, &a.x)
	a.yMinusX.Subtract(&a.y, &a.x)
	a.xy2d.Multiply(&a.t, curveD2)
}

func (v *extendedPoint) setIdentity() {
	v.X.Zero()
	v.Y.One()
	v.Z.One()
	v.T.Zero()
}

// setAffine sets v = a, or -a = (-x, y) when negate.
func (v *extendedPoint) setAffine(a *affinePoint, negate bool) {
	v.X.Set(&a.x)
	v.Y.Set(&a.y)
	v.Z.One()
	v.T.Set(&a.t)
	if negate {
		v.X.Negate(&v.X)
		v.T.Negate(&v.T)
	}
}

// addAffine sets v = p + a, or p - a when negate: the mixed addition of
// Hisil, Wong, Carter and Dawson (2008), section 3.1, with k = 2d, in 7
// multiplications; -a swaps y+x with y-x and negates 2d·xy.
func (v *extendedPoint) addAffine(p *extendedPoint, a *affinePoint, negate bool) {
	var yPlusX, yMinusX, pp, mm, tt2d, z2 field.Element
	yPlusX.Add(&p.Y, &p.X)
	yMinusX.Subtract(&p.Y, &p.X)
	if negate {
		pp.Multiply(&yPlusX, &a.yMinusX)
		mm.Multiply(&yMinusX, &a.yPlusX)
	} else {
		pp.Multiply(&yPlusX, &a.yPlusX)
		mm.Multiply(&yMinusX, &a.yMinusX)
	}
	tt2d.Multiply(&p.T, &a.xy2d)
	z2.Add(&p.Z, &p.Z)
	if negate {
		tt2d.Negate(&tt2d)
	}
	v.finish(&pp, &mm, &tt2d, &z2)
}

// add sets v = p + q, in 9 multiplications (as edwards25519's Point.Add).
func (v *extendedPoint) add(p, q *extendedPoint) {
	var yPlusX, yMinusX, qPlusX, qMinusX, pp, mm, tt2d, zz2 field.Element
	yPlusX.Add(&p.Y, &p.X)
	yMinusX.Subtract(&p.Y, &p.X)
	qPlusX.Add(&q.Y, &q.X)
	qMinusX.Subtract(&q.Y, &q.X)
	pp.Multiply(&yPlusX, &qPlusX)
	mm.Multiply(&yMinusX, &qMinusX)
	tt2d.Multiply(&p.T, &q.T)
	tt2d.Multiply(&tt2d, curveD2)
	zz2.Multiply(&p.Z, &q.Z)
	zz2.Add(&zz2, &zz2)
	v.finish(&pp, &mm, &tt2d, &zz2)
}

// finish completes an addition from (Y1+X1)(Y2+X2), (Y1-X1)(Y2-X2),
// 2d·T1·T2 and 2·Z1·Z2: E = pp-mm, H = pp+mm, G = zz2+tt2d, F = zz2-tt2d,
// and (X:Y:Z:T) = (E·F : G·H : F·G : E·H).
func (v *extendedPoint) finish(pp, mm, tt2d, zz2 *field.Element) {
	var e, h, g, f field.Element
	e.Subtract(pp, mm)
	h.Add(pp, mm)
	g.Add(zz2, tt2d)
	f.Subtract(zz2, tt2d)
	v.X.Multiply(&e, &f)
	v.Y.Multiply(&g, &h)
	v.Z.Multiply(&f, &g)
	v.T.Multiply(&e, &h)
}

// bucketBits is the digit size that makes bucketMultiScalarMult's
// (128/c + 1)·(n + 2^c) additions fewest for n points.
func bucketBits(n int) int {
	best, bestCost := 4, -1
	for c := 4; c <= 16; c++ {
		cost := ((128+c-1)/c + 1) * (n + 1<<c)
		if bestCost < 0 || cost < bestCost {
			best, bestCost = c, cost
		}
	}
	return best
}

// signedDigits writes the little-endian 128-bit integer z as digits d_i in
// [-2^(c-1), 2^(c-1)], z = Σ d_i·2^(c·i), one per element of out
// (len(out) ≥ ceil(128/c) + 1).
func signedDigits(z []byte, c int, out []int32) {
	lo := binary.LittleEndian.Uint64(z[:8])
	hi := binary.LittleEndian.Uint64(z[8:16])
	mask := uint64(1)<<c - 1
	half := int32(1) << (c - 1)
	carry := int32(0)
	for i := range out {
		shift := uint(c * i)
		var bits uint64
		switch {
		case shift >= 128:
			bits = 0
		case shift >= 64:
			bits = hi >> (shift - 64)
		case shift == 0:
			bits = lo
		default:
			bits = lo>>shift | hi<<(64-shift)
		}
		d := int32(bits&mask) + carry
		carry = 0
		if d > half {
			d -= 1 << c
			carry = 1
		}
		out[i] = d
	}
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
