package matrixevent

// CanonicalForTest exposes the one-pass canonical encoder to the tests.
func CanonicalForTest(data []byte) ([]byte, bool) { return canonical(data) }
