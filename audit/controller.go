package audit

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/flowcontrol"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/manager"

	orv1 "github.com/openreports/reports-api/apis/openreports.io/v1alpha1"

	"github.com/gracekeeper/gracekeeper/internal/defaults"
	"github.com/gracekeeper/gracekeeper/policies"
	"github.com/gracekeeper/gracekeeper/policies/v1alpha1"
)

// Policies is where the audit gets the compiled policy set and namespace
// labels: the webhook's PolicyStore, so the audit judges with exactly the
// set admission uses.
type Policies interface {
	Set() *policies.Set
	Namespace(ctx context.Context, name string) (policies.Namespace, error)
}

// Options configure the background audit.
type Options struct {
	// Interval is the period of a full pass over every namespace, besides
	// the passes that policy and object changes trigger; 0 leaves only those.
	Interval time.Duration
	// Settle batches changes: a pass runs at most this often (default 2s).
	Settle time.Duration
	// WritesPerSecond and WriteBurst bound API writes (reports, status,
	// Events) with a token bucket (defaults 5 and 10).
	WritesPerSecond float64
	WriteBurst      int
	// MaxResults bounds one report's results (default DefaultMaxResults).
	MaxResults int
	// Excluded namespaces are not audited (admission never sees them).
	Excluded []string
	// Reports writes openreports.io Reports when their CRD is installed.
	Reports bool
	// Events records a Warning Event on a workload whose pods a Deny policy
	// would refuse.
	Events bool
	// Registerer receives the audit metrics (nil: not exported).
	Registerer prometheus.Registerer
}

// reportGK is the openreports.io Report the audit writes.
var reportGK = schema.GroupKind{Group: orv1.SchemeGroupVersion.Group, Kind: "Report"}

// Auditor is the background audit: a manager Runnable that runs only on
// the leader, with its own informers (started on election, stripped by
// strip), judging every pod and workload with the store's policy set.
type Auditor struct {
	opts     Options
	log      logr.Logger
	store    Policies
	client   client.Client // writes: reports, policy status, Events
	reader   client.Reader // uncached reads of what we wrote
	mapper   meta.RESTMapper
	newCache func() (cache.Cache, error)
	excluded map[string]bool
	limiter  flowcontrol.RateLimiter
	m        *metrics

	mu    sync.Mutex
	dirty map[string]bool // namespaces changed since the last pass
	all   bool            // every namespace is dirty

	// State of the last pass, by namespace; only the loop touches it.
	counts    map[string]map[string]Counts // namespace -> policy -> counts
	reports   map[string]string            // namespace -> hash of the report written ("" none)
	events    map[string]bool              // names of Events created
	reportsOn bool
	// reportsChecked: "reports off" was said once; it is not repeated.
	reportsChecked bool
	lastSet        *policies.Set
	lastFull       time.Time
}

// Setup adds the background audit to mgr. The manager's scheme must know
// v1alpha1 and, for reports, openreports.io/v1alpha1.
func Setup(mgr manager.Manager, store Policies, o Options, lg logr.Logger) (*Auditor, error) {
	a, err := New(mgr.GetClient(), mgr.GetAPIReader(), mgr.GetRESTMapper(), func() (cache.Cache, error) {
		return cache.New(mgr.GetConfig(), cache.Options{Scheme: mgr.GetScheme(), Mapper: mgr.GetRESTMapper(), DefaultTransform: strip})
	}, store, o, lg)
	if err != nil {
		return nil, err
	}
	return a, mgr.Add(a)
}

// New returns an Auditor; Setup is the usual way to get one.
func New(c client.Client, r client.Reader, mapper meta.RESTMapper, newCache func() (cache.Cache, error), store Policies, o Options, lg logr.Logger) (*Auditor, error) {
	defaults.Positive(&o.Settle, 2*time.Second)
	defaults.Positive(&o.WritesPerSecond, 5)
	defaults.Positive(&o.WriteBurst, 10)
	defaults.Positive(&o.MaxResults, DefaultMaxResults)
	m, err := newMetrics(o.Registerer)
	if err != nil {
		return nil, err
	}
	a := &Auditor{
		opts: o, log: lg, store: store, client: c, reader: r, mapper: mapper, newCache: newCache,
		excluded: map[string]bool{},
		limiter:  flowcontrol.NewTokenBucketRateLimiter(float32(o.WritesPerSecond), o.WriteBurst),
		m:        m,
		dirty:    map[string]bool{}, all: true,
		counts: map[string]map[string]Counts{}, reports: map[string]string{}, events: map[string]bool{},
	}
	for _, n := range o.Excluded {
		a.excluded[n] = true
	}
	return a, nil
}

