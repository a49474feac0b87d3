package webhook

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/manager"

	"github.com/gracekeeper/gracekeeper/policies"
	"github.com/gracekeeper/gracekeeper/policies/v1alpha1"
)

// StoreConfig configures a PolicyStore.
type StoreConfig struct {
	// Engine is passed to policies.NewSet (excluded namespaces).
	Engine policies.Config
	// Debounce batches bursts of policy events into one rebuild (default
	// 300ms): `kubectl apply -f library/` should compile once, not N times.
	Debounce time.Duration
	// WriteStatus makes the store write each policy's status (only while
	// this replica leads, so replicas do not fight over it).
	WriteStatus bool
	// Namespaces bounds the live reads of namespaces the cache lacks.
	Namespaces NamespaceLookupConfig
}

// Condition written to LifecyclePolicy status.
const (
	ConditionReady = "Ready"
	ReasonCompiled = "Compiled"
	ReasonInvalid  = "Invalid"
)

// PolicyStore is the Source the server reads in a cluster: the compiled
// policy set, rebuilt from the manager's informer cache whenever a
// LifecyclePolicy is created, changed or deleted (within Debounce plus
// watch latency: seconds, no restart), and namespace labels from the same
// cache. It is a manager.Runnable that runs on every replica.
//
// Rebuilds go through a client-go rate-limiting work queue holding one key:
// an event adds the key after Debounce, and the queue keeps the earliest
// pending time and never holds the key twice, so a burst of events is one
// rebuild; a failed rebuild is retried with the queue's per-item backoff.
type PolicyStore struct {
	cfg   StoreConfig
	log   logr.Logger
	set   atomic.Pointer[policies.Set]
	queue workqueue.TypedRateLimitingInterface[string]

	cache   cache.Cache
	client  client.Client // status writes
	ns      *NamespaceLookup
	elected <-chan struct{}
}

// NewPolicyStore returns a store; call SetupWithManager before the manager starts.
func NewPolicyStore(cfg StoreConfig, lg logr.Logger) *PolicyStore {
	if cfg.Debounce <= 0 {
		cfg.Debounce = 300 * time.Millisecond
	}
	q := workqueue.NewTypedRateLimitingQueueWithConfig(
		workqueue.NewTypedItemExponentialFailureRateLimiter[string](cfg.Debounce, 30*time.Second),
		workqueue.TypedRateLimitingQueueConfig[string]{Name: "gracekeeper_policy_store"})
	return &PolicyStore{cfg: cfg, log: lg, queue: q}
}

// rebuildKey is the queue's only item: every event asks for the same rebuild.
const rebuildKey = "rebuild"

// SetupWithManager registers the informers (LifecyclePolicy, Namespace) and
// adds the store to the manager. The manager's scheme must know v1alpha1.
func (p *PolicyStore) SetupWithManager(mgr manager.Manager) error {
	p.cache, p.client, p.elected = mgr.GetCache(), mgr.GetClient(), mgr.Elected()
	p.ns = NewNamespaceLookup(p.cfg.Namespaces, p.cache, mgr.GetAPIReader())
	ctx := context.Background()
	inf, err := p.cache.GetInformer(ctx, &v1alpha1.LifecyclePolicy{})
	if err != nil {
		return fmt.Errorf("LifecyclePolicy informer: %w", err)
	}
	if _, err := inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc: func(any) { p.trigger() },
		UpdateFunc: func(o, n any) {
			// Our own status writes (and resyncs) keep the generation.
			if oo, ok := o.(metav1.Object); ok {
				if no, ok := n.(metav1.Object); ok && oo.GetGeneration() == no.GetGeneration() {
					return
				}
			}
			p.trigger()
		},
		DeleteFunc: func(any) { p.trigger() },
	}); err != nil {
		return err
	}
	if _, err := p.cache.GetInformer(ctx, &corev1.Namespace{}); err != nil {
		return fmt.Errorf("Namespace informer: %w", err)
	}
	return mgr.Add(p)
}

