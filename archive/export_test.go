package archive

// Hooks for the external tests of decodeEventFast.
var (
	DecodeEventFast = decodeEventFast
	// DecodeStrict and EncodeStrict are the archive's CBOR codec.
	DecodeStrict = func(data []byte, v any) error { return testCodec.dec.Unmarshal(data, v) }
	EncodeStrict = func(v any) ([]byte, error) { return testCodec.enc.Marshal(v) }
)

var testCodec = newCodec()
