package webhookconfig

import (
	"context"
	"fmt"
	"time"

	"github.com/go-logr/logr"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/gracekeeper/gracekeeper/policies"
	"github.com/gracekeeper/gracekeeper/policies/v1alpha1"
)

// Options configure the narrowing controller.
type Options struct {
	// MutatingName and ValidatingName are the chart's webhook
	// configurations; an empty name is left alone.
	MutatingName, ValidatingName string
	// Engine is the engine's exclusions, which every narrowed
	// namespaceSelector keeps (as the chart renders them).
	Engine policies.Config
}

// CacheByObject limits the manager's cache to the two named configurations
// (a field selector on metadata.name), which is also what lets the chart
// grant list and watch on them by resourceNames alone. Merge it into
// manager.Options.Cache.ByObject.
func (o Options) CacheByObject() map[client.Object]cache.ByObject {
	out := map[client.Object]cache.ByObject{}
	if o.MutatingName != "" {
		out[&admissionregistrationv1.MutatingWebhookConfiguration{}] = cache.ByObject{
			Field: fields.OneTermEqualSelector("metadata.name", o.MutatingName)}
	}
	if o.ValidatingName != "" {
		out[&admissionregistrationv1.ValidatingWebhookConfiguration{}] = cache.ByObject{
			Field: fields.OneTermEqualSelector("metadata.name", o.ValidatingName)}
	}
	return out
}

// Reconciler keeps the pod webhooks of the named configurations narrowed to
// what the current LifecyclePolicies can select (Compute). It runs on the
// leader only; when it does not run, the configurations keep the last
// narrowing written, which covers every pod the policies of that moment
// select, or the chart's unnarrowed superset on a fresh install. It writes
// only when the computed configuration differs from the stored one, with
// the stored resourceVersion, so a concurrent caBundle write by the
// certificate rotator or cert-manager makes it retry rather than lose that.
type Reconciler struct {
	opts   Options
	client client.Client
	log    logr.Logger
}

// key is the one item every event enqueues: any change recomputes both.
var key = reconcile.Request{NamespacedName: types.NamespacedName{Name: "webhook-narrowing"}}

// Setup adds the controller to mgr (leader-only, as every
// controller-runtime controller is by default). Its informers on the two
// configurations start with it, so only the leader watches them.
func Setup(mgr manager.Manager, o Options, lg logr.Logger) error {
	if o.MutatingName == "" && o.ValidatingName == "" {
		return fmt.Errorf("webhook narrowing needs the webhook configuration names")
	}
	r := &Reconciler{opts: o, client: mgr.GetClient(), log: lg}
	one := handler.EnqueueRequestsFromMapFunc(func(context.Context, client.Object) []reconcile.Request {
		return []reconcile.Request{key}
	})
	b := builder.ControllerManagedBy(mgr).Named("webhook-narrowing").
		// Status writes keep the generation; only spec changes matter here.
		Watches(&v1alpha1.LifecyclePolicy{}, one, builder.WithPredicates(predicate.GenerationChangedPredicate{}))
	if o.MutatingName != "" {
		b = b.Watches(&admissionregistrationv1.MutatingWebhookConfiguration{}, one)
	}
	if o.ValidatingName != "" {
		b = b.Watches(&admissionregistrationv1.ValidatingWebhookConfiguration{}, one)
	}
	return b.Complete(r)
}

// Reconcile recomputes the narrowing and writes each configuration that
// differs from it.
func (r *Reconciler) Reconcile(ctx context.Context, _ reconcile.Request) (reconcile.Result, error) {
	var list v1alpha1.LifecyclePolicyList
	if err := r.client.List(ctx, &list); err != nil {
		return reconcile.Result{}, fmt.Errorf("listing LifecyclePolicies: %w", err)
	}
	n := Compute(list.Items)
	if name := r.opts.MutatingName; name != "" {
		cfg := &admissionregistrationv1.MutatingWebhookConfiguration{}
		if err := r.sync(ctx, "MutatingWebhookConfiguration", name, cfg, func() bool { return NarrowMutating(cfg, n, r.opts.Engine) }, len(list.Items)); err != nil {
			return reconcile.Result{}, err
		}
	}
	if name := r.opts.ValidatingName; name != "" {
		cfg := &admissionregistrationv1.ValidatingWebhookConfiguration{}
		if err := r.sync(ctx, "ValidatingWebhookConfiguration", name, cfg, func() bool { return NarrowValidating(cfg, n, r.opts.Engine) }, len(list.Items)); err != nil {
			return reconcile.Result{}, err
		}
	}
	return reconcile.Result{}, nil
}

// sync reads the configuration called name into cfg, narrows it and writes
// it back only when narrow changed it. A configuration not there (not
// installed yet, or uninstalled) is left alone: its creation is an event.
func (r *Reconciler) sync(ctx context.Context, kind, name string, cfg client.Object, narrow func() bool, policies int) error {
	if err := r.client.Get(ctx, client.ObjectKey{Name: name}, cfg); err != nil {
		return client.IgnoreNotFound(err)
	}
	if !narrow() {
		return nil
	}
	if err := r.client.Update(ctx, cfg); err != nil {
		return fmt.Errorf("narrowing %s %s: %w", kind, name, err)
	}
	r.log.Info("webhook configuration written", "configuration", kind+"/"+name, "policies", policies)
	return nil
}

// Widen puts the named configurations back to what the chart renders (the
// exclusions only, no condition of this package), once, and retries until it
// has or ctx ends. Run on the leader when narrowing is off: Helm keeps
// fields its templates never set, so without it a narrowing written before
// would outlive the controller that kept it current, and a policy created
// afterwards would never be called.
func Widen(ctx context.Context, c client.Client, o Options, lg logr.Logger) error {
	r := &Reconciler{opts: o, client: c, log: lg}
	for {
		err := r.widen(ctx)
		if err == nil {
			return nil
		}
		lg.Error(err, "restoring the unnarrowed webhook configurations; retrying")
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(10 * time.Second):
		}
	}
}

func (r *Reconciler) widen(ctx context.Context) error {
	var none Narrowing // no narrowing: the chart's superset
	if name := r.opts.MutatingName; name != "" {
		cfg := &admissionregistrationv1.MutatingWebhookConfiguration{}
		if err := r.sync(ctx, "MutatingWebhookConfiguration", name, cfg, func() bool { return NarrowMutating(cfg, none, r.opts.Engine) }, 0); err != nil {
			return err
		}
	}
	if name := r.opts.ValidatingName; name != "" {
		cfg := &admissionregistrationv1.ValidatingWebhookConfiguration{}
		if err := r.sync(ctx, "ValidatingWebhookConfiguration", name, cfg, func() bool { return NarrowValidating(cfg, none, r.opts.Engine) }, 0); err != nil {
			return err
		}
	}
	return nil
}
