package archive

import (
	"encoding/binary"
	"math"
	"unicode/utf8"
)

// decodeEventFast decodes one m.events record at the start of data without
// reflection, as the archive's CBOR decoder (codec.dec) would, into e, and
// says how many bytes it took. It takes only the shape writers produce: a
// map of at most the ten fields of Event, each key once and spelled as
// the struct tag has it, each value of its field's major type in its
// shortest form (text strings valid UTF-8, no null, no tag). Anything else
// it declines (ok false, e untouched), and the record goes to codec.dec,
// which decodes it or gives its error. FuzzDecodeEventFast checks that what
// it takes decodes the same both ways.
//
// A restore's events pass and validation each decode every event of an
// archive: at 1M events the reflecting decoder cost about 1.6 s of CPU a
// walk, and more again in garbage collection.
//
// The record's JSON and OriginalJSON are copies, unless alias is set:
// then they are slices of data (capped, so that an append copies), which
// keep all of data in memory while either is kept.
func decodeEventFast(data []byte, e *Event, alias bool) (n int, ok bool) {
	d := fastDecoder{data: data}
	major, pairs, ok := d.head()
	if !ok || major != cborMap || pairs == 0 || pairs > eventFields {
		return 0, false
	}
	var out Event
	var seen uint16
	for range pairs {
		key, ok := d.text()
		if !ok {
			return 0, false
		}
		field := eventField(key)
		if field < 0 || seen&(1<<field) != 0 {
			return 0, false
		}
		seen |= 1 << field
		switch field {
		case fieldEventID, fieldRoomID, fieldRejected:
			s, ok := d.text()
			if !ok || !utf8.Valid(s) {
				return 0, false
			}
			str := string(s)
			switch field {
			case fieldEventID:
				out.EventID = str
			case fieldRoomID:
				out.RoomID = str
			default:
				out.Rejected = str
			}
		case fieldJSON, fieldOriginalJSON:
			b, ok := d.bytes()
			if !ok {
				return 0, false
			}
			if alias {
				b = b[:len(b):len(b)]
			} else {
				b = append(make([]byte, 0, len(b)), b...)
			}
			if field == fieldJSON {
				out.JSON = b
			} else {
				out.OriginalJSON = b
			}
		case fieldStateBefore:
			major, v, ok := d.head()
			if !ok || major != cborUint {
				return 0, false
			}
			out.StateBefore = v
		case fieldStreamOrdering:
			major, v, ok := d.head()
			switch {
			case !ok || v > math.MaxInt64:
				return 0, false
			case major == cborUint:
				out.StreamOrdering = int64(v)
			case major == cborNegInt:
				out.StreamOrdering = -1 - int64(v)
			default:
				return 0, false
			}
		default: // the booleans
			b, ok := d.boolean()
			if !ok {
				return 0, false
			}
			switch field {
			case fieldOutlier:
				out.Outlier = b
			case fieldSoftFailed:
				out.SoftFailed = b
			default:
				out.Redacted = b
			}
		}
	}
	*e = out
	return d.off, true
}

// The fields of Event, by their CBOR keys.
const (
	fieldEventID = iota
	fieldRoomID
	fieldJSON
	fieldStateBefore
	fieldOutlier
	fieldSoftFailed
	fieldRejected
	fieldRedacted
	fieldOriginalJSON
	fieldStreamOrdering
	eventFields
)

func eventField(key []byte) int {
	switch string(key) {
	case "event_id":
		return fieldEventID
	case "room_id":
		return fieldRoomID
	case "json":
		return fieldJSON
	case "state_before":
		return fieldStateBefore
	case "outlier":
		return fieldOutlier
	case "soft_failed":
		return fieldSoftFailed
	case "rejected":
		return fieldRejected
	case "redacted":
		return fieldRedacted
	case "original_json":
		return fieldOriginalJSON
	case "stream_ordering":
		return fieldStreamOrdering
	}
	return -1
}

// CBOR major types.
const (
	cborUint    = 0
	cborNegInt  = 1
	cborBytes   = 2
	cborText    = 3
	cborMap     = 5
	cborSimple  = 7
	cborFalse   = 0xf4
	cborTrue    = 0xf5
	cborMaxTiny = 23
)

// fastDecoder reads CBOR data items of the shapes decodeEventFast takes.
type fastDecoder struct {
	data []byte
	off  int
}

// head reads an item's head: its major type and argument, which must be
// definite and in its shortest form.
func (d *fastDecoder) head() (major byte, arg uint64, ok bool) {
	if d.off >= len(d.data) {
		return 0, 0, false
	}
	b := d.data[d.off]
	major, info := b>>5, b&0x1f
	rest := d.data[d.off+1:]
	switch {
	case info <= cborMaxTiny:
		d.off++
		return major, uint64(info), true
	case info == 24 && len(rest) >= 1 && rest[0] > cborMaxTiny:
		d.off += 2
		return major, uint64(rest[0]), true
	case info == 25 && len(rest) >= 2:
		arg = uint64(binary.BigEndian.Uint16(rest))
		d.off += 3
		return major, arg, arg > math.MaxUint8
	case info == 26 && len(rest) >= 4:
		arg = uint64(binary.BigEndian.Uint32(rest))
		d.off += 5
		return major, arg, arg > math.MaxUint16
	case info == 27 && len(rest) >= 8:
		arg = binary.BigEndian.Uint64(rest)
		d.off += 9
		return major, arg, arg > math.MaxUint32
	}
	return 0, 0, false
}

// text reads a definite text string, as bytes of data.
func (d *fastDecoder) text() ([]byte, bool) { return d.str(cborText) }

// bytes reads a definite byte string, as bytes of data.
func (d *fastDecoder) bytes() ([]byte, bool) { return d.str(cborBytes) }

func (d *fastDecoder) str(want byte) ([]byte, bool) {
	major, n, ok := d.head()
	if !ok || major != want || n > uint64(len(d.data)-d.off) {
		return nil, false
	}
	s := d.data[d.off : d.off+int(n)]
	d.off += int(n)
	return s, true
}

// boolean reads true or false.
func (d *fastDecoder) boolean() (bool, bool) {
	if d.off >= len(d.data) {
		return false, false
	}
	switch d.data[d.off] {
	case cborFalse:
		d.off++
		return false, true
	case cborTrue:
		d.off++
		return true, true
	}
	return false, false
}
