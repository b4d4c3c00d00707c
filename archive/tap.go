package archive

import (
	"context"
	"errors"
	"sync"

	"github.com/ferry-matrix/ferry/matrixevent"
)

// EventTap hands the events ValidateTapped decodes, with the fields its
// checks parsed, to one consumer in archive order (the order ReadSection
// gives), so that an import running beside the validation walks the
// events once instead of twice: at 1M events the second walk and its
// parse were about 5 s of CPU (decryption, decompression, the file
// hashes, decoding and the JSON scan).
//
// The validation waits for the consumer: a tap must either be walked to
// its end with Each or given up with Release, and whoever waits for the
// validation to end must Release first (importer.Validation.Wait does).
// Released, the validation goes on alone and hands nothing more.
//
// A clean end of Each means every events file was read, its hash and
// record count checked and every event handed; what the validation
// checks after them (the rest of the archive's structure, the references)
// is in its report, which a consumer must still wait for before anything
// it wrote can stay.
type EventTap struct {
	// batches are closed by finish: the validation's goroutine alone sends
	// and finishes.
	batches  chan []TappedEvent
	released chan struct{}
	release  sync.Once
	finished bool  // the validation's own: no more sends
	err      error // why the events ended early (nil: all were handed), set before batches closes
	taken    bool
}

// TappedEvent is one event as the validation decoded it.
type TappedEvent struct {
	Event *Event
	// Fields are the event's fields as matrixevent.Parse gives them, read
	// by the checks' one pass (matrixevent.Checked.Fields): JSON without
	// escapes, each top-level key once and in lower case, so that Content,
	// Depth and Unsigned are the canonical form of the only member of that
	// name. nil where the one pass did not read them (parse the event).
	Fields *matrixevent.Fields
}

// tapBuffer is how many batches of events (eventBatch each, eventBatchBytes
// at most) wait for the consumer before the validation does: enough to
// ride out a consumer's pause (a COPY flush). The validation then waits
// while a restore prepares its events pass (0.5 s at 1M events); 16
// batches, to go on meanwhile, took 60-90 MiB more peak RSS at 1M (the
// batches hold the events' checked fields too) for no shorter restore.
const tapBuffer = 4

// NewEventTap returns a tap for ValidateTapped.
func NewEventTap() *EventTap {
	return &EventTap{batches: make(chan []TappedEvent, tapBuffer), released: make(chan struct{})}
}

// errTapStopped is what Each returns when the validation stopped before
// the last event: a damaged file, whose problem the report names.
var errTapStopped = errors.New("the archive's events could not all be read: it is damaged (its validation report says where)")

// errTapReleased is what Each returns on a tap given up before it.
var errTapReleased = errors.New("archive: the events were given up (EventTap.Release) before EventTap.Each")

// Each calls fn with every event of r's events section, in archive order,
// as the validation reads them; r is the reader ValidateTapped validates.
// It returns nil once the last event was handed, fn's error (after
// Release), the error that stopped the validation before the last event,
// or ctx's. It may be called once.
func (t *EventTap) Each(ctx context.Context, r *Reader, fn func(*Event, *matrixevent.Fields) error) error {
	if t.taken {
		return errors.New("archive: EventTap.Each called twice")
	}
	t.taken = true
	select {
	case <-t.released:
		return errTapReleased // batches may have been dropped
	default:
	}
	if err := checkSectionReadable(r, SectionEvents); err != nil {
		t.Release()
		return err
	}
	for {
		select {
		case batch, ok := <-t.batches:
			if !ok {
				return t.err // every batch was taken
			}
			for i := range batch {
				if err := fn(batch[i].Event, batch[i].Fields); err != nil {
					t.Release()
					return err
				}
			}
		case <-ctx.Done():
			t.Release()
			return ctx.Err()
		}
	}
}

// Release gives the tap up: the validation hands no more events. It may be
// called any number of times, and on a nil tap.
func (t *EventTap) Release() {
	if t != nil {
		t.release.Do(func() { close(t.released) })
	}
}

// send hands a batch of checked events to the consumer, waiting for room
// unless the tap was released or ctx is done.
func (t *EventTap) send(ctx context.Context, batch []checkedEvent) {
	if t.finished {
		return
	}
	select {
	case <-t.released:
		return
	default:
	}
	out := make([]TappedEvent, len(batch))
	for i := range batch {
		out[i] = TappedEvent{Event: batch[i].e}
		if batch[i].onePass {
			out[i].Fields = batch[i].fields
		}
	}
	select {
	case t.batches <- out:
	case <-t.released:
	case <-ctx.Done():
		t.finish(ctx.Err()) // a batch is lost: the events cannot end cleanly
	}
}

// finish says the events ended: all of them were sent (err nil), or not
// (err says why). The first call counts.
func (t *EventTap) finish(err error) {
	if !t.finished {
		t.finished, t.err = true, err
		close(t.batches)
	}
}

// ValidateTapped is Validate, handing the events to tap as it checks them.
func ValidateTapped(ctx context.Context, r *Reader, tap *EventTap) (*ValidationReport, error) {
	v := newValidator(r)
	v.tap, v.ctx = tap, ctx
	v.eventFilesLeft = len(r.Manifest().FilesOf(SectionEvents))
	rep, err := v.run(ctx)
	switch {
	case err != nil:
		tap.finish(err)
	case v.eventFilesLeft == 0:
		tap.finish(nil) // a no-op when the last events file already did it
	default:
		tap.finish(errTapStopped)
	}
	return rep, err
}

// checkSectionReadable is the refusal of ReadSection to read a section:
// unknown, or of an item newer than this reader understands.
func checkSectionReadable(r *Reader, sectionName string) error {
	s, ok := lookupSection(sectionName)
	if !ok {
		return errors.New("unknown section " + sectionName)
	}
	if !r.manifest.ItemKnown(s.item()) {
		return errNewerItem(r, s)
	}
	return nil
}