// trigger asks for a rebuild after Debounce.
func (p *PolicyStore) trigger() { p.queue.AddAfter(rebuildKey, p.cfg.Debounce) }

// NeedLeaderElection is false: every replica needs the policies.
func (p *PolicyStore) NeedLeaderElection() bool { return false }

// Set is the current compiled set; nil until the cache has synced.
func (p *PolicyStore) Set() *policies.Set { return p.set.Load() }

// Ready reports whether the first set has been built.
func (p *PolicyStore) Ready() bool { return p.Set() != nil }

// Namespace reads the namespace's labels from the cache; one the cache
// has not seen yet costs at most one coalesced live read per interval
// (NamespaceLookup).
func (p *PolicyStore) Namespace(ctx context.Context, name string) (policies.Namespace, error) {
	return p.ns.Namespace(ctx, name)
}

// Start waits for the cache, builds the first set, then rebuilds on every
// (debounced) policy event until ctx ends.
func (p *PolicyStore) Start(ctx context.Context) error {
	defer p.queue.ShutDown()
	if !p.cache.WaitForCacheSync(ctx) {
		return fmt.Errorf("policy cache did not sync")
	}
	if err := p.rebuild(ctx); err != nil {
		return err
	}
	go func() {
		select {
		case <-ctx.Done():
		case <-p.elected:
			// Status waits for leadership; rebuild once elected so the
			// leader writes what it sees.
			p.queue.Add(rebuildKey)
		}
	}()
	go func() {
		<-ctx.Done()
		p.queue.ShutDown()
	}()
	for {
		key, quit := p.queue.Get()
		if quit {
			return nil
		}
		if err := p.rebuild(ctx); err != nil {
			p.log.Error(err, "rebuilding the policy set")
			p.queue.AddRateLimited(key)
		} else {
			p.queue.Forget(key)
		}
		p.queue.Done(key)
	}
}

func (p *PolicyStore) rebuild(ctx context.Context) error {
	var list v1alpha1.LifecyclePolicyList
	if err := p.cache.List(ctx, &list); err != nil {
		return fmt.Errorf("listing LifecyclePolicies: %w", err)
	}
	set, findings := policies.NewSet(p.cfg.Engine, list.Items)
	p.set.Store(set)
	p.log.Info("policy set rebuilt", "policies", set.Len(), "invalid", len(findings))
	if !p.cfg.WriteStatus || !isClosed(p.elected) {
		return nil
	}
	invalid := map[string]string{}
	for _, f := range findings {
		if f.Reason == policies.ReasonInvalidPolicy {
			invalid[f.Policy] = f.Message
		}
	}
	for i := range list.Items {
		if err := p.writeStatus(ctx, &list.Items[i], invalid); err != nil {
			p.log.Error(err, "writing policy status", "policy", list.Items[i].Name)
		}
	}
	return nil
}

func (p *PolicyStore) writeStatus(ctx context.Context, pol *v1alpha1.LifecyclePolicy, invalid map[string]string) error {
	cond := metav1.Condition{Type: ConditionReady, Status: metav1.ConditionTrue, Reason: ReasonCompiled,
		Message: "compiled and in use", ObservedGeneration: pol.Generation}
	if msg, bad := invalid[pol.Name]; bad {
		cond.Status, cond.Reason, cond.Message = metav1.ConditionFalse, ReasonInvalid, msg
	}
	updated := pol.DeepCopy()
	updated.Status.ObservedGeneration = pol.Generation
	changed := apimeta.SetStatusCondition(&updated.Status.Conditions, cond)
	if !changed && pol.Status.ObservedGeneration == pol.Generation {
		return nil
	}
	return p.client.Status().Patch(ctx, updated, client.MergeFrom(pol))
}

func isClosed(c <-chan struct{}) bool {
	if c == nil {
		return false
	}
	select {
	case <-c:
		return true
	default:
		return false
	}
}
