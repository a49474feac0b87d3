package check

import (
	"context"
	"errors"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/gracekeeper/gracekeeper/policies"
	"github.com/gracekeeper/gracekeeper/policies/v1alpha1"
)

// Names the API server and the webhook configurations give meaning to.
const (
	// ReasonUnknownField marks a field the Go types do not know: the API
	// server's strict field validation (kubectl's default since 1.27,
	// KEP-2885) would refuse the object, and the engine cannot see the field.
	ReasonUnknownField policies.Reason = "UnknownField"
	// ReasonDuplicateField marks a mapping key given twice: the last one
	// wins here, while strict field validation refuses the object.
	ReasonDuplicateField policies.Reason = "DuplicateField"
)

// servedVersion is the apiVersion the API server serves a reviewed kind in:
// pods, and the workload kinds of policies.Kinds.
func servedVersion(kind string) (string, bool) {
	if kind == "Pod" {
		return "v1", true
	}
	if k, ok := policies.KindNamed(kind); ok {
		return k.GVK.GroupVersion().String(), true
	}
	return "", false
}

// reviewedKinds names what check reviews, for messages.
func reviewedKinds() string {
	names := []string{"Pods"}
	for _, k := range policies.Kinds() {
		names = append(names, k.GVK.Kind+"s")
	}
	return strings.Join(names, ", ")
}

// Options configure a Checker.
type Options struct {
	// Namespace is the namespace of objects that set no metadata.namespace
	// ("default" when empty, as kubectl does).
	Namespace string
	// NamespaceLabels are the labels every namespace is taken to carry.
	// kubernetes.io/metadata.name is added from the namespace's name.
	NamespaceLabels map[string]string
	// Engine configures the policy engine.
	Engine policies.Config
}

// Object is what check found about one object of the input.
type Object struct {
	Loc       Location
	Kind      string
	Namespace string
	Name      string
	// Reviewed is true for pods and workloads with a pod template, which
	// the engine reviewed; other objects pass through unchanged.
	Reviewed bool
	// Changed reports whether the engine changed the pod (or the template).
	Changed bool
	// Policies are the policies that matched, highest priority first.
	Policies []string
	Findings []policies.Finding
}

// Ref is the object as kubectl names it, e.g. "deployment/web".
func (o Object) Ref() string {
	return strings.ToLower(o.Kind) + "/" + o.Name
}

// Denied reports whether a finding denies the object.
func (o Object) Denied() bool {
	return policies.Decision{Findings: o.Findings}.Denied()
}

// Checker reviews objects against one compiled policy set.
type Checker struct {
	codecs *codecs
	set    *policies.Set
	opts   Options
}

