// Package exporter runs a Source's streams into an archive.Writer: it is
// the one place where export happens, called by the CLI, the job workers
// and (through them) the bot. It reports progress, checkpoints so that a
// crashed export resumes from its last complete part, and never leaves an
// archive that looks complete when it fails or is cancelled.
package exporter

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/ferry-matrix/ferry/archive"
	"github.com/ferry-matrix/ferry/source"
)

// Progress is a snapshot of a running export, safe to read from any
// goroutine through Export's callback.
type Progress struct {
	Stream  string // the stream running now
	Streams int    // how many streams in all
	Done    int    // streams finished (a resume's earlier streams included)
	Records int64  // records written so far (a resume's earlier streams: their counts)
	// Total estimates the records in all, from the streams' counts; 0 when
	// a stream has no count, so that no total is known (Synapse's events,
	// for one, are not counted up front).
	Total int64
	// StreamRecords are the current stream's records so far, StreamTotal
	// its count (0: unknown).
	StreamRecords, StreamTotal int64
	Blobs                      int64            // media files written
	BlobBytes                  int64            // their bytes
	PerStream                  map[string]int64 // records per stream
	// StreamCounts are every stream's records and count, in the order
	// the streams run (streams finished before a resume show their count).
	StreamCounts []StreamCount
	Omissions    int64 // things left out (see the archive's m.omissions)
	Started      time.Time
	SnapshotAt   time.Time // when the source's consistent view was taken
	// EstimatedBytes is the archive size predicted before the export
	// started (Run, for sources that implement source.Estimator); 0: none.
	EstimatedBytes int64
}

// StreamCount is one stream's progress.
type StreamCount struct {
	Name    string
	Records int64 // written so far
	Total   int64 // the stream's count; 0: unknown
	Done    bool
}

// Fraction is the share done (0..1): from record counts when every stream
// has one, else from the streams done and the current stream's count.
func (p Progress) Fraction() float64 {
	if p.Streams > 0 && p.Done >= p.Streams {
		return 1
	}
	if p.Total > 0 {
		return min(1, float64(p.Records)/float64(p.Total))
	}
	if p.Streams <= 0 {
		return 0
	}
	f := float64(p.Done)
	if p.StreamTotal > 0 && p.Done < p.Streams {
		f += min(1, float64(p.StreamRecords)/float64(p.StreamTotal))
	}
	return min(1, f/float64(p.Streams))
}

// ETA estimates the time left from the rate so far.
func (p Progress) ETA(now time.Time) time.Duration {
	f := p.Fraction()
	if f <= 0 {
		return 0
	}
	elapsed := now.Sub(p.Started)
	return time.Duration(float64(elapsed) * (1 - f) / f)
}

// Options of one export.
type Options struct {
	Filter source.Filter
	Source source.Options
	// Resume continues after a checkpoint's cursor (from the checkpoint
	// the writer was resumed with); nil starts from the beginning.
	Resume []byte
	// Personal, a user ID, makes a personal export of that user (archive
	// type "user"; see personalStreams); Filter must then be empty.
	Personal string
	// OnProgress is called after every stream and at most every Interval.
	OnProgress func(Progress)
	Interval   time.Duration // default 1s
}

// position is the exporter's resume cursor: which stream, and where in it.
type position struct {
	Stream int             `json:"stream"`
	Name   string          `json:"name"`
	Cursor json.RawMessage `json:"cursor,omitempty"`
	// What was written up to here, so that a resumed export's progress
	// goes on from it (absent in cursors of older releases).
	Records       int64 `json:"records,omitempty"`
	StreamRecords int64 `json:"stream_records,omitempty"`
	Blobs         int64 `json:"blobs,omitempty"`
	BlobBytes     int64 `json:"blob_bytes,omitempty"`
}