// NeedLeaderElection is true: one replica audits and writes.
func (a *Auditor) NeedLeaderElection() bool { return true }

// Start runs the audit's informers and passes until ctx ends.
func (a *Auditor) Start(ctx context.Context) error {
	c, err := a.newCache()
	if err != nil {
		return fmt.Errorf("audit cache: %w", err)
	}
	for _, k := range kinds() {
		inf, err := c.GetInformer(ctx, k.obj())
		if err != nil {
			return fmt.Errorf("audit informer for %ss: %w", k.name, err)
		}
		if _, err := inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
			AddFunc:    a.touch,
			UpdateFunc: func(_, n any) { a.touch(n) },
			DeleteFunc: a.touch,
		}); err != nil {
			return err
		}
	}
	errc := make(chan error, 1)
	go func() { errc <- c.Start(ctx) }()
	if !c.WaitForCacheSync(ctx) {
		if ctx.Err() != nil {
			return nil
		}
		return errors.New("audit cache did not sync")
	}
	a.log.Info("background audit started", "interval", a.opts.Interval.String())
	tick := time.NewTicker(a.opts.Settle)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return <-errc
		case <-tick.C:
		}
		if err := a.Pass(ctx, c); err != nil && ctx.Err() == nil {
			a.log.Error(err, "audit pass")
		}
	}
}

// touch marks an object's namespace for the next pass.
func (a *Auditor) touch(obj any) {
	if d, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	o, ok := obj.(metav1.Object)
	if !ok {
		return
	}
	a.mu.Lock()
	a.dirty[o.GetNamespace()] = true
	a.mu.Unlock()
}

