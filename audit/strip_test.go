package audit

import (
	"encoding/json"
	"reflect"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/gracekeeper/gracekeeper/policies"
)

// TestStripEveryKind: each kind of the registry is stripped as a pod is
// (managed fields, other annotations, env) in its metadata and template, and
// loses its status, while what the engine reads stays.
func TestStripEveryKind(t *testing.T) {
	statuses := map[string]string{ // a non-empty status of each kind
		"Deployment":            `{"replicas": 1}`,
		"StatefulSet":           `{"replicas": 1}`,
		"DaemonSet":             `{"numberReady": 1}`,
		"ReplicaSet":            `{"replicas": 1}`,
		"ReplicationController": `{"replicas": 1}`,
		"Job":                   `{"active": 1}`,
		"CronJob":               `{"lastScheduleTime": "2026-01-01T00:00:00Z"}`,
	}
	annotations := map[string]string{"gracekeeper.dev/skip": "true", "kubectl.kubernetes.io/last-applied-configuration": "{}"}
	for _, k := range policies.Kinds() {
		t.Run(k.GVK.Kind, func(t *testing.T) {
			status, ok := statuses[k.GVK.Kind]
			if !ok {
				t.Fatalf("no status for kind %s: add one here", k.GVK.Kind)
			}
			obj := k.New()
			doc := `{"metadata": {"name": "w", "managedFields": [{"manager": "kubectl"}]}, "spec": {"template": {}}, "status": ` + status + `}`
			if err := json.Unmarshal([]byte(doc), obj); err != nil {
				t.Fatal(err)
			}
			if reflect.ValueOf(obj).Elem().FieldByName("Status").IsZero() {
				t.Fatal("the status to strip is empty: the test would prove nothing")
			}
			meta := obj.(metav1.Object)
			meta.SetAnnotations(map[string]string{})
			for a, v := range annotations {
				meta.GetAnnotations()[a] = v
			}
			tmpl, _ := k.Template(obj)
			if tmpl == nil {
				t.Fatal("no template")
			}
			tmpl.Annotations = map[string]string{}
			for a, v := range annotations {
				tmpl.Annotations[a] = v
			}
			tmpl.Spec.Containers = []corev1.Container{{Name: "app", Image: "nginx", Env: []corev1.EnvVar{{Name: "A", Value: "1"}}}}

			if _, err := strip(obj); err != nil {
				t.Fatal(err)
			}
			want := map[string]string{"gracekeeper.dev/skip": "true"}
			if meta.GetManagedFields() != nil || !reflect.DeepEqual(meta.GetAnnotations(), want) {
				t.Errorf("metadata: managed fields %v, annotations %v", meta.GetManagedFields(), meta.GetAnnotations())
			}
			if meta.GetName() != "w" {
				t.Errorf("name %q, want w", meta.GetName())
			}
			if !reflect.DeepEqual(tmpl.Annotations, want) {
				t.Errorf("template annotations %v", tmpl.Annotations)
			}
			if c := tmpl.Spec.Containers; len(c) != 1 || c[0].Name != "app" || c[0].Image != "nginx" || c[0].Env != nil {
				t.Errorf("template containers %+v", c)
			}
			if st := reflect.ValueOf(obj).Elem().FieldByName("Status"); !st.IsZero() {
				t.Errorf("status kept: %+v", st.Interface())
			}
		})
	}
}
