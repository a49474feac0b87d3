package v1alpha1

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// LifecyclePolicy asks gracekeeper to give matching pods a graceful start and
// a graceful shutdown: lifecycle hooks, a grace period that fits the shutdown
// budget, and finalizers whose work gracekeeper does.
//
// +kubebuilder:object:root=true
// +kubebuilder:resource:scope=Cluster,shortName=lcp,categories=gracekeeper
// +kubebuilder:subresource:status
// +kubebuilder:printcolumn:name="Priority",type=integer,JSONPath=`.spec.priority`
// +kubebuilder:printcolumn:name="Action",type=string,JSONPath=`.spec.validation.action`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Matched",type=integer,JSONPath=`.status.audit.matched`,description="pods and workloads in the cluster the policy selects (background audit)"
// +kubebuilder:printcolumn:name="Violations",type=integer,JSONPath=`.status.audit.violations`,description="of those, the ones whose shutdown budget does not fit (refused under Deny)"
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type LifecyclePolicy struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   LifecyclePolicySpec   `json:"spec,omitempty"`
	Status LifecyclePolicyStatus `json:"status,omitempty"`
}

// LifecyclePolicyList is a list of LifecyclePolicy.
//
// +kubebuilder:object:root=true
type LifecyclePolicyList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []LifecyclePolicy `json:"items"`
}

// LifecyclePolicySpec is what a policy asks for.
//
// +kubebuilder:validation:XValidation:rule="!has(self.cleanup) || !has(self.finalizers) || !(self.cleanup.finalizer in self.finalizers)",message="cleanup.finalizer must not also be listed in finalizers",fieldPath=".cleanup.finalizer"
type LifecyclePolicySpec struct {
	// Priority orders policies that set the same thing: the higher wins; on a
	// tie the policy whose name sorts first wins.
	// +optional
	// +kubebuilder:default=0
	Priority int32 `json:"priority,omitempty"`

	// Match chooses the pods, and the containers within them, that the policy applies to.
	// +optional
	Match Match `json:"match,omitempty"`

	// PreStop is injected into each selected container.
	// +optional
	PreStop *PreStopHook `json:"preStop,omitempty"`

	// PostStart is injected into each selected container.
	// +optional
	PostStart *PostStartHook `json:"postStart,omitempty"`

	// ShutdownSeconds is what the application needs after SIGTERM, for every
	// container of a matched pod (sidecars included). The pod annotation
	// gracekeeper.dev/shutdown-seconds may raise it, and lower it only where
	// allowLowerBudget is set.
	// +optional
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=86400
	ShutdownSeconds *int64 `json:"shutdownSeconds,omitempty"`

	// TerminationGracePeriod says whether to raise the pod's
	// terminationGracePeriodSeconds so that the shutdown budget fits.
	// +optional
	TerminationGracePeriod *TerminationGracePeriod `json:"terminationGracePeriod,omitempty"`

	// Finalizers are built-in gracekeeper finalizers to add to matched pods.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=4
	Finalizers []BuiltinFinalizer `json:"finalizers,omitempty"`

	// Cleanup is an external release step that runs behind its own finalizer
	// once a matched pod has ended.
	// +optional
	Cleanup *Cleanup `json:"cleanup,omitempty"`

	// ContainerExits says what the termination-record finalizer records when
	// a container of a running pod exits (an in-place restart, an OOM kill, a
	// crash), besides the record it writes when the pod is deleted.
	// +optional
	ContainerExits *ContainerExits `json:"containerExits,omitempty"`

	// AllowOptOut honours the pod annotation gracekeeper.dev/skip: "true".
	// +optional
	AllowOptOut bool `json:"allowOptOut,omitempty"`

	// AllowLowerBudget honours the pod annotations
	// gracekeeper.dev/shutdown-seconds and gracekeeper.dev/prestop-seconds
	// where they are lower than this policy's shutdownSeconds or preStop.
	// Off by default: an annotation may always raise the budget, but a pod
	// author could otherwise annotate a pod out of a Deny policy. Where
	// several policies match a pod, every one of them must allow it.
	// +optional
	AllowLowerBudget bool `json:"allowLowerBudget,omitempty"`

	// Validation says what happens when a pod's shutdown budget does not fit
	// its terminationGracePeriodSeconds.
	// +optional
	Validation *Validation `json:"validation,omitempty"`
}