// Pass judges the namespaces that changed (all of them when the policy set
// changed, on the first pass and every Interval) from r, and writes what
// changed: reports, policy status, Events.
func (a *Auditor) Pass(ctx context.Context, r client.Reader) error {
	set := a.store.Set()
	if set == nil {
		return nil // the policy cache has not synced yet
	}
	now := time.Now()
	a.mu.Lock()
	full := a.all || set != a.lastSet || (a.opts.Interval > 0 && now.Sub(a.lastFull) >= a.opts.Interval)
	dirty := a.dirty
	a.dirty, a.all = map[string]bool{}, false
	a.mu.Unlock()
	if !full && len(dirty) == 0 {
		return nil
	}
	if full {
		a.lastSet, a.lastFull = set, now
		a.reportsOn = a.opts.Reports && a.reportsInstalled()
	}

	start := time.Now()
	byNS := map[string][]Item{}
	nsCache := map[string]policies.Namespace{}
	nsOf := func(name string) policies.Namespace {
		if ns, ok := nsCache[name]; ok {
			return ns
		}
		ns, err := a.store.Namespace(ctx, name)
		if err != nil {
			ns = policies.Namespace{Name: name}
		}
		nsCache[name] = ns
		return ns
	}
	scopes := []Scope{{Excluded: a.excluded}}
	if !full {
		scopes = scopes[:0]
		for ns := range dirty {
			switch {
			case a.excluded[ns]:
			case !set.SelectsIn(nsOf(ns)):
				// No policy can select anything there: nothing to judge
				// (a namespace of thousands of changing pods would
				// otherwise be re-scanned every Settle), and what was
				// reported for it before goes.
				byNS[ns] = nil
			default:
				scopes = append(scopes, Scope{Namespace: ns, Excluded: a.excluded})
			}
		}
	}
	for _, sc := range scopes {
		items, err := Scan(ctx, r, set, nsOf, sc)
		if err != nil {
			return err
		}
		for _, it := range items {
			byNS[it.Namespace] = append(byNS[it.Namespace], it)
		}
		if sc.Namespace != "" {
			if _, ok := byNS[sc.Namespace]; !ok {
				byNS[sc.Namespace] = nil // emptied: its report goes
			}
		}
	}
	if full {
		// Namespaces judged before and not now (emptied, or no longer selected).
		for ns := range a.counts {
			if _, ok := byNS[ns]; !ok {
				byNS[ns] = nil
			}
		}
		for ns := range a.reports {
			if _, ok := byNS[ns]; !ok {
				byNS[ns] = nil
			}
		}
	}
	a.m.duration.Observe(time.Since(start).Seconds())
	a.m.passes.Inc()

	var errs []error
	for ns, items := range byNS {
		c := countByPolicy(items)
		if len(c) == 0 {
			delete(a.counts, ns)
		} else {
			a.counts[ns] = c
		}
		if a.reportsOn {
			if err := a.syncReport(ctx, ns, buildReport(ns, items, a.opts.MaxResults), now); err != nil {
				errs = append(errs, err)
			}
		}
		if a.opts.Events {
			if err := a.recordRefusals(ctx, refusals(items), now); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if full && a.reportsOn {
		if err := a.deleteStrayReports(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	if err := a.syncStatus(ctx, full, now); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// reportsInstalled asks discovery (through the manager's RESTMapper) whether
// the openreports.io Report CRD is served. When it is not, the audit still
// runs (status, metrics, Events) and says so once.
func (a *Auditor) reportsInstalled() bool {
	_, err := a.mapper.RESTMapping(reportGK, orv1.SchemeGroupVersion.Version)
	if err == nil {
		if !a.reportsOn {
			a.log.Info("writing policy reports", "apiVersion", orv1.SchemeGroupVersion.String())
		}
		return true
	}
	if a.reportsOn || !a.reportsChecked {
		a.reportsChecked = true
		a.log.Info("policy reports off: the openreports.io/v1alpha1 Report CRD is not installed (chart value reports.installCRDs)", "reason", err.Error())
	}
	return false
}

func (a *Auditor) write(ctx context.Context, object string) error {
	a.m.writes.WithLabelValues(object).Inc()
	return a.limiter.Wait(ctx)
}

// syncReport writes the namespace's report when it differs from the last
// one written (read back once after a restart or a change of leader).
func (a *Auditor) syncReport(ctx context.Context, ns string, want *orv1.Report, now time.Time) error {
	h := reportHash(want)
	prev, known := a.reports[ns]
	if known && prev == h {
		return nil
	}
	var cur orv1.Report
	err := a.reader.Get(ctx, client.ObjectKey{Namespace: ns, Name: ReportName}, &cur)
	exists := err == nil
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("reading report %s/%s: %w", ns, ReportName, err)
	}
	if exists && cur.Labels[LabelManagedBy] != managedBy {
		return nil // someone else's report of that name: leave it
	}
	switch {
	case want == nil && !exists:
	case want == nil:
		if err := a.write(ctx, "report"); err != nil {
			return err
		}
		if err := a.client.Delete(ctx, &cur); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("deleting report %s/%s: %w", ns, ReportName, err)
		}
	case exists && reportHash(&cur) == h:
	default:
		ts := metav1.Timestamp{Seconds: now.Unix()}
		for i := range want.Results {
			want.Results[i].Timestamp = ts
		}
		if err := a.write(ctx, "report"); err != nil {
			return err
		}
		if exists {
			want.ResourceVersion = cur.ResourceVersion
			err = a.client.Update(ctx, want)
		} else {
			err = a.client.Create(ctx, want)
		}
		if err != nil {
			return fmt.Errorf("writing report %s/%s: %w", ns, ReportName, err)
		}
	}
	a.reports[ns] = h // "" records that there is none, so it is not read again
	return nil
}

// deleteStrayReports deletes our reports in namespaces with nothing to
// report (written by an earlier leader, or before a policy went).
func (a *Auditor) deleteStrayReports(ctx context.Context) error {
	var list orv1.ReportList
	if err := a.reader.List(ctx, &list, client.MatchingLabels{LabelManagedBy: managedBy}); err != nil {
		return fmt.Errorf("listing reports: %w", err)
	}
	for i := range list.Items {
		r := &list.Items[i]
		if r.Name != ReportName || a.reports[r.Namespace] != "" {
			continue
		}
		if err := a.write(ctx, "report"); err != nil {
			return err
		}
		if err := a.client.Delete(ctx, r); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("deleting report %s/%s: %w", r.Namespace, r.Name, err)
		}
	}
	return nil
}

// syncStatus writes each policy's status.audit when its counts changed, and
// on full passes refreshes lastAuditTime at most once per Interval.
func (a *Auditor) syncStatus(ctx context.Context, full bool, now time.Time) error {
	totals := map[string]Counts{}
	for _, byPol := range a.counts {
		for p, c := range byPol {
			t := totals[p]
			t.add(c)
			totals[p] = t
		}
	}
	var list v1alpha1.LifecyclePolicyList
	if err := a.reader.List(ctx, &list); err != nil {
		return fmt.Errorf("listing policies: %w", err)
	}
	known := map[string]bool{}
	var errs []error
	for i := range list.Items {
		p := &list.Items[i]
		known[p.Name] = true
		c := totals[p.Name]
		if _, ok := totals[p.Name]; !ok {
			totals[p.Name] = c // export zeros for a policy that selects nothing
		}
		cur := p.Status.Audit
		same := cur != nil && cur.Matched == c.Matched && cur.Violations == c.Violations && cur.Warnings == c.Warnings
		stale := cur == nil || cur.LastAuditTime == nil || (full && a.opts.Interval > 0 && now.Sub(cur.LastAuditTime.Time) >= a.opts.Interval)
		if same && !stale {
			continue
		}
		upd := p.DeepCopy()
		upd.Status.Audit = &v1alpha1.AuditStatus{Matched: c.Matched, Violations: c.Violations, Warnings: c.Warnings, LastAuditTime: &metav1.Time{Time: now}}
		if err := a.write(ctx, "status"); err != nil {
			return err
		}
		if err := a.client.Status().Patch(ctx, upd, client.MergeFrom(p)); err != nil && !apierrors.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("writing status of policy %s: %w", p.Name, err))
		}
	}
	for p := range totals {
		if !known[p] {
			delete(totals, p)
		}
	}
	a.m.setTotals(totals)
	return errors.Join(errs...)
}

