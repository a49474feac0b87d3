package webhook

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr/funcr"
	"sigs.k8s.io/controller-runtime/pkg/cache/informertest"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// listCounter is a fake cache that counts Lists (one per rebuild) and fails
// the first failures of them.
type listCounter struct {
	informertest.FakeInformers
	lists    atomic.Int32
	failures atomic.Int32
}

func (c *listCounter) List(ctx context.Context, list client.ObjectList, opts ...client.ListOption) error {
	c.lists.Add(1)
	if c.failures.Add(-1) >= 0 {
		return errors.New("injected list failure")
	}
	return nil
}

// startQueueStore runs a store over a fake cache and returns it, the cache
// and a func that reads its log.
func startQueueStore(t *testing.T, debounce time.Duration, failures int32) (*PolicyStore, *listCounter, func() string) {
	t.Helper()
	var (
		mu  sync.Mutex
		buf strings.Builder
	)
	lg := funcr.NewJSON(func(s string) { mu.Lock(); buf.WriteString(s + "\n"); mu.Unlock() }, funcr.Options{})
	p := NewPolicyStore(StoreConfig{Debounce: debounce}, lg)
	fc := &listCounter{}
	fc.failures.Store(failures)
	p.cache = fc
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Start(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Start: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Start did not return after its context ended")
		}
	})
	return p, fc, func() string { mu.Lock(); defer mu.Unlock(); return buf.String() }
}

// TestStoreDebounce: a burst of policy events is one rebuild, not one per
// event; a later event is another.
func TestStoreDebounce(t *testing.T) {
	p, fc, _ := startQueueStore(t, 500*time.Millisecond, 0)
	eventually(t, "first set built", func() (bool, string) { return p.Ready(), "not ready" })
	if n := fc.lists.Load(); n != 1 {
		t.Fatalf("lists after start = %d, want 1", n)
	}
	for range 200 {
		p.trigger()
	}
	eventually(t, "one rebuild for the burst", func() (bool, string) { n := fc.lists.Load(); return n >= 2, fmt.Sprint(n) })
	time.Sleep(1500 * time.Millisecond) // three debounce periods: nothing else is due
	if n := fc.lists.Load(); n != 2 {
		t.Fatalf("a burst of 200 events made %d rebuilds, want 1", n-1)
	}
	p.trigger()
	eventually(t, "a later event rebuilds again", func() (bool, string) { n := fc.lists.Load(); return n == 3, fmt.Sprint(n) })
}

// TestStoreRetriesFailedRebuild: a rebuild that fails is retried by the
// queue's backoff without another event, and the error is logged.
func TestStoreRetriesFailedRebuild(t *testing.T) {
	p, fc, logs := startQueueStore(t, 20*time.Millisecond, 0)
	eventually(t, "first set built", func() (bool, string) { return p.Ready(), "not ready" })
	fc.failures.Store(2)
	p.trigger()
	eventually(t, "retried until it succeeds", func() (bool, string) {
		return fc.lists.Load() == 4 && fc.failures.Load() < 0, fmt.Sprint(fc.lists.Load())
	})
	if got := strings.Count(logs(), "rebuilding the policy set"); got != 2 {
		t.Errorf("%d failure lines logged, want 2:\n%s", got, logs())
	}
}