// Export writes everything src holds (as filtered) into w and returns the
// final progress. It does not close w: the caller closes it on success
// (publishing the archive) or aborts it on error.
func Export(ctx context.Context, src source.Source, w *archive.Writer, opts Options) (Progress, error) {
	if err := opts.Filter.Validate(); err != nil {
		return Progress{}, err
	}
	sopts := opts.Source
	sopts.Encrypted = w.Encrypted()
	if sopts.RedactedOriginals && !w.Encrypted() {
		return Progress{}, fmt.Errorf("%w: redacted originals need an encrypted archive", archive.ErrSensitiveInPlaintext)
	}
	var streams []source.Stream
	var err error
	if opts.Personal != "" {
		if !opts.Filter.IsFull() {
			return Progress{}, fmt.Errorf("a personal export of %s takes no filter", opts.Personal)
		}
		streams, err = personalStreams(ctx, src, opts.Personal, sopts)
	} else {
		streams, err = src.Streams(ctx, opts.Filter, sopts)
	}
	if err != nil {
		return Progress{}, err
	}
	var start position
	if len(opts.Resume) > 0 {
		if err := json.Unmarshal(opts.Resume, &start); err != nil {
			return Progress{}, fmt.Errorf("resume cursor is not an exporter position: %w", err)
		}
		if start.Stream >= len(streams) || streams[start.Stream].Name != start.Name {
			return Progress{}, fmt.Errorf("resume cursor names stream %d %q, which this export does not have at that place (filter or Ferry version changed?)", start.Stream, start.Name)
		}
	}
	e := &run{w: w, opts: opts, p: Progress{Streams: len(streams), Started: time.Now(), PerStream: map[string]int64{},
		SnapshotAt: src.Info().SnapshotTime}}
	if e.opts.Interval <= 0 {
		e.opts.Interval = time.Second
	}
	e.counts = make([]int64, len(streams))
	e.names = make([]string, len(streams))
	for i, s := range streams {
		e.names[i] = s.Name
	}
	uncounted := false
	for i, s := range streams {
		if s.Count == nil {
			uncounted = true
			continue
		}
		n, err := s.Count(ctx)
		if err != nil {
			return e.p, fmt.Errorf("count %s: %w", s.Name, err)
		}
		e.counts[i] = n
		e.p.Total += n
	}
	if uncounted {
		e.p.Total = 0 // a sum of some streams' counts is no total
	}
	// A resumed export starts with the streams before its cursor done and
	// counted (as their counts say: their records are in the parts already
	// written), so its share done does not fall back when it resumes.
	e.finished, e.p.Done = start.Stream, start.Stream
	for i := range start.Stream {
		e.p.PerStream[streams[i].Name] = e.counts[i]
		if start.Records == 0 {
			e.p.Records += e.counts[i] // a cursor that does not say
		}
	}
	e.p.Records += start.Records
	e.p.Blobs, e.p.BlobBytes = start.Blobs, start.BlobBytes
	for i := start.Stream; i < len(streams); i++ {
		s := streams[i]
		var cursor []byte
		if i == start.Stream && len(start.Cursor) > 0 {
			cursor = start.Cursor
		}
		e.setStream(i, s.Name)
		if i == start.Stream && start.StreamRecords > 0 {
			e.mu.Lock()
			e.p.StreamRecords, e.p.PerStream[s.Name] = start.StreamRecords, start.StreamRecords
			e.mu.Unlock()
		}
		if err := s.Run(ctx, cursor, e); err != nil {
			if ctx.Err() != nil {
				return e.progress(), fmt.Errorf("export cancelled during %s: %w", s.Name, ctx.Err())
			}
			return e.progress(), fmt.Errorf("export %s: %w", s.Name, err)
		}
		e.mu.Lock()
		e.p.Done++
		e.finished = i + 1
		e.mu.Unlock()
		// A stream boundary is a natural resume point.
		e.mu.Lock()
		next := position{Stream: i + 1, Name: nameAt(streams, i+1), Records: e.p.Records, Blobs: e.p.Blobs, BlobBytes: e.p.BlobBytes}
		e.mu.Unlock()
		if err := e.checkpoint(next); err != nil {
			return e.progress(), err
		}
		e.report(true)
	}
	return e.progress(), nil
}