// maxEventMemory bounds the names of Events remembered as created.
const maxEventMemory = 10000

// recordRefusals creates one Warning Event per workload and distinct
// message; the name is derived from both, so a second pass (or a new
// leader) finds it AlreadyExists instead of doubling it.
func (a *Auditor) recordRefusals(ctx context.Context, rs []refusal, now time.Time) error {
	for _, r := range rs {
		name := eventName(r.ref, r.message)
		if a.events[name] {
			continue
		}
		if len(a.events) >= maxEventMemory {
			// Forget: at worst a later pass gets AlreadyExists once per workload.
			clear(a.events)
		}
		msg := r.message
		if len(msg) > 1024 { // the Event API's limit (pkg/apis/core/validation/events.go)
			msg = msg[:1021] + "..."
		}
		ev := &corev1.Event{
			ObjectMeta:          metav1.ObjectMeta{Name: name, Namespace: r.ref.Namespace},
			InvolvedObject:      r.ref,
			Reason:              "PodsWouldBeRefused",
			Message:             msg,
			Type:                corev1.EventTypeWarning,
			Source:              corev1.EventSource{Component: "gracekeeper-audit"},
			FirstTimestamp:      metav1.Time{Time: now},
			LastTimestamp:       metav1.Time{Time: now},
			Count:               1,
			Action:              "Audit",
			ReportingController: "gracekeeper.dev/audit",
			ReportingInstance:   "gracekeeper",
		}
		if err := a.write(ctx, "event"); err != nil {
			return err
		}
		if err := a.client.Create(ctx, ev); err != nil && !apierrors.IsAlreadyExists(err) {
			// An Event is advice: a namespace being deleted or a quota refuses
			// it; log and go on, never retry in a loop.
			a.log.V(1).Info("event not recorded", "namespace", r.ref.Namespace, "name", r.ref.Name, "error", err.Error())
			continue
		}
		a.events[name] = true
	}
	return nil
}
