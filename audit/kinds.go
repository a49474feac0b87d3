package audit

import (
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// kind is one audited kind: its name as check prints it, its apiVersion,
// and how to make an empty object and list of it.
type kind struct {
	name, apiVersion string
	obj              func() client.Object
	list             func() client.ObjectList
}

// kinds are pods, then the workload kinds whose pod template
// policies.TemplateOf reads (what the validating webhook judges). An object
// TemplateOf does not read is left out by check.ReviewLive, so this list can
// only be narrower than the engine's, never judge differently.
func kinds() []kind {
	return []kind{
		{"Pod", "v1", func() client.Object { return &corev1.Pod{} }, func() client.ObjectList { return &corev1.PodList{} }},
		{"Deployment", "apps/v1", func() client.Object { return &appsv1.Deployment{} }, func() client.ObjectList { return &appsv1.DeploymentList{} }},
		{"StatefulSet", "apps/v1", func() client.Object { return &appsv1.StatefulSet{} }, func() client.ObjectList { return &appsv1.StatefulSetList{} }},
		{"DaemonSet", "apps/v1", func() client.Object { return &appsv1.DaemonSet{} }, func() client.ObjectList { return &appsv1.DaemonSetList{} }},
		{"ReplicaSet", "apps/v1", func() client.Object { return &appsv1.ReplicaSet{} }, func() client.ObjectList { return &appsv1.ReplicaSetList{} }},
		{"ReplicationController", "v1", func() client.Object { return &corev1.ReplicationController{} }, func() client.ObjectList { return &corev1.ReplicationControllerList{} }},
		{"Job", "batch/v1", func() client.Object { return &batchv1.Job{} }, func() client.ObjectList { return &batchv1.JobList{} }},
		{"CronJob", "batch/v1", func() client.Object { return &batchv1.CronJob{} }, func() client.ObjectList { return &batchv1.CronJobList{} }},
	}
}