// Match chooses pods and containers. Label selectors and globs are checked
// by the policy webhook (policies.ValidatePolicy): CEL over a selector's
// unbounded lists of unbounded strings would exceed the CRD's cost budget.
type Match struct {
	// NamespaceSelector selects namespaces by label; empty or absent selects
	// every namespace the webhook sees.
	// +optional
	NamespaceSelector *metav1.LabelSelector `json:"namespaceSelector,omitempty"`

	// PodSelector selects pods by label; empty or absent selects every pod.
	// +optional
	PodSelector *metav1.LabelSelector `json:"podSelector,omitempty"`

	// Containers are name globs (path.Match syntax) of containers that get
	// hooks. Absent means ["*"].
	// +optional
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MinLength=1
	// +kubebuilder:validation:items:MaxLength=253
	Containers []string `json:"containers,omitempty"`

	// ExcludeContainers are name globs of containers that never get hooks,
	// e.g. ["istio-proxy", "linkerd-proxy"].
	// +optional
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MinLength=1
	// +kubebuilder:validation:items:MaxLength=253
	ExcludeContainers []string `json:"excludeContainers,omitempty"`

	// IncludeSidecars also gives hooks to init containers with
	// restartPolicy: Always (native sidecars, KEP-753).
	// +optional
	IncludeSidecars bool `json:"includeSidecars,omitempty"`
}

// SleepAction is the native sleep lifecycle action (KEP-3960): it needs no
// shell in the image.
type SleepAction struct {
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=86400
	Seconds int64 `json:"seconds"`
}

// ExecAction runs a command in the container.
type ExecAction struct {
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=64
	Command []string `json:"command"`

	// BudgetSeconds declares how long the command takes. Required on preStop,
	// where it counts in the shutdown budget; not allowed on postStart.
	// +optional
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=86400
	BudgetSeconds *int64 `json:"budgetSeconds,omitempty"`
}

// HTTPGetAction sends an HTTP GET to the container. The rules are the API
// server's for a pod's httpGet handler (validateHTTPGetAction), so that a
// policy it accepts never yields a pod it refuses.
//
// A port name's syntax is left to the policy webhook: a regular expression
// on a string of unbounded length would exceed the CRD's CEL cost budget.
//
// +kubebuilder:validation:XValidation:rule="type(self.port) != int || (self.port >= 1 && self.port <= 65535)",message="port must be between 1 and 65535, inclusive",fieldPath=".port"
type HTTPGetAction struct {
	// +optional
	Path string `json:"path,omitempty"`

	// Port is a number or an IANA_SVC_NAME.
	// +kubebuilder:validation:XIntOrString
	Port intstr.IntOrString `json:"port"`

	// +optional
	Host string `json:"host,omitempty"`

	// +optional
	// +kubebuilder:validation:Enum=HTTP;HTTPS
	Scheme corev1.URIScheme `json:"scheme,omitempty"`

	// +optional
	// +kubebuilder:validation:MaxItems=16
	HTTPHeaders []HTTPHeader `json:"httpHeaders,omitempty"`

	// BudgetSeconds declares how long the request takes. Required on preStop,
	// where it counts in the shutdown budget; not allowed on postStart.
	// +optional
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=86400
	BudgetSeconds *int64 `json:"budgetSeconds,omitempty"`
}

// HTTPHeader is a header of an httpGet hook: corev1.HTTPHeader, with the
// name's syntax as the API server checks it on pods
// (k8s.io/apimachinery/pkg/util/validation IsHTTPHeaderName).
type HTTPHeader struct {
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=256
	// +kubebuilder:validation:Pattern=`^[-A-Za-z0-9]+$`
	Name string `json:"name"`
	// +kubebuilder:validation:MaxLength=4096
	Value string `json:"value"`
}

// HookAction is exactly one of sleep, exec or httpGet (the rule sits on the
// types that embed it: controller-gen does not carry type rules through inline).
type HookAction struct {
	// +optional
	Sleep *SleepAction `json:"sleep,omitempty"`
	// +optional
	Exec *ExecAction `json:"exec,omitempty"`
	// +optional
	HTTPGet *HTTPGetAction `json:"httpGet,omitempty"`

	// Overwrite replaces a hook the container already has; false keeps the
	// container's own hook.
	// +optional
	Overwrite bool `json:"overwrite,omitempty"`
}

