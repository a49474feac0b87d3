package webhook

import (
	"context"
	"net/http"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/go-logr/logr"

	"github.com/gracekeeper/gracekeeper/podpatch"
	"github.com/gracekeeper/gracekeeper/policies"
	"github.com/gracekeeper/gracekeeper/policies/v1alpha1"
)

// Routes served by the admission handlers.
const (
	RouteMutatePods        = "/mutate-pods"
	RouteValidatePods      = "/validate-pods"
	RouteValidateWorkloads = "/validate-workloads"
)

// answer is one handler's result: a response to encode, or an HTTP error
// (httpCode != 0) that the API server treats as a failed call, so the
// webhook's failurePolicy decides (used when we are not able to judge, never
// for bad input, which gets an AdmissionReview with code 400).
type answer struct {
	resp     *response
	httpCode int
	httpMsg  string
	outcome  string
}

// Review handles one AdmissionReview body for route and returns the HTTP
// status and body to send. It is the whole admission path minus HTTP
// (benchmarks call it directly).
func (s *Server) Review(ctx context.Context, route string, body []byte) (code int, out []byte, outcome string) {
	if _, err := logr.FromContext(ctx); err != nil {
		ctx = log.IntoContext(ctx, s.log)
	}
	a := s.review(ctx, route, body)
	if a.httpCode != 0 {
		return a.httpCode, []byte(a.httpMsg + "\n"), outcomeError
	}
	b, err := encodeReview(a.resp)
	if err != nil {
		return http.StatusInternalServerError, []byte("encoding the response: " + err.Error() + "\n"), outcomeError
	}
	return http.StatusOK, b, a.outcome
}

func (s *Server) review(ctx context.Context, route string, body []byte) answer {
	var (
		hdr *requestHeader
		pod *corev1.Pod
		req *request
		err error
	)
	switch route {
	case RouteMutatePods, RouteValidatePods:
		hdr, pod, err = decodePodReview(body)
	case RouteValidateWorkloads:
		req, err = decodeEnvelope(body)
		if req != nil {
			hdr = &req.requestHeader
		}
	default:
		return answer{httpCode: http.StatusNotFound, httpMsg: "no such route"}
	}
	if err != nil {
		uid := hdr.uidOrEmpty()
		log.FromContext(ctx).Info("bad admission request", "uid", uid, "error", err.Error())
		return answer{resp: errorResponse(uid, err), outcome: outcomeError}
	}
	// The request's identity goes on every log line of this request; the
	// logger is only built when something will be logged (it allocates).
	lg := log.FromContext(ctx)
	if lg.V(1).Enabled() {
		lg = lg.WithValues("uid", hdr.UID, "kind", hdr.Kind.Kind, "namespace", hdr.Namespace, "name", hdr.Name, "operation", hdr.Operation)
		ctx = log.IntoContext(ctx, lg)
	}
	set := s.src.Set()
	if set == nil {
		// Not synced: let failurePolicy decide rather than answer wrongly.
		return answer{httpCode: http.StatusServiceUnavailable, httpMsg: "policy cache not synced yet"}
	}
	var a answer
	switch route {
	case RouteMutatePods:
		a = s.mutatePod(ctx, set, hdr, pod)
	case RouteValidatePods:
		a = s.validatePod(ctx, set, hdr, pod)
	default:
		a = s.validateWorkload(ctx, set, req)
	}
	if a.resp != nil && lg.V(1).Enabled() {
		lg.V(1).Info("admission", "allowed", a.resp.Allowed, "outcome", a.outcome, "warnings", len(a.resp.Warnings))
	}
	return a
}

func (r *requestHeader) uidOrEmpty() types.UID {
	if r == nil {
		return ""
	}
	return r.UID
}

func (s *Server) namespace(ctx context.Context, req *requestHeader) (policies.Namespace, *answer) {
	ns, err := s.src.Namespace(ctx, req.Namespace)
	if err != nil {
		log.FromContext(ctx).Error(err, "reading namespace", "uid", req.UID, "namespace", req.Namespace, "name", req.Name)
		return ns, &answer{httpCode: http.StatusInternalServerError, httpMsg: "reading namespace " + req.Namespace + ": " + err.Error()}
	}
	return ns, nil
}

