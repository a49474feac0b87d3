package finalizer

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// LogReader reads the end of one container instance's log through the API
// server (GET pods/log), which needs the pods/log permission.
type LogReader interface {
	// TailLog returns at most lines last lines and limitBytes bytes of the
	// container's current instance, or of the one before when previous.
	TailLog(ctx context.Context, namespace, pod, container string, previous bool, lines, limitBytes int64) ([]byte, error)
}

// NewLogReader reads logs with a client-go clientset built from cfg.
func NewLogReader(cfg *rest.Config) (LogReader, error) {
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	return apiLogs{cs}, nil
}

type apiLogs struct{ cs kubernetes.Interface }

func (a apiLogs) TailLog(ctx context.Context, namespace, pod, container string, previous bool, lines, limitBytes int64) ([]byte, error) {
	return a.cs.CoreV1().Pods(namespace).GetLogs(pod, &corev1.PodLogOptions{
		Container: container, Previous: previous, TailLines: &lines, LimitBytes: &limitBytes,
	}).DoRaw(ctx)
}

// logUnavailable says briefly why a log could not be read.
func logUnavailable(err error) string {
	switch {
	case apierrors.IsForbidden(err):
		return "gracekeeper may not read pods/log (the chart grants it with containerExits.readLogs=true)"
	case apierrors.IsNotFound(err), apierrors.IsBadRequest(err):
		return fmt.Sprintf("the API server has no such log (%s)", truncate(err.Error(), 160))
	}
	return truncate(err.Error(), 160)
}
