package check

import (
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/gracekeeper/gracekeeper/policies"
)

// ReviewLive judges one object read from a cluster (a pod, or a workload
// with a pod template) as check judges a document: a pod as admission would
// see it at CREATE, a workload as the pods its controller creates. where is
// printed in the table in place of a file location (e.g. "namespace shop").
// ok is false for any other kind, and for objects in a namespace labelled
// the ignore label, which admission never sees. The object is not
// modified.
func ReviewLive(set *policies.Set, obj runtime.Object, kind string, ns policies.Namespace, where string) (o Object, ok bool) {
	acc, err := meta.Accessor(obj)
	if err != nil {
		return Object{}, false
	}
	if set.Ignores(ns) {
		return Object{}, false
	}
	o = Object{Loc: Location{Source: where}, Kind: kind, Namespace: acc.GetNamespace(), Name: acc.GetName(), Reviewed: true}
	tmpl, ok := asPods(obj)
	if !ok {
		return Object{}, false
	}
	d := set.ReviewTemplate(tmpl, ns)
	o.Policies, o.Findings, o.Changed = d.Policies, d.Findings, d.Changed
	return o, true
}

// asPods is obj as admission judges it, on the same path as the validating
// webhook: a pod as itself (a template with no pointer and no labels of
// unknown value, which ReviewTemplate judges as Review does), a workload as
// the pods its controller creates, with the labels the controller adds. ok
// is false for any other object.
func asPods(obj runtime.Object) (policies.Template, bool) {
	if pod, ok := obj.(*corev1.Pod); ok {
		return policies.Template{Pod: pod}, true
	}
	return policies.TemplateFor(obj)
}
