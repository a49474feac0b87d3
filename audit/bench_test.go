package audit

import (
	"context"
	"fmt"
	"runtime"
	"testing"

	"github.com/go-logr/logr"
	orv1 "github.com/openreports/reports-api/apis/openreports.io/v1alpha1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	"github.com/gracekeeper/gracekeeper/internal/clientscheme"
	"github.com/gracekeeper/gracekeeper/policies"
	"github.com/gracekeeper/gracekeeper/policies/v1alpha1"
)

// The scale of the benchmark: what a mid-size cluster runs.
const (
	benchNamespaces = 100
	benchPods       = 10000
	benchWorkloads  = 1000
	benchPolicies   = 100
)

// memReader serves List from slices of stripped objects, deep-copying
// each as controller-runtime's informer cache does by default.
type memReader struct {
	client.Reader
	pods []corev1.Pod
	deps []appsv1.Deployment
}

func (m *memReader) List(_ context.Context, list client.ObjectList, opts ...client.ListOption) error {
	o := (&client.ListOptions{}).ApplyOptions(opts)
	switch l := list.(type) {
	case *corev1.PodList:
		for i := range m.pods {
			if o.Namespace == "" || m.pods[i].Namespace == o.Namespace {
				l.Items = append(l.Items, *m.pods[i].DeepCopy())
			}
		}
	case *appsv1.DeploymentList:
		for i := range m.deps {
			if o.Namespace == "" || m.deps[i].Namespace == o.Namespace {
				l.Items = append(l.Items, *m.deps[i].DeepCopy())
			}
		}
	}
	return nil
}

// benchPod is a pod as a Deployment creates it, with what a real one
// carries and the audit cache strips (env, volumes, kubectl's annotation,
// managed fields, status).
func benchPod(i int) corev1.Pod {
	ns := fmt.Sprintf("ns-%d", i%benchNamespaces)
	app := fmt.Sprintf("app-%d", i%benchWorkloads)
	return corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: ns, Name: fmt.Sprintf("%s-%d", app, i), UID: types.UID(fmt.Sprintf("uid-pod-%d", i)),
			Labels:        map[string]string{"app": app, "tier": fmt.Sprintf("t%d", i%benchPolicies), "pod-template-hash": "5d8f7c9b4"},
			Annotations:   map[string]string{"kubectl.kubernetes.io/last-applied-configuration": string(make([]byte, 2048))},
			ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "kube-controller-manager", Operation: "Update", FieldsV1: &metav1.FieldsV1{Raw: make([]byte, 1024)}}},
		},
		Spec: corev1.PodSpec{
			TerminationGracePeriodSeconds: ptr.To(int64(30 + 10*(i%3))),
			Containers: []corev1.Container{{
				Name: "app", Image: "registry.example/app:1",
				Env:          []corev1.EnvVar{{Name: "A", Value: "1"}, {Name: "B", Value: "2"}, {Name: "C", Value: "3"}},
				VolumeMounts: []corev1.VolumeMount{{Name: "data", MountPath: "/data"}},
				Ports:        []corev1.ContainerPort{{ContainerPort: 8080}},
			}},
			Volumes: []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}},
		},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "10.0.0.1",
			ContainerStatuses: []corev1.ContainerStatus{{Name: "app", Ready: true, Image: "registry.example/app:1", ImageID: "sha256:abc"}}},
	}
}

func benchDeployment(i int) appsv1.Deployment {
	p := benchPod(i)
	return appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: p.Namespace, Name: fmt.Sprintf("app-%d", i), UID: types.UID(fmt.Sprintf("uid-dep-%d", i)),
			Annotations: p.Annotations, ManagedFields: p.ManagedFields},
		Spec: appsv1.DeploymentSpec{Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": fmt.Sprintf("app-%d", i), "tier": fmt.Sprintf("t%d", i%benchPolicies)}}, Spec: p.Spec}},
	}
}

// benchPolicySet is 100 policies, each selecting one tier label (a pod
// matches one policy by label, and the index finds it without looking at
// the other 99), with a preStop that makes a third of the pods fail.
func benchPolicySet() ([]v1alpha1.LifecyclePolicy, *policies.Set) {
	var pols []v1alpha1.LifecyclePolicy
	for i := range benchPolicies {
		pols = append(pols, v1alpha1.LifecyclePolicy{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("policy-%d", i)},
			Spec: v1alpha1.LifecyclePolicySpec{
				Match:           v1alpha1.Match{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"tier": fmt.Sprintf("t%d", i)}}},
				PreStop:         &v1alpha1.PreStopHook{HookAction: v1alpha1.HookAction{Sleep: &v1alpha1.SleepAction{Seconds: 25}}},
				ShutdownSeconds: ptr.To[int64](10),
				Validation:      &v1alpha1.Validation{Action: v1alpha1.ActionAudit},
			},
		})
	}
	set, _ := policies.NewSet(policies.Config{}, pols)
	return pols, set
}

