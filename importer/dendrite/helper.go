package dendrite

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"

	"github.com/rs/zerolog"

	"github.com/ferry-matrix/ferry/importer/dendrite/wire"
)

// HelperName is the import helper's binary (tools/dendrite/importhelper,
// built against Dendrite v0.15.2 in its own module).
const HelperName = "ferry-dendrite-import"

// FindHelper locates the helper: an explicit path, then $FERRY_DENDRITE_IMPORT,
// then beside the running binary, then $FERRY_DENDRITE_DIR, then $PATH.
func FindHelper(explicit string) (string, error) {
	candidates := []string{explicit, os.Getenv("FERRY_DENDRITE_IMPORT")}
	if exe, err := os.Executable(); err == nil {
		candidates = append(candidates, filepath.Join(filepath.Dir(exe), HelperName))
	}
	if d := os.Getenv("FERRY_DENDRITE_DIR"); d != "" {
		candidates = append(candidates, filepath.Join(d, HelperName))
	}
	for _, c := range candidates {
		if c == "" {
			continue
		}
		if st, err := os.Stat(c); err == nil && !st.IsDir() {
			return c, nil
		}
	}
	if p, err := exec.LookPath(HelperName); err == nil {
		return p, nil
	}
	return "", fmt.Errorf("the Dendrite import helper %q was not found (give --helper, set FERRY_DENDRITE_IMPORT, or build it: cd tools/dendrite && go build -o %s ./importhelper)", HelperName, HelperName)
}

// helper is a running import helper.
type helper struct {
	cmd    *exec.Cmd
	in     io.WriteCloser
	enc    *json.Encoder
	out    *bufio.Scanner
	stderr *tailBuffer
	waited chan error
	log    *zerolog.Logger // the helper's own lines ("waiting for ...")
}

// startHelper starts the import helper; its own lines go to the context's
// logger (component dendrite-import).
func startHelper(ctx context.Context, bin, configPath string) (*helper, error) {
	args := []string{"-config", configPath}
	if p := os.Getenv("FERRY_HELPER_CPUPROFILE"); p != "" { // investigations
		args = append(args, "-cpuprofile", p)
	}
	cmd := exec.CommandContext(ctx, bin, args...)
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	h := &helper{cmd: cmd, in: in, enc: json.NewEncoder(in), out: bufio.NewScanner(out), stderr: &tailBuffer{max: 8 << 10}, waited: make(chan error, 1)}
	log := zerolog.Ctx(ctx).With().Str("component", "dendrite-import").Logger()
	h.log = &log
	h.out.Buffer(make([]byte, 64<<10), 16<<20)
	cmd.Stderr = h.stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", bin, err)
	}
	return h, nil
}

// call sends one request and reads its answer, logging the Log lines
// before it.
func (h *helper) call(req *wire.Request) (*wire.Response, error) {
	if err := h.enc.Encode(req); err != nil {
		return nil, h.died(err)
	}
	var res wire.Response
	for {
		if !h.out.Scan() {
			return nil, h.died(h.out.Err())
		}
		res = wire.Response{}
		if err := json.Unmarshal(h.out.Bytes(), &res); err != nil {
			return nil, fmt.Errorf("import helper: bad answer %q: %w", h.out.Text(), err)
		}
		if res.Log == "" {
			break
		}
		h.log.Info().Msg(res.Log)
	}
	if !res.OK {
		return &res, errors.New(res.Error)
	}
	return &res, nil
}

// died explains a broken pipe with the helper's own last words.
func (h *helper) died(err error) error {
	werr := h.wait()
	msg := strings.TrimSpace(h.stderr.String())
	if msg == "" {
		msg = fmt.Sprint(err)
	}
	return fmt.Errorf("the Dendrite import helper stopped (%v): %s", werr, msg)
}

func (h *helper) wait() error {
	select {
	case err := <-h.waited:
		h.waited <- err
		return err
	default:
	}
	err := h.cmd.Wait()
	h.waited <- err
	return err
}

// close ends the input and waits for the helper to shut Dendrite down.
func (h *helper) close() error {
	h.in.Close()
	if err := h.wait(); err != nil {
		return fmt.Errorf("the Dendrite import helper failed on shutdown (%v): %s", err, strings.TrimSpace(h.stderr.String()))
	}
	return nil
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
	max int
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf.Write(p)
	if extra := t.buf.Len() - t.max; extra > 0 {
		t.buf.Next(extra)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.buf.String()
}
