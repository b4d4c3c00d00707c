package archive

import (
	"context"
	"fmt"
	"reflect"
	"testing"

	"github.com/fxamacker/cbor/v2"

	"github.com/ferry-matrix/ferry/archive/container"
	"github.com/ferry-matrix/ferry/archive/keywrap"
)

// fill sets every field of v (recursively) to a non-zero value derived
// from seed, so that a round trip that drops or mangles any field shows.
func fill(v reflect.Value, seed int) {
	switch v.Kind() {
	case reflect.String:
		v.SetString(fmt.Sprintf("s%d-%s", seed, v.Type().Name()))
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Int, reflect.Int64, reflect.Int32:
		v.SetInt(int64(1000 + seed))
	case reflect.Uint64, reflect.Uint32:
		v.SetUint(uint64(2000 + seed))
	case reflect.Slice:
		if v.Type().Elem().Kind() == reflect.Uint8 {
			v.SetBytes([]byte(fmt.Sprintf(`{"k":%d}`, seed)))
			return
		}
		s := reflect.MakeSlice(v.Type(), 2, 2)
		for i := 0; i < 2; i++ {
			fill(s.Index(i), seed*10+i)
		}
		v.Set(s)
	case reflect.Pointer:
		p := reflect.New(v.Type().Elem())
		fill(p.Elem(), seed)
		v.Set(p)
	case reflect.Struct:
		for i := 0; i < v.NumField(); i++ {
			fill(v.Field(i), seed*7+i)
		}
	}
}

// Every section type survives a write and a read with every field set,
// in an encrypted archive (so sensitive fields are allowed).
func TestRoundTripEverySection(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	b, err := container.OpenDirBucket(dir, true)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	key := keywrap.New()
	w, err := NewWriter(ctx, &container.BucketStore{Bucket: b}, WriterOptions{Key: key, Export: ExportInfo{ServerName: "rt.test", Type: "full"}, ChunkSize: 512})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]any{}
	for _, s := range knownSections {
		if s.name == SectionBlobIndex {
			continue // written by the writer itself
		}
		for i := 0; i < 5; i++ {
			rec := reflect.New(s.typ)
			fill(rec.Elem(), i)
			if err := w.Add(s.name, rec.Interface()); err != nil {
				t.Fatalf("%s: %v", s.name, err)
			}
			want[s.name] = append(want[s.name], rec.Interface())
		}
	}
	if _, err := w.Close(); err != nil {
		t.Fatal(err)
	}
	r, err := OpenLocation(ctx, dir, OpenOptions{Key: key})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	got := map[string][]any{}
	err = r.Walk(ctx, func(f *File) error {
		if f.Data == nil || f.Entry.Path == CoreFile {
			return nil
		}
		name := SectionOf(f.Entry.Path)
		s, _ := lookupSection(name)
		return RawRecords(r, f, func(raw cbor.RawMessage) error {
			rec := reflect.New(s.typ)
			if err := r.DecodeRaw(raw, rec.Interface()); err != nil {
				return err
			}
			got[name] = append(got[name], rec.Interface())
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	for name, recs := range want {
		if !reflect.DeepEqual(recs, got[name]) {
			t.Errorf("%s: records differ after the round trip\nwant %+v\n got %+v", name, recs[0], got[name])
		}
	}
	if len(r.Manifest().Sensitive) != 5 {
		t.Errorf("sensitive fields %v, want all five", r.Manifest().Sensitive)
	}
}