// PreStopHook is injected as each selected container's lifecycle.preStop.
//
// +kubebuilder:validation:XValidation:rule="(has(self.sleep) ? 1 : 0) + (has(self.exec) ? 1 : 0) + (has(self.httpGet) ? 1 : 0) == 1",message="exactly one of sleep, exec or httpGet must be set"
// +kubebuilder:validation:XValidation:rule="!has(self.exec) || has(self.exec.budgetSeconds)",message="exec needs budgetSeconds: how long the command takes counts in the shutdown budget",fieldPath=".exec.budgetSeconds"
// +kubebuilder:validation:XValidation:rule="!has(self.httpGet) || has(self.httpGet.budgetSeconds)",message="httpGet needs budgetSeconds: how long the request takes counts in the shutdown budget",fieldPath=".httpGet.budgetSeconds"
type PreStopHook struct {
	HookAction `json:",inline"`
}

// PostStartHook is injected as each selected container's lifecycle.postStart.
//
// +kubebuilder:validation:XValidation:rule="(has(self.sleep) ? 1 : 0) + (has(self.exec) ? 1 : 0) + (has(self.httpGet) ? 1 : 0) == 1",message="exactly one of sleep, exec or httpGet must be set"
// +kubebuilder:validation:XValidation:rule="!has(self.exec) || !has(self.exec.budgetSeconds)",message="budgetSeconds applies only to preStop",fieldPath=".exec.budgetSeconds"
// +kubebuilder:validation:XValidation:rule="!has(self.httpGet) || !has(self.httpGet.budgetSeconds)",message="budgetSeconds applies only to preStop",fieldPath=".httpGet.budgetSeconds"
type PostStartHook struct {
	HookAction `json:",inline"`
}

// TerminationGracePeriod controls raising terminationGracePeriodSeconds.
type TerminationGracePeriod struct {
	// Fit raises the pod's terminationGracePeriodSeconds to exactly its
	// shutdown budget when the budget is larger; it never lowers it.
	// +optional
	Fit bool `json:"fit,omitempty"`

	// MaxSeconds bounds what Fit may raise it to.
	// +optional
	// +kubebuilder:default=300
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=86400
	MaxSeconds *int64 `json:"maxSeconds,omitempty"`
}

// BuiltinFinalizer names a finalizer whose work gracekeeper itself does.
// +kubebuilder:validation:Enum=gracekeeper.dev/termination-record
type BuiltinFinalizer string

// TerminationRecordFinalizer records how each container ended before the pod goes away.
const TerminationRecordFinalizer BuiltinFinalizer = "gracekeeper.dev/termination-record"

