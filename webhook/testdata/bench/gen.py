#!/usr/bin/env python3
"""Generates the benchmark AdmissionReviews: a ~6 KB and a ~23 KB pod as a
ReplicaSet controller sends them (env, probes, mounts, a mesh proxy and a
native sidecar). Run from this directory: python3 gen.py"""
import json

def container(name, image, nenv):
    return {"name": name, "image": image,
            "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}],
            "env": [{"name": "ENV_VAR_%03d" % i, "value": "value-of-environment-variable-%03d" % i} for i in range(nenv)],
            "resources": {"limits": {"cpu": "500m", "memory": "512Mi"}, "requests": {"cpu": "100m", "memory": "128Mi"}},
            "volumeMounts": [{"name": "config", "mountPath": "/etc/config", "readOnly": True},
                             {"name": "kube-api-access-x7k2p", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount", "readOnly": True}],
            "livenessProbe": {"httpGet": {"path": "/healthz", "port": 8080, "scheme": "HTTP"}, "initialDelaySeconds": 5, "periodSeconds": 10, "timeoutSeconds": 1, "successThreshold": 1, "failureThreshold": 3},
            "readinessProbe": {"httpGet": {"path": "/readyz", "port": 8080, "scheme": "HTTP"}, "periodSeconds": 5, "timeoutSeconds": 1, "successThreshold": 1, "failureThreshold": 3},
            "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File", "imagePullPolicy": "IfNotPresent",
            "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "runAsNonRoot": True, "capabilities": {"drop": ["ALL"]}}}

def pod(ncont, nenv):
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"generateName": "checkout-5d8f7c9b4-", "namespace": "shop",
                         "labels": {"app": "svc-0000", "pod-template-hash": "5d8f7c9b4", "version": "v2", "team": "payments"},
                         "annotations": {"prometheus.io/scrape": "true", "prometheus.io/port": "9090", "kubectl.kubernetes.io/restartedAt": "2026-11-26T12:00:00Z"},
                         "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "checkout-5d8f7c9b4", "uid": "5e0b7f0a-5a1c-4b1e-9a53-1d5b8e3c2f10", "controller": True, "blockOwnerDeletion": True}]},
            "spec": {"containers": [container("app" if i == 0 else "worker-%d" % i, "registry.example.com/shop/checkout:v2.14.3", nenv) for i in range(ncont)] +
                                   [container("istio-proxy", "docker.io/istio/proxyv2:1.24.0", 8)],
                     "initContainers": [dict(container("log-shipper", "fluent/fluent-bit:3.1", 4), restartPolicy="Always")],
                     "volumes": [{"name": "config", "configMap": {"name": "checkout-config", "defaultMode": 420}},
                                 {"name": "kube-api-access-x7k2p", "projected": {"defaultMode": 420, "sources": [{"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}}, {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}}]}}],
                     "restartPolicy": "Always", "terminationGracePeriodSeconds": 30, "dnsPolicy": "ClusterFirst",
                     "serviceAccountName": "checkout", "serviceAccount": "checkout", "securityContext": {"runAsUser": 1000, "fsGroup": 2000},
                     "schedulerName": "default-scheduler", "enableServiceLinks": True, "preemptionPolicy": "PreemptLowerPriority", "priority": 0,
                     "tolerations": [{"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
                                     {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}]}}

def review(p):
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {"uid": "0f5a8a2c-7b7e-4f5e-9d3a-2c1e6b7a9d01", "kind": {"group": "", "version": "v1", "kind": "Pod"},
                        "resource": {"group": "", "version": "v1", "resource": "pods"}, "requestKind": {"group": "", "version": "v1", "kind": "Pod"},
                        "requestResource": {"group": "", "version": "v1", "resource": "pods"},
                        "namespace": "shop", "operation": "CREATE",
                        "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller", "uid": "8c1d", "groups": ["system:serviceaccounts", "system:serviceaccounts:kube-system", "system:authenticated"]},
                        "object": p, "oldObject": None, "dryRun": False,
                        "options": {"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1"}}}

for fn, ncont, nenv in [("pod-6k.json", 1, 2), ("pod-23k.json", 5, 39)]:
    b = json.dumps(review(pod(ncont, nenv)), separators=(",", ":"))
    with open(fn, "w") as f:
        f.write(b)
    print(fn, len(b))
