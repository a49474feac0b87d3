package certs_test

import (
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// neverCalled is a clientset for option checks only; nothing listens on its address.
func neverCalled() kubernetes.Interface {
	return kubernetes.NewForConfigOrDie(&rest.Config{Host: "https://127.0.0.1:1"})
}
