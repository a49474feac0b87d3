package webhook

import (
	"context"
	"fmt"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"
	"golang.org/x/time/rate"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/utils/clock"
	"k8s.io/utils/lru"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/gracekeeper/gracekeeper/internal/defaults"
	"github.com/gracekeeper/gracekeeper/policies"
)

// NamespaceLookupConfig bounds what reviews naming namespaces the informer
// cache does not hold can cost the API server.
type NamespaceLookupConfig struct {
	// Interval is how long a live read's answer (labels, or "no such
	// namespace") is reused for a name the cache still lacks (default 10s).
	Interval time.Duration
	// Remember is how many such answers are kept, least recently used
	// dropped first (default 1024).
	Remember int
	// ReadsPerSecond and Burst bound live reads across all names (defaults
	// 5 and 20); a miss beyond them is answered with an error, so the
	// webhook's failurePolicy decides, never judged with guessed labels.
	ReadsPerSecond float64
	Burst          int
	// Clock is for tests (default the real clock).
	Clock clock.PassiveClock
}

func (c NamespaceLookupConfig) withDefaults() NamespaceLookupConfig {
	defaults.Positive(&c.Interval, 10*time.Second)
	defaults.Positive(&c.Remember, 1024)
	defaults.Positive(&c.ReadsPerSecond, 5)
	defaults.Positive(&c.Burst, 20)
	if c.Clock == nil {
		c.Clock = clock.RealClock{}
	}
	return c
}

// NamespaceLookup gives a namespace's labels from the informer cache. The
// cache lacks a namespace only in the moment between its creation and the
// watch event (milliseconds), or when the name is made up; then at most one
// live read per name per Interval is made, concurrent reviews of the same
// name share it (singleflight), its answer is remembered in a bounded LRU,
// and live reads overall are rate limited. So a pod created right after its
// namespace is judged with the namespace's labels, and any number of
// reviews naming made-up namespaces costs the API server a bounded number
// of reads.
type NamespaceLookup struct {
	cfg   NamespaceLookupConfig
	cache client.Reader
	live  client.Reader

	group   singleflight.Group
	limiter *rate.Limiter
	mu      sync.Mutex // recent's entries are read-modify-written
	recent  *lru.Cache // name -> lookedUp
}

type lookedUp struct {
	at     time.Time
	labels map[string]string // nil with found false: no such namespace
	found  bool
}

// NewNamespaceLookup reads from cache first and from live on a miss.
func NewNamespaceLookup(cfg NamespaceLookupConfig, cache, live client.Reader) *NamespaceLookup {
	cfg = cfg.withDefaults()
	return &NamespaceLookup{
		cfg: cfg, cache: cache, live: live,
		limiter: rate.NewLimiter(rate.Limit(cfg.ReadsPerSecond), cfg.Burst),
		recent:  lru.New(cfg.Remember),
	}
}

// Namespace returns the namespace's name and labels.
func (n *NamespaceLookup) Namespace(ctx context.Context, name string) (policies.Namespace, error) {
	var ns corev1.Namespace
	err := n.cache.Get(ctx, client.ObjectKey{Name: name}, &ns)
	if err == nil {
		return policies.Namespace{Name: ns.Name, Labels: ns.Labels}, nil
	}
	if !apierrors.IsNotFound(err) {
		return policies.Namespace{Name: name}, err
	}
	now := n.cfg.Clock.Now()
	if l, ok := n.remembered(name, now); ok {
		return l.namespace(name), nil
	}
	v, err, _ := n.group.Do(name, func() (any, error) {
		// A caller that waited on an earlier flight may find it answered.
		if l, ok := n.remembered(name, n.cfg.Clock.Now()); ok {
			return l, nil
		}
		if !n.limiter.Allow() {
			return nil, fmt.Errorf("namespace %q is not in the informer cache yet and live reads are over their rate limit (%g/s); try again", name, n.cfg.ReadsPerSecond)
		}
		var live corev1.Namespace
		err := n.live.Get(ctx, client.ObjectKey{Name: name}, &live)
		l := lookedUp{at: n.cfg.Clock.Now()}
		switch {
		case err == nil:
			l.labels, l.found = live.Labels, true
		case apierrors.IsNotFound(err):
			// The API server refuses objects in a missing namespace
			// (NamespaceLifecycle admission); judge with no labels.
		default:
			return nil, err
		}
		n.mu.Lock()
		n.recent.Add(name, l)
		n.mu.Unlock()
		return l, nil
	})
	if err != nil {
		return policies.Namespace{Name: name}, err
	}
	return v.(lookedUp).namespace(name), nil
}

func (n *NamespaceLookup) remembered(name string, now time.Time) (lookedUp, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	v, ok := n.recent.Get(name)
	if !ok {
		return lookedUp{}, false
	}
	l := v.(lookedUp)
	if now.Sub(l.at) >= n.cfg.Interval {
		n.recent.Remove(name)
		return lookedUp{}, false
	}
	return l, true
}

func (l lookedUp) namespace(name string) policies.Namespace {
	return policies.Namespace{Name: name, Labels: l.labels}
}