func decodePod(req *request) (*corev1.Pod, error) {
	if req.Kind.Group != "" || req.Kind.Kind != "Pod" {
		return nil, badf("request %s: expected a core/v1 Pod, got %s", req.UID, gvkString(req.Kind))
	}
	pod := &corev1.Pod{}
	if err := unmarshal(req.Object, pod); err != nil {
		return nil, badf("request %s: object is not a valid Pod: %v", req.UID, err)
	}
	return pod, nil
}

func (s *Server) mutatePod(ctx context.Context, set *policies.Set, req *requestHeader, pod *corev1.Pod) answer {
	resp := &response{UID: req.UID, Allowed: true}
	// The mutating webhook is registered for CREATE only; anything else is
	// let through unchanged rather than refused.
	if req.Operation != "CREATE" {
		return answer{resp: resp, outcome: outcomeAllowed}
	}
	ns, bad := s.namespace(ctx, req)
	if bad != nil {
		return *bad
	}
	if pod.Namespace == "" {
		// At CREATE the object may carry no namespace; the request has it.
		pod.Namespace = req.Namespace
	}
	dec := set.Mutate(pod, ns)
	s.findings(resp, dec.Findings, false)
	if !dec.Changed {
		return answer{resp: resp, outcome: outcomeAllowed}
	}
	ops, err := podpatch.Pod(pod, dec.Pod)
	if err == nil && len(ops) == 0 {
		return answer{resp: resp, outcome: outcomeAllowed}
	}
	var patch []byte
	if err == nil {
		patch, err = fastMarshal(ops)
	}
	if err != nil {
		log.FromContext(ctx).Error(err, "building the patch", "uid", req.UID, "namespace", req.Namespace, "name", req.Name)
		return answer{httpCode: http.StatusInternalServerError, httpMsg: "building the patch: " + err.Error()}
	}
	resp.Patch, resp.PatchType = patch, "JSONPatch"
	for _, p := range dec.Policies {
		s.m.mutations.WithLabelValues(p).Inc()
	}
	return answer{resp: resp, outcome: outcomePatched}
}

func (s *Server) validatePod(ctx context.Context, set *policies.Set, req *requestHeader, pod *corev1.Pod) answer {
	if pod.Namespace == "" {
		pod.Namespace = req.Namespace
	}
	if req.Operation != "CREATE" {
		return answer{resp: &response{UID: req.UID, Allowed: true}, outcome: outcomeAllowed}
	}
	ns, bad := s.namespace(ctx, req)
	if bad != nil {
		return *bad
	}
	return s.judge(req, set.Validate(pod, ns))
}

// workloadObject returns an empty object of a workload kind the engine can
// read a pod template from.
func workloadObject(gvk metav1.GroupVersionKind) runtime.Object {
	switch gvk {
	case metav1.GroupVersionKind{Group: "apps", Version: "v1", Kind: "Deployment"}:
		return &appsv1.Deployment{}
	case metav1.GroupVersionKind{Group: "apps", Version: "v1", Kind: "StatefulSet"}:
		return &appsv1.StatefulSet{}
	case metav1.GroupVersionKind{Group: "apps", Version: "v1", Kind: "DaemonSet"}:
		return &appsv1.DaemonSet{}
	case metav1.GroupVersionKind{Group: "apps", Version: "v1", Kind: "ReplicaSet"}:
		return &appsv1.ReplicaSet{}
	case metav1.GroupVersionKind{Group: "", Version: "v1", Kind: "ReplicationController"}:
		return &corev1.ReplicationController{}
	case metav1.GroupVersionKind{Group: "batch", Version: "v1", Kind: "Job"}:
		return &batchv1.Job{}
	case metav1.GroupVersionKind{Group: "batch", Version: "v1", Kind: "CronJob"}:
		return &batchv1.CronJob{}
	}
	return nil
}

