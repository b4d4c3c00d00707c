package main

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// These tests run drain against a real JetStream (the NATS server Dendrite
// embeds, on disk in a temporary directory), with short limits.
var testLimits = drainLimits{Idle: time.Second, Busy: 2 * time.Second, Progress: 500 * time.Millisecond, Poll: 50 * time.Millisecond}

// jetStream starts an in-process NATS server with JetStream on disk, as
// Dendrite does, and returns a stream "S" (interest retention, as all of
// Dendrite's) with a durable pull consumer per name.
func jetStream(t *testing.T, consumers ...string) nats.JetStreamContext {
	t.Helper()
	s, err := natsserver.NewServer(&natsserver.Options{DontListen: true, JetStream: true, StoreDir: t.TempDir(), NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(30 * time.Second) {
		t.Fatal("NATS did not start")
	}
	t.Cleanup(s.Shutdown)
	nc, err := nats.Connect("", nats.InProcessServer(s))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := nc.JetStream()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.AddStream(&nats.StreamConfig{Name: "S", Subjects: []string{"S"}, Retention: nats.InterestPolicy, Storage: nats.FileStorage}); err != nil {
		t.Fatal(err)
	}
	for _, c := range consumers {
		if _, err := js.AddConsumer("S", &nats.ConsumerConfig{Durable: c, AckPolicy: nats.AckExplicitPolicy}); err != nil {
			t.Fatal(err)
		}
	}
	return js
}

func publish(t *testing.T, js nats.JetStreamContext, n int) {
	t.Helper()
	for i := range n {
		if _, err := js.Publish("S", []byte(fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
	}
	// The server counts a consumer's pending messages a moment after the
	// publish is acknowledged (seen on a loaded machine): the tests start
	// from every consumer seeing all n.
	for try := 0; try < 100; try++ {
		behind := false
		for info := range js.Consumers("S") {
			if info.NumPending+uint64(info.NumAckPending) < uint64(n) {
				behind = true
			}
		}
		if !behind {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("the consumers of S never counted the %d messages published", n)
}

// drainWith runs drain with the test limits, collecting what it says. The
// deadline only keeps a drain that never ends from blocking the test.
func drainWith(t *testing.T, js nats.JetStreamContext) (said []string, err error) {
	t.Helper()
	var mu sync.Mutex
	h := &helper{js: js, say: func(s string) { mu.Lock(); said = append(said, s); mu.Unlock() }}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	started := time.Now()
	err = h.drain(ctx, testLimits)
	t.Logf("drain returned after %s: %v", time.Since(started).Round(10*time.Millisecond), err)
	if ctx.Err() != nil {
		t.Fatal("drain did not notice that it cannot progress")
	}
	return said, err
}

// A consumer that nobody in the process reads (a component the helper does
// not run) makes the drain fail at once, naming it and its backlog, and
// saying what to do.
func TestDrainNamesAConsumerNobodyReads(t *testing.T) {
	js := jetStream(t, "NobodyReadsMe")
	publish(t, js, 100)
	_, err := drainWith(t, js)
	if err == nil {
		t.Fatal("drain succeeded with 100 messages unread")
	}
	for _, want := range []string{"NobodyReadsMe", "stream S", "100 messages pending", "does not run", "run the import again"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the error lacks %q: %v", want, err)
		}
	}
}

// A consumer that holds a message and never finishes it is named too.
func TestDrainNamesAStuckConsumer(t *testing.T) {
	js := jetStream(t, "Stuck")
	publish(t, js, 10)
	sub, err := js.PullSubscribe("S", "Stuck", nats.Bind("S", "Stuck"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sub.Fetch(1); err != nil { // taken, never acknowledged
		t.Fatal(err)
	}
	_, err = drainWith(t, js)
	if err == nil || !strings.Contains(err.Error(), "Stuck") || !strings.Contains(err.Error(), "10 messages pending") || !strings.Contains(err.Error(), "1 in progress") {
		t.Fatalf("drain with a stuck consumer: %v", err)
	}
}

// A consumer that is slow but moves is waited for, with progress lines that
// name it, until it has read everything.
func TestDrainWaitsForASlowConsumer(t *testing.T) {
	js := jetStream(t, "Slow")
	publish(t, js, 60)
	sub, err := js.PullSubscribe("S", "Slow", nats.Bind("S", "Slow"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	go func() {
		for ctx.Err() == nil {
			msgs, err := sub.Fetch(1, nats.Context(ctx))
			if err != nil {
				continue
			}
			time.Sleep(30 * time.Millisecond) // 60 messages: about 2 s, longer than the idle and busy limits
			msgs[0].AckSync()
		}
	}()
	said, err := drainWith(t, js)
	if err != nil {
		t.Fatalf("drain gave up on a consumer that moves: %v", err)
	}
	if len(said) == 0 || !strings.Contains(said[0], "Slow") || !strings.Contains(said[0], "messages pending") {
		t.Errorf("no progress line naming the consumer: %q", said)
	}
	for _, s := range said {
		t.Log(s)
	}
}
