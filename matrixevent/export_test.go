package matrixevent

import "encoding/json"

// CanonicalForTest exposes the one-pass canonical encoder to the tests.
func CanonicalForTest(data []byte) ([]byte, bool) { return canonical(data) }

// ScanEventForTest is Parse on a string with the Scan functions, as the
// restore uses them (see importer/synapse's scanEventRow): the same Fields
// but Depth and Unsigned (left nil), their strings substrings of js (keep them only where keeping js is
// fine). ok is false where Parse could give other Fields or an error:
// call Parse.
func ScanEventForTest(js string) (*Fields, bool) {
	var vals [10]string
	if !ScanObject(js, EventNames, vals[:]) {
		return nil, false
	}
	f, ok := ScanFields(vals[:], func(content string) (string, bool) {
		if content == "" || content == "null" {
			return "", true // json.Unmarshal fails or leaves it: ""
		}
		if content[0] != '{' {
			return "", false
		}
		var r [1]string
		if !ScanObject(content, []string{"redacts"}, r[:]) {
			return "", false
		}
		return ScanNullableString(r[0])
	})
	if !ok {
		return nil, false
	}
	if vals[7] != "" {
		f.Content = json.RawMessage(vals[7])
	}
	return f, true
}

// CheckDeferredForTest is what a Batch's Add computes of one event,
// without the signatures it defers.
func CheckDeferredForTest(v RoomVersion, data []byte, keys KeyLookup) bool {
	var signed []byte
	_, _, ok := checkFast(v, data, keys, true, &signed)
	return ok
}