// validateWorkload judges a workload's pod template as the pods it will
// create: mutated as the mutating webhook will mutate them, then validated
// (Set.Review), so `kubectl apply` of a Deployment fails at once rather than
// its ReplicaSet failing quietly to create pods.
func (s *Server) validateWorkload(ctx context.Context, set *policies.Set, req *request) answer {
	obj := workloadObject(req.Kind)
	if obj == nil {
		err := badf("request %s: expected a workload (apps/v1 Deployment, StatefulSet, DaemonSet, ReplicaSet; v1 ReplicationController; batch/v1 Job, CronJob), got %s", req.UID, gvkString(req.Kind))
		return answer{resp: errorResponse(req.UID, err), outcome: outcomeError}
	}
	if err := unmarshal(req.Object, obj); err != nil {
		err = badf("request %s: object is not a valid %s: %v", req.UID, req.Kind.Kind, err)
		return answer{resp: errorResponse(req.UID, err), outcome: outcomeError}
	}
	// Only CREATE and UPDATE change a template.
	if req.Operation != "CREATE" && req.Operation != "UPDATE" {
		return answer{resp: &response{UID: req.UID, Allowed: true}, outcome: outcomeAllowed}
	}
	if req.Operation == "UPDATE" {
		if a, done := s.unjudgedUpdate(ctx, req, obj); done {
			return a
		}
	}
	tmpl, _, ok := policies.TemplateOf(obj)
	if !ok {
		// A ReplicationController without a template creates no pods.
		return answer{resp: &response{UID: req.UID, Allowed: true}, outcome: outcomeAllowed}
	}
	meta := obj.(metav1.Object)
	if meta.GetNamespace() == "" {
		meta.SetNamespace(req.Namespace)
	}
	ns, bad := s.namespace(ctx, &req.requestHeader)
	if bad != nil {
		return *bad
	}
	pod := policies.PodFromTemplate(meta, req.Kind.Kind, tmpl)
	return s.judge(&req.requestHeader, set.Review(pod, ns))
}

// judge turns a validation decision into the answer: Deny findings refuse
// with 403 and their messages, Warn findings become admission warnings
// (kubectl prints them), Audit findings become audit annotations.
func (s *Server) judge(req *requestHeader, dec policies.Decision) answer {
	resp := &response{UID: req.UID, Allowed: true}
	denials := s.findings(resp, dec.Findings, true)
	if len(denials) > 0 {
		resp.Allowed = false
		resp.Result = &status{Code: http.StatusForbidden, Reason: string(metav1.StatusReasonForbidden),
			Message: "gracekeeper: " + strings.Join(denials, "; ")}
		return answer{resp: resp, outcome: outcomeDenied}
	}
	return answer{resp: resp, outcome: outcomeAllowed}
}

// findings records metrics and fills warnings and audit annotations; it
// returns the Deny messages when deny is set (validation), else Deny
// findings of the mutation pass are only counted: refusing is the
// validating webhook's job.
func (s *Server) findings(resp *response, fs []policies.Finding, deny bool) []string {
	var denials []string
	for _, f := range fs {
		s.m.findings.WithLabelValues(f.Policy, string(f.Action), string(f.Reason)).Inc()
		switch f.Action {
		case v1alpha1.ActionDeny:
			if deny {
				denials = append(denials, f.Message)
			}
		case v1alpha1.ActionWarn:
			resp.Warnings = append(resp.Warnings, f.Message)
		case v1alpha1.ActionAudit:
			// The API server prefixes the key with the webhook name; keys
			// must be qualified-name parts, so the bounded reason is used.
			if resp.AuditAnnotations == nil {
				resp.AuditAnnotations = map[string]string{}
			}
			k := strings.ToLower(string(f.Reason))
			if prev, ok := resp.AuditAnnotations[k]; ok {
				resp.AuditAnnotations[k] = prev + "; " + f.Message
			} else {
				resp.AuditAnnotations[k] = f.Message
			}
		}
	}
	return denials
}

func gvkString(g metav1.GroupVersionKind) string {
	if g.Kind == "" {
		return "no kind"
	}
	if g.Group == "" {
		return g.Version + " " + g.Kind
	}
	return g.Group + "/" + g.Version + " " + g.Kind
}
