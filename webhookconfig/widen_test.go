package webhookconfig

import (
	"context"
	"testing"
	"time"

	"github.com/go-logr/logr"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/gracekeeper/gracekeeper/policies/v1alpha1"
)

// TestWidenRestoresTheChartsConfiguration: with narrowing turned off, a
// narrowing written before is undone (the policy webhook and other
// conditions untouched), and a configuration that is not there is no error.
func TestWidenRestoresTheChartsConfiguration(t *testing.T) {
	scheme := runtime.NewScheme()
	if err := admissionregistrationv1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	val := validatingConfig()
	val.Name = "gk"
	n := Compute(policiesWith(v1alpha1.Match{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
		NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"env": "prod"}}}))
	if !NarrowValidating(val, n, engine) {
		t.Fatal("nothing narrowed")
	}
	c := fake.NewClientBuilder().WithScheme(scheme).WithObjects(val).Build()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := Widen(ctx, c, Options{MutatingName: "missing", ValidatingName: "gk", Engine: engine}, logr.Discard()); err != nil {
		t.Fatal(err)
	}
	got := &admissionregistrationv1.ValidatingWebhookConfiguration{}
	if err := c.Get(ctx, client.ObjectKey{Name: "gk"}, got); err != nil {
		t.Fatal(err)
	}
	want := validatingConfig()
	for i, w := range got.Webhooks {
		if !sameSelector(w.NamespaceSelector, want.Webhooks[i].NamespaceSelector) || !sameConditions(w.MatchConditions, want.Webhooks[i].MatchConditions) {
			t.Errorf("webhook %s after widening: %+v %+v, want the chart's %+v %+v", w.Name, w.NamespaceSelector, w.MatchConditions,
				want.Webhooks[i].NamespaceSelector, want.Webhooks[i].MatchConditions)
		}
	}
	if ctx.Err() != nil {
		t.Error("Widen kept retrying")
	}
}