// New reads, validates and compiles the policies in policyPaths (files, or
// directories of *.yaml, *.yml and *.json files). A policy that cannot be
// read, that the CRD would refuse, or that the engine cannot compile is an
// *InputError naming it.
func New(ctx context.Context, opts Options, policyPaths []string) (*Checker, error) {
	c, err := newCodecs()
	if err != nil {
		return nil, err
	}
	schema, err := newPolicySchema()
	if err != nil {
		return nil, err
	}
	loaded, err := c.loadPolicies(ctx, schema, policyPaths)
	if err != nil {
		return nil, err
	}
	pols := make([]v1alpha1.LifecyclePolicy, len(loaded))
	where := make(map[string]Location, len(loaded))
	for i, l := range loaded {
		pols[i] = l.policy
		where[l.policy.Name] = l.loc
	}
	set, findings := policies.NewSet(opts.Engine, pols)
	var errs []error
	for _, f := range findings {
		loc, ok := where[f.Policy]
		if !ok {
			loc = Location{Source: "policies"}
		}
		errs = append(errs, &InputError{Loc: loc, Err: fmt.Errorf("invalid policy: %s", f.Message)})
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if opts.Namespace == "" {
		opts.Namespace = corev1.NamespaceDefault
	}
	return &Checker{codecs: c, set: set, opts: opts}, nil
}

// Policies is the number of policies in the compiled set.
func (c *Checker) Policies() int { return c.set.Len() }

// namespace is what the engine learns of namespace name: the labels given,
// then those of the Namespace when the input declares it, plus
// kubernetes.io/metadata.name, which the API server sets on every namespace
// (pkg/registry/core/namespace/strategy.go, KEP-2161).
func (c *Checker) namespace(name string, declared map[string]map[string]string) policies.Namespace {
	labels := make(map[string]string, len(c.opts.NamespaceLabels)+1)
	for k, v := range c.opts.NamespaceLabels {
		labels[k] = v
	}
	for k, v := range declared[name] {
		labels[k] = v
	}
	labels[corev1.LabelMetadataName] = name
	return policies.Namespace{Name: name, Labels: labels}
}

// reviewObject reviews one object (a document, or an item of a List) and
// returns the JSON patch that turns it into what admission makes of it;
// prefix is the object's JSON pointer within its document.
func (c *Checker) reviewObject(loc Location, js []byte, prefix string, declared map[string]map[string]string) (Object, []patchOp, error) {
	tm, err := readTypeMeta(js)
	if err != nil {
		return Object{}, nil, &InputError{Loc: loc, Err: err}
	}
	gvk := schema.FromAPIVersionAndKind(tm.APIVersion, tm.Kind)
	if served, ok := servedVersion(tm.Kind); ok && tm.APIVersion != served && !strings.Contains(gvk.Group, ".") {
		// client-go still knows e.g. extensions/v1beta1 Deployments, but
		// the API server stopped serving them (1.16, 1.22, 1.25): passing
		// one through unreviewed would hide that it cannot be applied.
		return Object{}, nil, &InputError{Loc: loc, Err: fmt.Errorf("%s %s is not served by Kubernetes any more: use apiVersion %s", tm.APIVersion, tm.Kind, served)}
	}
	if !c.codecs.scheme.Recognizes(gvk) {
		if strings.Contains(gvk.Group, ".") && !c.codecs.scheme.IsGroupRegistered(gvk.Group) {
			// A custom resource (cert-manager's Certificate, say; CRD groups
			// must hold a dot: apiextensions-apiserver's validation.go):
			// pod admission never sees it, so it passes through.
			var u unstructured.Unstructured
			if err := u.UnmarshalJSON(js); err != nil {
				return Object{}, nil, &InputError{Loc: loc, Err: fmt.Errorf("invalid %s: %w", tm.Kind, err)}
			}
			return Object{Loc: loc, Kind: tm.Kind, Namespace: u.GetNamespace(), Name: u.GetName()}, nil, nil
		}
		// A built-in group with a kind or version it does not have is a typo
		// (or an API version Kubernetes has removed): the cluster would refuse it.
		return Object{}, nil, &InputError{Loc: loc, Err: fmt.Errorf("unknown kind %q in apiVersion %q: check reads %s and Lists of them, and passes other kinds through", tm.Kind, tm.APIVersion, reviewedKinds())}
	}
	obj, _, err := c.codecs.strict.Decode(js, nil, nil)
	var strictErr error
	if err != nil {
		if !runtime.IsStrictDecodingError(err) || obj == nil {
			return Object{}, nil, &InputError{Loc: loc, Err: fmt.Errorf("invalid %s: %w", tm.Kind, err)}
		}
		strictErr = err
	}
	acc, err := meta.Accessor(obj)
	if err != nil {
		return Object{}, nil, &InputError{Loc: loc, Err: fmt.Errorf("invalid %s: %w", tm.Kind, err)}
	}
	if acc.GetNamespace() == "" {
		acc.SetNamespace(c.opts.Namespace)
	}
	o := Object{Loc: loc, Kind: tm.Kind, Namespace: acc.GetNamespace(), Name: acc.GetName()}
	if o.Name == "" {
		o.Name = acc.GetGenerateName()
	}
	for _, e := range strictErrors(strictErr) {
		o.Findings = append(o.Findings, policies.Finding{
			Action:  v1alpha1.ActionWarn,
			Reason:  ReasonUnknownField,
			Message: fmt.Sprintf("%v: the API server's strict field validation (kubectl's default) refuses it, and gracekeeper cannot see it", e),
		})
	}

	tmpl, ok := asPods(obj)
	if !ok {
		return o, nil, nil // not a pod or a workload: passes through
	}
	before, pointer := tmpl.Pod, tmpl.Pointer
	ns := c.namespace(o.Namespace, declared)
	if c.opts.Engine.Ignores(ns) {
		return o, nil, nil // the webhook configurations never send it
	}
	o.Reviewed = true
	d := c.set.ReviewTemplate(tmpl, ns)
	o.Policies = d.Policies
	o.Findings = append(o.Findings, d.Findings...)
	if d.Pod == nil || d.Pod == before {
		return o, nil, nil
	}
	ops, err := podPatch(before, d.Pod, prefix+pointer, pointer != "")
	if err != nil {
		return Object{}, nil, &InputError{Loc: loc, Err: fmt.Errorf("computing the change: %w", err)}
	}
	o.Changed = len(ops) > 0
	return o, ops, nil
}

// strictErrors splits a strict decoding error into its unknown or duplicate fields.
func strictErrors(err error) []error {
	if err == nil {
		return nil
	}
	if se, ok := err.(interface{ Errors() []error }); ok {
		return se.Errors()
	}
	return []error{err}
}
