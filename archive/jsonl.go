package archive

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
)

// writeJSONLine writes one CBOR record as one line of JSON, transcoding as
// it reads: no Go value is built per map or array, and nothing is held but
// w's buffer, whatever the record holds (a record of a million empty maps
// decoded into Go values would cost some 50 bytes per byte). Byte strings
// holding JSON become that JSON, other byte strings base64 (as
// encoding/json writes []byte). Map keys must be text, and keys stay in
// record order (RFC 8949 core deterministic order). Write errors stay in w
// (see bufio.Writer.Flush).
func writeJSONLine(w *bufio.Writer, rec []byte) error {
	rest, err := transcode(w, rec, 0)
	if err != nil {
		return err
	}
	if len(rest) > 0 {
		return errors.New("trailing bytes after the record")
	}
	return w.WriteByte('\n')
}

var errTruncated = errors.New("record ends inside a value")

// cborHead splits the head of a data item: major type, argument, rest.
func cborHead(b []byte) (major byte, arg uint64, rest []byte, err error) {
	if len(b) == 0 {
		return 0, 0, nil, errTruncated
	}
	major, info := b[0]>>5, b[0]&0x1f
	b = b[1:]
	switch {
	case info < 24:
		return major, uint64(info), b, nil
	case info <= 27:
		n := 1 << (info - 24)
		if len(b) < n {
			return 0, 0, nil, errTruncated
		}
		var v uint64
		for _, c := range b[:n] {
			v = v<<8 | uint64(c)
		}
		return major, v, b[n:], nil
	}
	return 0, 0, nil, fmt.Errorf("CBOR additional information %d (indefinite lengths and reserved values are not allowed)", info)
}

func transcode(w *bufio.Writer, b []byte, depth int) ([]byte, error) {
	if depth > maxNestedLevels {
		return nil, fmt.Errorf("nested deeper than %d levels", maxNestedLevels)
	}
	head := b
	major, arg, b, err := cborHead(b)
	if err != nil {
		return nil, err
	}
	switch major {
	case 0:
		w.Write(strconv.AppendUint(w.AvailableBuffer(), arg, 10))
		return b, nil
	case 1:
		if arg > math.MaxInt64 {
			return nil, errors.New("integer below -2^63")
		}
		w.Write(strconv.AppendInt(w.AvailableBuffer(), -1-int64(arg), 10))
		return b, nil
	case 2, 3:
		if arg > uint64(len(b)) {
			return nil, errTruncated
		}
		s, rest := b[:arg], b[arg:]
		switch {
		case major == 2 && json.Valid(s):
			var c bytes.Buffer
			json.Compact(&c, s) // valid JSON: no error
			w.Write(c.Bytes())
		case major == 2:
			w.WriteByte('"')
			enc := base64.NewEncoder(base64.StdEncoding, w)
			enc.Write(s)
			enc.Close()
			w.WriteByte('"')
		default:
			q, err := json.Marshal(string(s))
			if err != nil {
				return nil, err
			}
			w.Write(q)
		}
		return rest, nil
	case 4:
		if arg > maxArrayElements {
			return nil, fmt.Errorf("array of %d elements, above the limit %d", arg, maxArrayElements)
		}
		w.WriteByte('[')
		for i := range arg {
			if i > 0 {
				w.WriteByte(',')
			}
			if b, err = transcode(w, b, depth+1); err != nil {
				return nil, err
			}
		}
		return b, w.WriteByte(']')
	case 5:
		if arg > maxMapPairs {
			return nil, fmt.Errorf("map of %d pairs, above the limit %d", arg, maxMapPairs)
		}
		w.WriteByte('{')
		for i := range arg {
			if i > 0 {
				w.WriteByte(',')
			}
			if len(b) == 0 || b[0]>>5 != 3 {
				return nil, errors.New("map key is not a text string")
			}
			if b, err = transcode(w, b, depth+1); err != nil {
				return nil, err
			}
			w.WriteByte(':')
			if b, err = transcode(w, b, depth+1); err != nil {
				return nil, err
			}
		}
		return b, w.WriteByte('}')
	case 6:
		return nil, errors.New("CBOR tags are not allowed")
	}
	// Major type 7: simple values and floats.
	switch info := head[0] & 0x1f; {
	case info == 20:
		_, err = w.WriteString("false")
	case info == 21:
		_, err = w.WriteString("true")
	case info == 22 || info == 23:
		_, err = w.WriteString("null")
	case info == 25:
		err = writeFloat(w, float64(halfToFloat(uint16(arg))))
	case info == 26:
		err = writeFloat(w, float64(math.Float32frombits(uint32(arg))))
	case info == 27:
		err = writeFloat(w, math.Float64frombits(arg))
	default:
		err = fmt.Errorf("CBOR simple value %d is not allowed", arg)
	}
	return b, err
}

func writeFloat(w *bufio.Writer, f float64) error {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return fmt.Errorf("%v has no JSON form", f)
	}
	_, err := w.Write(strconv.AppendFloat(w.AvailableBuffer(), f, 'g', -1, 64))
	return err
}

// halfToFloat converts an IEEE 754 half-precision float.
func halfToFloat(h uint16) float32 {
	sign := uint32(h>>15) << 31
	exp := uint32(h>>10) & 0x1f
	frac := uint32(h) & 0x3ff
	switch exp {
	case 0:
		f := float32(frac) / (1 << 24)
		if sign != 0 {
			f = -f
		}
		return f
	case 0x1f:
		return math.Float32frombits(sign | 0x7f800000 | frac<<13)
	}
	return math.Float32frombits(sign | (exp+112)<<23 | frac<<13)
}