// Cleanup is an external release step behind a finalizer.
//
// +kubebuilder:validation:XValidation:rule="self.url.startsWith('https://') || self.url.matches('^http://[a-z0-9]([-a-z0-9.]*[a-z0-9])?[.]svc([.]cluster[.]local)?(:[0-9]+)?(/.*)?$')",message="url must be https, or plain http only to a cluster-local Service (host ending in .svc or .svc.cluster.local)",fieldPath=".url"
type Cleanup struct {
	// Finalizer is the domain-qualified finalizer name that holds the pod
	// until the release step succeeds or is given up.
	// +kubebuilder:validation:MaxLength=316
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)+/[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$`
	// +kubebuilder:validation:XValidation:rule="self.matches('^[^/]{1,253}/')",message="the domain part (before '/') must be at most 253 characters, as the API server requires of a finalizer name"
	Finalizer string `json:"finalizer"`

	// URL receives a POST of the pod's identity and final state; any 2xx
	// answer means done.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=2048
	// +kubebuilder:validation:XValidation:rule="isURL(self)",message="url must be an absolute URL"
	URL string `json:"url"`

	// TimeoutSeconds bounds each POST.
	// +optional
	// +kubebuilder:default=5
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=60
	TimeoutSeconds int32 `json:"timeoutSeconds,omitempty"`

	// GiveUpAfterSeconds, counted from the pod's deletion, removes the
	// finalizer anyway and records a Warning event; 0 never gives up.
	// +optional
	// +kubebuilder:default=600
	// +kubebuilder:validation:Minimum=0
	GiveUpAfterSeconds *int64 `json:"giveUpAfterSeconds,omitempty"`

	// When lists when the cleanup is called: Deletion (always: the finalizer
	// holds the pod for it) and, with ContainerExit, on every container exit
	// of the running pod too, with the exit's record in the request. An exit
	// call gives up giveUpAfterSeconds after the exit. (Not "on": YAML 1.1,
	// which kubectl's YAML reader follows, reads an unquoted on as true.)
	// +optional
	// +listType=set
	// +kubebuilder:default={Deletion}
	// +kubebuilder:validation:MaxItems=2
	// +kubebuilder:validation:XValidation:rule="'Deletion' in self",message="when must include Deletion: the cleanup finalizer holds the pod for its deletion call"
	When []CleanupTrigger `json:"when,omitempty"`
}

// ContainerExits configures the records of container exits of running pods
// that carry the termination-record finalizer (docs/container-exits.md).
type ContainerExits struct {
	// Record writes a record (an Event on the pod, aggregated on its owner,
	// and a metric) for every container exit, in-place restarts included.
	// On by default: the most common OOM kill restarts the container in place,
	// and the pod status keeps only the last one.
	// +optional
	// +kubebuilder:default=true
	Record *bool `json:"record,omitempty"`

	// LogLines adds up to this many last lines of the exited container's log
	// (read through the API, previous=true) to each record, at most 700 bytes
	// of them. 0 (the default) reads no log: it needs the chart's
	// containerExits.readLogs, which grants gracekeeper pods/log, and the
	// lines become readable by whoever may read the namespace's Events.
	// +optional
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=50
	LogLines int32 `json:"logLines,omitempty"`
}

// CleanupTrigger says when a cleanup is called.
// +kubebuilder:validation:Enum=Deletion;ContainerExit
type CleanupTrigger string

const (
	// CleanupOnDeletion calls the cleanup once the deleted pod has ended.
	CleanupOnDeletion CleanupTrigger = "Deletion"
	// CleanupOnContainerExit also calls it each time a container of the
	// running pod exits (an in-place restart, an OOM kill, a crash).
	CleanupOnContainerExit CleanupTrigger = "ContainerExit"
)

// ValidationAction says what happens when a shutdown budget does not fit.
// +kubebuilder:validation:Enum=Deny;Warn;Audit
type ValidationAction string

const (
	// ActionDeny refuses the object with a message.
	ActionDeny ValidationAction = "Deny"
	// ActionWarn admits it with an admission warning that kubectl shows.
	ActionWarn ValidationAction = "Warn"
	// ActionAudit admits it silently and counts it in metrics and audit annotations.
	ActionAudit ValidationAction = "Audit"
)

// Validation configures budget validation.
type Validation struct {
	// +optional
	// +kubebuilder:default=Deny
	Action ValidationAction `json:"action,omitempty"`
}

// LifecyclePolicyStatus is what gracekeeper observed of the policy.
type LifecyclePolicyStatus struct {
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// Conditions: Ready, or Invalid with a reason.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// Audit is what the background audit last found in the cluster; unset
	// while the audit is off.
	// +optional
	Audit *AuditStatus `json:"audit,omitempty"`
}

// AuditStatus counts the existing pods and workloads the policy selects, as
// judged by the background audit with the same engine as admission.
type AuditStatus struct {
	// Matched is the number of pods and workloads the policy selects.
	Matched int32 `json:"matched"`
	// Violations is the number of those whose shutdown budget does not fit
	// (admission refuses them when the action is Deny).
	Violations int32 `json:"violations"`
	// Warnings is the number of those with other findings (an unknown
	// preStop duration, a hook that could not be injected, ...).
	// +optional
	Warnings int32 `json:"warnings,omitempty"`
	// LastAuditTime is when these counts were last confirmed by a pass
	// over the whole cluster, or changed.
	// +optional
	LastAuditTime *metav1.Time `json:"lastAuditTime,omitempty"`
}
