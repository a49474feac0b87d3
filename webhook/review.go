package webhook

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// envelope is the part of an AdmissionReview v1 the handlers read. The object
// stays raw: it is decoded once, into the type the route expects, and the
// patch is applied by the API server to these very bytes.
type envelope struct {
	APIVersion string   `json:"apiVersion"`
	Kind       string   `json:"kind"`
	Request    *request `json:"request"`
}

type request struct {
	requestHeader
	Object json.RawMessage `json:"object"`
	// OldObject is the stored object on UPDATE (null otherwise): a workload
	// UPDATE is judged only when its pod template differs from it.
	OldObject json.RawMessage `json:"oldObject"`
}

// requestHeader is what the handlers read of admission/v1 AdmissionRequest
// (k8s.io/api/admission/v1/types.go) besides the object.
type requestHeader struct {
	UID       types.UID               `json:"uid"`
	Kind      metav1.GroupVersionKind `json:"kind"`
	Namespace string                  `json:"namespace"`
	Name      string                  `json:"name"`
	Operation string                  `json:"operation"`
}

// podEnvelope decodes a pod review in one pass, the object straight into
// the typed pod: the patch is computed from typed pods (podpatch.Pod), so the
// raw object bytes are never needed on the hot path.
type podEnvelope struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Request    *struct {
		requestHeader
		Object *corev1.Pod `json:"object"`
	} `json:"request"`
}

var podGVK = metav1.GroupVersionKind{Version: "v1", Kind: "Pod"}

// decodePodReview returns the request and its pod. The fast one-pass decode
// serves well-formed pod reviews; anything else takes the careful path,
// whose errors say exactly what is wrong.
func decodePodReview(body []byte) (*requestHeader, *corev1.Pod, error) {
	var e podEnvelope
	if err := fastUnmarshal(body, &e); err == nil && e.APIVersion == "admission.k8s.io/v1" && e.Kind == "AdmissionReview" &&
		e.Request != nil && e.Request.UID != "" && e.Request.Object != nil && e.Request.Kind == podGVK {
		return &e.Request.requestHeader, e.Request.Object, nil
	}
	req, err := decodeEnvelope(body)
	if err != nil {
		if req == nil {
			return nil, nil, err
		}
		return &req.requestHeader, nil, err
	}
	pod, err := decodePod(req)
	return &req.requestHeader, pod, err
}

// badRequest is an error answered as allowed:false, code 400.
type badRequest struct{ msg string }

func (e *badRequest) Error() string { return e.msg }

func badf(format string, args ...any) error { return &badRequest{fmt.Sprintf(format, args...)} }

// decodeEnvelope checks what every route needs: AdmissionReview v1 with a
// request and an object. The uid is returned whenever it could be read, so
// the error answer can echo it.
func decodeEnvelope(body []byte) (*request, error) {
	var e envelope
	if err := unmarshal(body, &e); err != nil {
		return nil, badf("request body is not a JSON AdmissionReview: %v", err)
	}
	if e.APIVersion != "admission.k8s.io/v1" || e.Kind != "AdmissionReview" {
		var uid types.UID
		if e.Request != nil {
			uid = e.Request.UID
		}
		return &request{requestHeader: requestHeader{UID: uid}}, badf("expected apiVersion admission.k8s.io/v1, kind AdmissionReview; got apiVersion %q, kind %q", e.APIVersion, e.Kind)
	}
	if e.Request == nil {
		return nil, badf("AdmissionReview has no request")
	}
	if e.Request.UID == "" {
		return e.Request, badf("AdmissionReview request has no uid")
	}
	o := bytes.TrimSpace(e.Request.Object)
	if len(o) == 0 || bytes.Equal(o, []byte("null")) {
		return e.Request, badf("AdmissionReview request %s has no object", e.Request.UID)
	}
	return e.Request, nil
}

// response is admissionv1.AdmissionResponse with only the fields we set, so
// encoding stays small and allocation-light; field names follow
// k8s.io/api/admission/v1/types.go.
type response struct {
	UID              types.UID         `json:"uid"`
	Allowed          bool              `json:"allowed"`
	Result           *status           `json:"status,omitempty"`
	Patch            []byte            `json:"patch,omitempty"`
	PatchType        string            `json:"patchType,omitempty"`
	AuditAnnotations map[string]string `json:"auditAnnotations,omitempty"`
	Warnings         []string          `json:"warnings,omitempty"`
}

type status struct {
	Code    int32  `json:"code,omitempty"`
	Reason  string `json:"reason,omitempty"`
	Message string `json:"message,omitempty"`
}

type reviewOut struct {
	APIVersion string    `json:"apiVersion"`
	Kind       string    `json:"kind"`
	Response   *response `json:"response"`
}

func encodeReview(r *response) ([]byte, error) {
	return fastMarshal(reviewOut{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview", Response: r})
}

// errorResponse answers bad input: allowed false, code 400, the message.
func errorResponse(uid types.UID, err error) *response {
	code := int32(400)
	var br *badRequest
	if !errors.As(err, &br) {
		code = 500
	}
	return &response{UID: uid, Allowed: false, Result: &status{Code: code, Message: err.Error()}}
}
