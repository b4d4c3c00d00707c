package archive

import (
	"fmt"
	"reflect"

	"github.com/fxamacker/cbor/v2"
)

// Limits a reader enforces on decoded records, whatever a file claims.
const (
	maxNestedLevels  = 32
	maxArrayElements = 1 << 20
	maxMapPairs      = 1 << 16
)

// codec holds the one deterministic encoder and the one strict decoder every
// record in an archive goes through. It is built once per Writer/Reader rather
// than kept as package state.
type codec struct {
	enc cbor.UserBufferEncMode // MarshalToBuffer encodes into a chunk's buffer in place
	dec cbor.DecMode
}

func newCodec() codec {
	encOpts := cbor.CoreDetEncOptions() // RFC 8949 core deterministic encoding
	encOpts.Time = cbor.TimeUnix
	encOpts.NilContainers = cbor.NilContainerAsEmpty
	enc, err := encOpts.UserBufferEncMode()
	if err != nil {
		panic(fmt.Sprintf("archive: static CBOR encoder options rejected: %v", err))
	}
	dec, err := cbor.DecOptions{
		DupMapKey:        cbor.DupMapKeyEnforcedAPF,
		IndefLength:      cbor.IndefLengthForbidden,
		TagsMd:           cbor.TagsForbidden,
		MaxNestedLevels:  maxNestedLevels,
		MaxArrayElements: maxArrayElements,
		MaxMapPairs:      maxMapPairs,
		DefaultMapType:   reflect.TypeOf(map[string]any(nil)),
	}.DecMode()
	if err != nil {
		panic(fmt.Sprintf("archive: static CBOR decoder options rejected: %v", err))
	}
	return codec{enc: enc, dec: dec}
}