func nameAt(streams []source.Stream, i int) string {
	if i < len(streams) {
		return streams[i].Name
	}
	return ""
}

// run is the Sink the streams write into.
type run struct {
	w      *archive.Writer
	opts   Options
	mu     sync.Mutex
	p      Progress
	stream int
	counts []int64 // per stream (0: none)
	names  []string
	// finished streams come before this index (a resume starts there).
	finished int
	last     time.Time
}

func (e *run) setStream(i int, name string) {
	e.mu.Lock()
	e.stream, e.p.Stream = i, name
	e.p.StreamRecords, e.p.StreamTotal = 0, e.counts[i]
	e.mu.Unlock()
}

func (e *run) progress() Progress {
	e.mu.Lock()
	defer e.mu.Unlock()
	p := e.p
	p.PerStream = make(map[string]int64, len(e.p.PerStream))
	for k, v := range e.p.PerStream {
		p.PerStream[k] = v
	}
	p.StreamCounts = make([]StreamCount, len(e.names))
	for i, name := range e.names {
		p.StreamCounts[i] = StreamCount{Name: name, Records: e.p.PerStream[name], Total: e.counts[i],
			Done: i < e.finished}
	}
	return p
}

func (e *run) report(force bool) {
	if e.opts.OnProgress == nil {
		return
	}
	now := time.Now()
	if !force && now.Sub(e.last) < e.opts.Interval {
		return
	}
	e.last = now
	e.opts.OnProgress(e.progress())
}

func (e *run) count(blob int64) {
	e.mu.Lock()
	if blob >= 0 {
		e.p.Blobs++
		e.p.BlobBytes += blob
	} else {
		e.p.Records++
		e.p.StreamRecords++
		e.p.PerStream[e.p.Stream]++
	}
	e.mu.Unlock()
	e.report(false)
}

func (e *run) Record(section string, rec any) error {
	if err := e.w.Add(section, rec); err != nil {
		return err
	}
	e.count(-1)
	return nil
}

func (e *run) Blob(path string, size int64, r io.Reader) (string, error) {
	sum, err := e.w.AddBlob(path, size, r)
	if err != nil {
		return "", err
	}
	e.count(size)
	return sum, nil
}

func (e *run) File(path string, data []byte, records int64, sensitive []string) error {
	for _, s := range sensitive {
		if err := e.w.MarkSensitive(s); err != nil {
			return err
		}
	}
	return e.w.AddFile(path, data, records)
}

func (e *run) Omit(o archive.Omission) error {
	if err := e.w.Add(archive.SectionOmissions, &o); err != nil {
		return err
	}
	e.mu.Lock()
	e.p.Omissions++
	e.mu.Unlock()
	return nil
}

// Checkpoint builds the exporter's position around the stream's cursor
// only when the writer will checkpoint: streams call it after every
// record.
func (e *run) Checkpoint(cursor []byte) error {
	if !e.w.CheckpointDue() {
		return nil
	}
	e.mu.Lock()
	pos := position{Stream: e.stream, Name: e.p.Stream, Cursor: json.RawMessage(cursor),
		Records: e.p.Records, StreamRecords: e.p.StreamRecords, Blobs: e.p.Blobs, BlobBytes: e.p.BlobBytes}
	e.mu.Unlock()
	b, err := json.Marshal(pos)
	if err != nil {
		return err
	}
	_, err = e.w.MaybeCheckpoint(b)
	return err
}

// checkpoint forces a resumable point (at a stream boundary) only when the
// part has grown past its size, like Checkpoint.
func (e *run) checkpoint(pos position) error {
	b, err := json.Marshal(pos)
	if err != nil {
		return err
	}
	_, err = e.w.MaybeCheckpoint(b)
	return err
}
