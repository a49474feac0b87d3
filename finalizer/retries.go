package finalizer

import (
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
)

// retries paces the steps of one pod that failed and are tried again (a
// cleanup POST, an Event write), per pod and step, with client-go's
// per-item exponential rate limiter. It also remembers when a step first
// failed, which bounds how long a transiently refused Event is retried before
// the record goes to the log instead, and which records already went there.
// It is only pacing: losing it on restart means one early retry; every
// deadline that must hold across restarts (give-up) derives from the pod's
// deletionTimestamp.
type retries struct {
	limiter workqueue.TypedRateLimiter[stepKey]
	mu      sync.Mutex
	pods    map[types.NamespacedName]*podSteps
}

type stepKey struct {
	uid  types.UID
	step string
}

type podSteps struct {
	uid   types.UID
	steps map[string]*stepState
}

type stepState struct {
	first, next time.Time
	// logged: the record this step writes already went to the log.
	logged bool
}

func newRetries(base, max time.Duration) *retries {
	return &retries{
		limiter: workqueue.NewTypedItemExponentialFailureRateLimiter[stepKey](base, max),
		pods:    map[types.NamespacedName]*podSteps{},
	}
}

// state returns the step's state, creating it (and dropping what belonged to
// an earlier pod of the same name) when create is set. Call with mu held.
func (r *retries) state(key types.NamespacedName, uid types.UID, step string, create bool) *stepState {
	p := r.pods[key]
	if p == nil || p.uid != uid {
		if !create {
			return nil
		}
		if p != nil {
			r.forget(p)
		}
		p = &podSteps{uid: uid, steps: map[string]*stepState{}}
		r.pods[key] = p
	}
	s := p.steps[step]
	if s == nil && create {
		s = &stepState{}
		p.steps[step] = s
	}
	return s
}

// due returns when the step may be tried again (zero: now).
func (r *retries) due(key types.NamespacedName, uid types.UID, step string) time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	if s := r.state(key, uid, step, false); s != nil {
		return s.next
	}
	return time.Time{}
}

// failed records a failure at now; it returns the delay until the next try
// and when the step first failed.
func (r *retries) failed(key types.NamespacedName, uid types.UID, step string, now time.Time) (delay time.Duration, first time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.state(key, uid, step, true)
	if s.first.IsZero() {
		s.first = now
	}
	delay = r.limiter.When(stepKey{uid, step})
	s.next = now.Add(delay)
	return delay, s.first
}

// markLogged records that the step's record went to the log; it reports
// whether it had already (so a retried finalizer patch logs it once).
func (r *retries) markLogged(key types.NamespacedName, uid types.UID, step string) (already bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.state(key, uid, step, true)
	already, s.logged = s.logged, true
	return already
}

// done forgets the named steps (none: the whole pod).
func (r *retries) done(key types.NamespacedName, steps ...string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	p := r.pods[key]
	if p == nil {
		return
	}
	if len(steps) == 0 {
		r.forget(p)
		delete(r.pods, key)
		return
	}
	for _, s := range steps {
		r.limiter.Forget(stepKey{p.uid, s})
		delete(p.steps, s)
	}
	if len(p.steps) == 0 {
		delete(r.pods, key)
	}
}

func (r *retries) forget(p *podSteps) {
	for s := range p.steps {
		r.limiter.Forget(stepKey{p.uid, s})
	}
}