type staticPolicies struct{ set *policies.Set }

func (s staticPolicies) Set() *policies.Set { return s.set }
func (s staticPolicies) Namespace(_ context.Context, name string) (policies.Namespace, error) {
	return policies.Namespace{Name: name, Labels: map[string]string{corev1.LabelMetadataName: name}}, nil
}

// heapInUse is the live heap after a collection.
func heapInUse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// BenchmarkAuditFullPass is one full background audit pass over 10,000 pods
// and 1,000 Deployments in 100 namespaces against 100 policies: judging,
// reports, status, through the real Auditor with the API writes going to a
// fake client and counted. Reported besides ns/op:
//   - writes/first-pass: the writes of the first pass (every report and status is new);
//   - writes/pass: the writes of each later pass over an unchanged cluster (should be 0);
//   - cache-MiB: the heap the stripped objects hold (what the audit's informers keep);
//   - unstripped-MiB: the same objects as the API server sends them (the baseline).
func BenchmarkAuditFullPass(b *testing.B) {
	pols, set := benchPolicySet()
	before := heapInUse()
	raw := &memReader{}
	for i := range benchPods {
		raw.pods = append(raw.pods, benchPod(i))
	}
	for i := range benchWorkloads {
		raw.deps = append(raw.deps, benchDeployment(i))
	}
	unstripped := heapInUse() - before
	before = heapInUse()
	r := &memReader{}
	for i := range raw.pods {
		p := raw.pods[i].DeepCopy()
		_, _ = strip(p)
		r.pods = append(r.pods, *p)
	}
	for i := range raw.deps {
		d := raw.deps[i].DeepCopy()
		_, _ = strip(d)
		r.deps = append(r.deps, *d)
	}
	stripped := heapInUse() - before
	runtime.KeepAlive(raw)
	raw = nil

	scheme, err := clientscheme.New(orv1.AddToScheme)
	if err != nil {
		b.Fatal(err)
	}
	var objs []client.Object
	for i := range pols {
		objs = append(objs, &pols[i])
	}
	writes := 0
	c := fake.NewClientBuilder().WithScheme(scheme).WithObjects(objs...).WithStatusSubresource(&v1alpha1.LifecyclePolicy{}).
		WithInterceptorFuncs(interceptor.Funcs{
			Create: func(ctx context.Context, c client.WithWatch, o client.Object, opts ...client.CreateOption) error {
				writes++
				return c.Create(ctx, o, opts...)
			},
			Update: func(ctx context.Context, c client.WithWatch, o client.Object, opts ...client.UpdateOption) error {
				writes++
				return c.Update(ctx, o, opts...)
			},
			Delete: func(ctx context.Context, c client.WithWatch, o client.Object, opts ...client.DeleteOption) error {
				writes++
				return c.Delete(ctx, o, opts...)
			},
			SubResourcePatch: func(ctx context.Context, c client.Client, sub string, o client.Object, p client.Patch, opts ...client.SubResourcePatchOption) error {
				writes++
				return c.SubResource(sub).Patch(ctx, o, p, opts...)
			},
		}).Build()
	mapper := meta.NewDefaultRESTMapper(nil)
	mapper.Add(orv1.SchemeGroupVersion.WithKind("Report"), meta.RESTScopeNamespace)
	a, err := New(c, c, mapper, nil, staticPolicies{set}, Options{Reports: true, Events: true, WritesPerSecond: 1e9, WriteBurst: 1 << 30}, logr.Discard())
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	if err := a.Pass(ctx, r); err != nil {
		b.Fatal(err)
	}
	first := writes
	writes = 0
	b.ResetTimer()
	for b.Loop() {
		a.mu.Lock()
		a.all = true
		a.mu.Unlock()
		if err := a.Pass(ctx, r); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(first), "writes/first-pass")
	b.ReportMetric(float64(writes)/float64(b.N), "writes/pass")
	b.ReportMetric(float64(stripped)/(1<<20), "cache-MiB")
	b.ReportMetric(float64(unstripped)/(1<<20), "unstripped-MiB")
}

// BenchmarkAuditListOnly is the baseline of BenchmarkAuditFullPass: the
// same lists read from the same stripped objects, nothing judged; the
// ratio of the two is the engine's and the reports' share of a pass.
func BenchmarkAuditListOnly(b *testing.B) {
	r := &memReader{}
	for i := range benchPods {
		p := benchPod(i)
		_, _ = strip(&p)
		r.pods = append(r.pods, p)
	}
	for i := range benchWorkloads {
		d := benchDeployment(i)
		_, _ = strip(&d)
		r.deps = append(r.deps, d)
	}
	ctx := context.Background()
	for b.Loop() {
		for _, k := range kinds() {
			if err := r.List(ctx, k.list()); err != nil {
				b.Fatal(err)
			}
		}
	}
}
