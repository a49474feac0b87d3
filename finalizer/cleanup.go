package finalizer

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
)

// CleanupRequest is the JSON body POSTed to a cleanup URL. The endpoint must
// treat a repeated IdempotencyKey (the pod UID; for a container exit the pod
// UID, container and restart count) as the same request: after a controller
// restart the same pod or exit may be posted twice.
type CleanupRequest struct {
	IdempotencyKey string `json:"idempotencyKey"`
	// Policy and Finalizer say which cleanup step this is.
	Policy     string         `json:"policy"`
	Finalizer  string         `json:"finalizer"`
	Namespace  string         `json:"namespace"`
	Name       string         `json:"name"`
	UID        types.UID      `json:"uid"`
	Owner      Owner          `json:"owner"`
	Node       string         `json:"node,omitempty"`
	Cause      Cause          `json:"cause"`
	Containers []ContainerEnd `json:"containers"`
	// Exit is the container exit this call is for (cause ContainerExit,
	// cleanup.when: ContainerExit); its IdempotencyKey is "<uid>/<container>/<restartCount>".
	Exit *ExitRecord `json:"exit,omitempty"`
}

func newCleanupRequest(pod *corev1.Pod, owner Owner, rec Record, t target) CleanupRequest {
	return CleanupRequest{
		IdempotencyKey: string(pod.UID),
		Policy:         t.policy, Finalizer: t.finalizer,
		Namespace: pod.Namespace, Name: pod.Name, UID: pod.UID,
		Owner: owner, Node: pod.Spec.NodeName, Cause: rec.Cause, Containers: rec.Containers,
	}
}

// maxErrorBody bounds how much of a failed answer goes into logs.
const maxErrorBody = 256

// post sends one cleanup request; nil means a 2xx answer. timeout bounds the
// whole exchange (connect, TLS, headers, body). A 3xx is a failure: the
// client never follows redirects (Options.HTTPClient).
func post(ctx context.Context, hc *http.Client, url string, timeout time.Duration, body CleanupRequest) error {
	raw, err := json.Marshal(body)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(raw))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", body.IdempotencyKey)
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	snippet, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20)) // let the connection be reused
	if resp.StatusCode >= 300 && resp.StatusCode < 400 {
		return fmt.Errorf("POST %s: %s: redirects are not followed", url, resp.Status)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("POST %s: %s: %q", url, resp.Status, bytes.TrimSpace(snippet))
	}
	return nil
}
