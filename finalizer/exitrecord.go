package finalizer

import (
	"bytes"
	"fmt"
	"strings"
	"unicode/utf8"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// CauseContainerExit is the cause of a cleanup request sent for a container
// exit of a running pod (cleanup.when: ContainerExit).
const CauseContainerExit Cause = "ContainerExit"

// Bounds of the log lines in an exit record.
const (
	// MaxLogTailBytes is how much of the end of the log a record keeps: it
	// fits an Event message (1024 bytes) next to the exit's summary.
	MaxLogTailBytes = 700
	// maxLogReadBytes bounds what one log request may return (LimitBytes),
	// so a container writing long lines cannot make the controller read more.
	maxLogReadBytes = 64 << 10
)

// ExitRecord is one container exit of a pod. It is part of the cleanup POST
// body of an exit (CleanupRequest.Exit) and of the controller's log line.
type ExitRecord struct {
	Container string `json:"container"`
	// Sidecar marks an init container with restartPolicy: Always; Init a
	// regular init container (only its failures are recorded).
	Sidecar bool `json:"sidecar,omitempty"`
	Init    bool `json:"init,omitempty"`
	// RestartCount is the exited instance's: 0 for the container's first run.
	RestartCount int32 `json:"restartCount"`
	ExitCode     int32 `json:"exitCode"`
	// Reason is the runtime's: Completed, Error, OOMKilled, ...
	Reason string `json:"reason,omitempty"`
	// Signal is the one that ended it: the runtime's report, else exit code - 128.
	Signal     int32        `json:"signal,omitempty"`
	StartedAt  *metav1.Time `json:"startedAt,omitempty"`
	FinishedAt *metav1.Time `json:"finishedAt,omitempty"`
	// RunSeconds is finishedAt - startedAt.
	RunSeconds *int64 `json:"runSeconds,omitempty"`
	// MemoryLimit and MemoryRequest are the container's, for OOM kills.
	MemoryLimit   string `json:"memoryLimit,omitempty"`
	MemoryRequest string `json:"memoryRequest,omitempty"`
	// MissedExits counts earlier exits of this container that were not
	// recorded (the kubelet keeps only the last two; gracekeeper was not
	// running, or none had recorded this pod before).
	MissedExits int32 `json:"missedExits,omitempty"`
	// Log is the end of the exited instance's log, when the policy asks.
	Log *LogTail `json:"log,omitempty"`
}

// LogTail is the end of an exited container's log.
type LogTail struct {
	// Lines is how many lines Text holds (the last ones; the first may be cut).
	Lines int    `json:"lines"`
	Text  string `json:"text,omitempty"`
	// Truncated: the lines asked for did not fit MaxLogTailBytes; Text is their end.
	Truncated bool `json:"truncated,omitempty"`
	// Unavailable says why there is no log (no pods/log permission, the
	// container's log is gone, it restarted again before it was read, ...).
	Unavailable string `json:"unavailable,omitempty"`
}

func buildExitRecord(e observedExit, missed int32) ExitRecord {
	t := e.t
	r := ExitRecord{Container: e.container.name, Sidecar: e.container.sidecar, Init: e.container.init,
		RestartCount: e.restart, ExitCode: t.ExitCode, Reason: t.Reason, Signal: t.Signal, MissedExits: missed}
	if r.Signal == 0 && r.ExitCode > 128 {
		r.Signal = r.ExitCode - 128
	}
	if !t.StartedAt.IsZero() {
		s := t.StartedAt
		r.StartedAt = &s
	}
	if !t.FinishedAt.IsZero() {
		f := t.FinishedAt
		r.FinishedAt = &f
	}
	if r.StartedAt != nil && r.FinishedAt != nil && !r.FinishedAt.Before(r.StartedAt) {
		d := int64(r.FinishedAt.Sub(r.StartedAt.Time).Seconds())
		r.RunSeconds = &d
	}
	if t.Reason == "OOMKilled" && e.container.spec != nil {
		res := e.container.spec.Resources
		if q, ok := res.Limits[corev1.ResourceMemory]; ok {
			r.MemoryLimit = q.String()
		}
		if q, ok := res.Requests[corev1.ResourceMemory]; ok {
			r.MemoryRequest = q.String()
		}
	}
	return r
}

// end is the record as a ContainerEnd, for the containers list of a cleanup request.
func (r ExitRecord) end() ContainerEnd {
	code := r.ExitCode
	return ContainerEnd{Name: r.Container, Sidecar: r.Sidecar, State: "terminated", ExitCode: &code,
		Reason: r.Reason, Signal: r.Signal, FinishedAt: r.FinishedAt}
}

// eventReason is the record's Event reason: the exit reason folded into the
// metric's bounded set, so `kubectl get events --field-selector
// reason=OOMKilled` finds every OOM kill.
func (r ExitRecord) eventReason() (reason, typ string) {
	reason = reasonLabel(r.end())
	if r.ExitCode == 0 {
		return reason, corev1.EventTypeNormal
	}
	return reason, corev1.EventTypeWarning
}

// summary is the exit in one line, without the log.
func (r ExitRecord) summary() string {
	var b strings.Builder
	fmt.Fprintf(&b, "container %s exited with %d", r.Container, r.ExitCode)
	if r.Reason != "" {
		b.WriteString(" " + r.Reason)
	}
	if r.Signal != 0 {
		b.WriteString(" " + signalName(r.Signal))
	}
	if r.RunSeconds != nil {
		fmt.Fprintf(&b, " after %ds", *r.RunSeconds)
	}
	fmt.Fprintf(&b, " (restart count %d", r.RestartCount)
	if r.MemoryLimit != "" || r.MemoryRequest != "" {
		fmt.Fprintf(&b, "; memory limit %s, request %s", orNone(r.MemoryLimit), orNone(r.MemoryRequest))
	}
	b.WriteString(")")
	if r.MissedExits > 0 {
		fmt.Fprintf(&b, "; %d earlier exit(s) of this container were not recorded", r.MissedExits)
	}
	return b.String()
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

// message is the pod Event's text: the summary, then as much of the end of
// the log as fits the Event message limit.
func (r ExitRecord) message() string {
	head := r.summary()
	if r.Log == nil {
		return head
	}
	if r.Log.Unavailable != "" {
		return head + "; log unavailable: " + r.Log.Unavailable
	}
	if r.Log.Lines == 0 {
		return head + "; the log was empty"
	}
	head += fmt.Sprintf("; last %d log line(s):\n", r.Log.Lines)
	room := maxEventMessage - len(head)
	if room <= 3 {
		return head
	}
	return head + cutFront(r.Log.Text, room)
}

// cutFront keeps the last n bytes of s, on a rune boundary, marking a cut with "...".
func cutFront(s string, n int) string {
	if len(s) <= n {
		return s
	}
	s = s[len(s)-(n-3):]
	for len(s) > 0 && !utf8.RuneStart(s[0]) {
		s = s[1:]
	}
	return "..." + s
}

// tailOf bounds a log read: at most lines lines and MaxLogTailBytes bytes,
// the last ones, whole lines where possible. raw as long as readLimit was
// cut by it (its end is then not the log's end): that is marked truncated.
func tailOf(raw []byte, lines int, readLimit int) LogTail {
	cut := readLimit > 0 && len(raw) >= readLimit
	raw = bytes.TrimRight(raw, "\n")
	if len(raw) == 0 {
		return LogTail{}
	}
	ls := bytes.Split(raw, []byte("\n"))
	if len(ls) > lines {
		ls = ls[len(ls)-lines:]
	}
	out := LogTail{}
	size := 0
	keep := 0
	for i := len(ls) - 1; i >= 0; i-- {
		if size+len(ls[i])+1 > MaxLogTailBytes {
			break
		}
		size += len(ls[i]) + 1
		keep++
	}
	text := string(bytes.Join(ls[len(ls)-keep:], []byte("\n")))
	if keep < len(ls) {
		out.Truncated = true
		if keep == 0 {
			// One line longer than the bound: keep its end.
			text = cutFront(string(ls[len(ls)-1]), MaxLogTailBytes)
			keep = 1
		}
	}
	if cut {
		out.Truncated = true
	}
	out.Lines, out.Text = keep, strings.ToValidUTF8(text, "?")
	return out
}
