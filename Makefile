# gracekeeper — see README.md. Everything here needs only Go (and, for the
# local e2e node, root on Linux); binaries are cached under ./bin.

SHELL := /usr/bin/env bash
.SHELLFLAGS := -eu -o pipefail -c

K8S_VERSION        ?= v1.37.2
CONTROLLER_GEN_VER ?= v0.23.0
BIN                := $(CURDIR)/bin
K8S_BIN            := $(BIN)/k8s/$(K8S_VERSION)
CONTROLLER_GEN     := $(BIN)/controller-gen-$(CONTROLLER_GEN_VER)
IMG                ?= gracekeeper:dev
VERSION            ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS            := -s -w -X main.Version=$(VERSION)
GO_TEST_FLAGS      ?= -count=1
export GRACEKEEPER_TEST_ASSETS := $(K8S_BIN)

.PHONY: all build test unit lint manifests generate verify-generated demo test-assets \
        bench bench-cluster docker-build e2e-kind e2e-local cluster-up cluster-down clean fuzz fuzz-short

all: build

build: ## Build the gracekeeper binary into bin/.
	CGO_ENABLED=0 go build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/gracekeeper ./cmd/gracekeeper

# node-assets, not just test-assets: test/controllers and test/controlplane run
# the real kube-controller-manager; it needs only Go to build, root or not.
test: node-assets ## Unit, golden, chart and integration tests against a real kube-apiserver + etcd (+ kube-controller-manager), each fuzz target for FUZZTIME, then the e2e suite on a real local node (Linux, root; else skipped).
	go test $(GO_TEST_FLAGS) ./...
	@$(MAKE) --no-print-directory fuzz-short
	@$(MAKE) --no-print-directory e2e-local

# Fuzz targets as package:Target. `go test -fuzz` takes one target per
# package per run, hence one run each; new inputs that fail are written to
# the package's testdata/fuzz/<Target>/ (commit them with the fix).
FUZZ_TARGETS := \
  ./webhook:FuzzReviewBytes ./webhook:FuzzMutatePodObject \
  ./policies:FuzzAnnotations ./policies:FuzzSeconds \
  ./finalizer:FuzzOwnedFinalizers ./check:FuzzCheck
FUZZTIME      ?= 10s
FUZZTIME_LONG ?= 10m
# Minimizing each new interesting input takes up to 60s by default; in a
# 10s run that leaves almost no time to fuzz, so short runs minimize for 1s.
FUZZMINIMIZE  ?= 1s

fuzz-short: ## Each fuzz target for FUZZTIME (10s), as part of make test.
	@for t in $(FUZZ_TARGETS); do pkg=$${t%%:*}; fn=$${t##*:}; \
	  echo ">> fuzz $$fn in $$pkg for $(FUZZTIME)"; \
	  go test -run '^$$' -fuzz "^$$fn\$$" -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMINIMIZE) $$pkg || exit 1; done

fuzz: ## Each fuzz target for FUZZTIME_LONG (10m).
	@$(MAKE) --no-print-directory fuzz-short FUZZTIME=$(FUZZTIME_LONG) FUZZMINIMIZE=60s

unit: ## Only the tests that need no control plane (go test -short skips the rest, saying so).
	go test $(GO_TEST_FLAGS) -short ./...

lint: ## gofmt + go vet.
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	go vet ./...
	go vet -tags e2e ./test/e2e/ ./test/cluster/
	cd test/tools && go vet ./...

$(CONTROLLER_GEN):
	@echo ">> building controller-gen $(CONTROLLER_GEN_VER)"
	@mkdir -p $(BIN)/tmp
	GOBIN=$(BIN)/tmp go install sigs.k8s.io/controller-tools/cmd/controller-gen@$(CONTROLLER_GEN_VER)
	mv $(BIN)/tmp/controller-gen $@

manifests: $(CONTROLLER_GEN) ## Regenerate deepcopy and the CRD (config/crd and the chart's files/crds/, which templates/crds.yaml installs), and the chart's README.
	$(CONTROLLER_GEN) object:headerFile=hack/boilerplate.go.txt paths=./policies/...
	$(CONTROLLER_GEN) crd:crdVersions=v1 paths=./policies/... output:crd:dir=config/crd
	cp config/crd/gracekeeper.dev_lifecyclepolicies.yaml charts/gracekeeper/files/crds/
	go run ./hack/chart-readme charts/gracekeeper

generate: manifests

verify-generated: manifests ## Fail when generated files differ from what is checked in.
	@if [ -n "$$(git status --porcelain -- policies config charts/gracekeeper/files/crds charts/gracekeeper/README.md)" ]; then \
	  echo "generated files are stale; run 'make manifests' and commit:"; git status --porcelain -- policies config charts/gracekeeper/files/crds charts/gracekeeper/README.md; git diff --stat; exit 1; fi

NODE_BINS := kube-controller-manager kube-scheduler kubelet kube-proxy
# Stamp the version as hack/lib/version.sh does: unstamped binaries report
# v0.0.0-master+$$Format:%H$$, which helm cannot parse against a chart's kubeVersion.
K8S_VERSION_LDFLAGS := $(foreach p,k8s.io/component-base/version k8s.io/client-go/pkg/version,\
  -X $(p).gitVersion=$(K8S_VERSION) -X $(p).gitMajor=$(word 1,$(subst ., ,$(K8S_VERSION:v%=%))) \
  -X $(p).gitMinor=$(word 2,$(subst ., ,$(K8S_VERSION:v%=%))) -X $(p).gitTreeState=clean)

test-assets: ## Build kube-apiserver, etcd and kubectl from Go modules into bin/k8s/$(K8S_VERSION) (once).
	@if [ -x $(K8S_BIN)/kube-apiserver ] && [ -x $(K8S_BIN)/etcd ] && [ -x $(K8S_BIN)/kubectl ]; then \
	  echo ">> test assets present in $(K8S_BIN)"; \
	else \
	  echo ">> building kube-apiserver, kubectl and etcd $(K8S_VERSION) from the Go module proxy into $(K8S_BIN)"; \
	  echo ">> (the first build takes several minutes; later runs reuse it)"; \
	  mkdir -p $(K8S_BIN).tmp; \
	  cd test/tools && go build -ldflags '$(K8S_VERSION_LDFLAGS)' -o $(K8S_BIN).tmp/ k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kubectl ./etcd; \
	  mkdir -p $(K8S_BIN); mv $(K8S_BIN).tmp/* $(K8S_BIN)/; rmdir $(K8S_BIN).tmp; \
	fi

demo: build test-assets ## Start a local control plane, run gracekeeper against it, and show what it does.
	go run ./test/demo --gracekeeper $(BIN)/gracekeeper --assets $(K8S_BIN)

bench: ## Handler benchmarks with their baselines (see README for the ratios).
	go test -run '^$$' -bench . -benchmem ./webhook/...

BENCH_CLUSTER_FLAGS ?=
bench-cluster: build test-assets ## Pod creates through a real control plane: no admission, the in-process floor, gracekeeper per mode; then 10,000 held pods and gracekeeper's RSS (see README).
	go run ./test/bench/cluster --gracekeeper $(BIN)/gracekeeper --assets $(K8S_BIN) $(BENCH_CLUSTER_FLAGS)

clean:
	rm -rf $(BIN)

node-assets: test-assets ## Build kubelet, kube-proxy, kube-scheduler, kube-controller-manager into bin/k8s/$(K8S_VERSION) (once); stamp kube-apiserver and kubectl with the version.
	@missing=""; for b in $(NODE_BINS) kube-apiserver; do \
	  if ! $(K8S_BIN)/$$b --version 2>/dev/null | grep -q 'Kubernetes $(K8S_VERSION)$$'; then missing="$$missing k8s.io/kubernetes/cmd/$$b"; fi; done; \
	if ! $(K8S_BIN)/kubectl version --client 2>/dev/null | grep -q 'Client Version: $(K8S_VERSION)$$'; then missing="$$missing k8s.io/kubernetes/cmd/kubectl"; fi; \
	if [ -z "$$missing" ]; then \
	  echo ">> node assets present in $(K8S_BIN)"; \
	else \
	  echo ">> building$$missing $(K8S_VERSION) (version-stamped) from the Go module proxy into $(K8S_BIN)"; \
	  echo ">> (the first build takes several minutes; later runs reuse it)"; \
	  rm -rf $(K8S_BIN).node.tmp; mkdir -p $(K8S_BIN).node.tmp; \
	  cd test/tools && go build -ldflags '$(K8S_VERSION_LDFLAGS)' -o $(K8S_BIN).node.tmp/ $$missing; \
	  mv $(K8S_BIN).node.tmp/* $(K8S_BIN)/; rmdir $(K8S_BIN).node.tmp; \
	fi

cluster-up: node-assets ## Start a real one-node cluster here (Linux, root): see test/cluster/up.sh.
	test/cluster/up.sh

cluster-down: ## Stop the local cluster and remove every trace of it.
	test/cluster/down.sh

HELM_VER ?= v3.22.0
HELM     := $(BIN)/helm-$(HELM_VER)

$(HELM):
	@echo ">> building helm $(HELM_VER) from the Go module proxy"
	@mkdir -p $(BIN)/tmp-helm
	GOBIN=$(BIN)/tmp-helm go install helm.sh/helm/v3/cmd/helm@$(HELM_VER)
	mv $(BIN)/tmp-helm/helm $@

e2e-local: ## The e2e suite on a real node here (Linux, root; else skipped): cluster-up, helm install, go test -tags e2e, cluster-down.
	@if [ "$$(uname -s)" != Linux ] || [ "$$(id -u)" != 0 ]; then \
	  echo ">> e2e-local SKIPPED: needs Linux and root (a real kubelet); make e2e-kind needs only Docker"; \
	else \
	  $(MAKE) --no-print-directory node-assets $(HELM) && HELM=$(HELM) test/cluster/e2e-local.sh; \
	fi

# --- install path: image, chart, kind e2e (docs/install.md) ---

docker-build: ## Build the gracekeeper image (multi-stage, static, distroless nonroot) as $(IMG).
	docker build --build-arg VERSION=$(VERSION) -t $(IMG) .

chart-lint: ## Render, lint and schema-check charts/gracekeeper with the helm library (no cluster needed).
	go test $(GO_TEST_FLAGS) -run 'TestLint|TestGolden|TestSchema|TestWebhookRegistration|TestDeployment|TestCertificateModes|TestReleaseFinalizersHook|TestOptionalObjects|TestCRDIsTheGeneratedOne|TestDefaultPolicyAfterTheCRD|TestScheduling|TestExtraArgsAndEnv|TestServiceAccountValues|TestDashboardQueriesExportedMetrics|TestPolicyFilesMatchLibrary|TestTemplateRefuses|TestChartREADMEIsCurrent|TestRows' ./test/chart/ ./hack/chart-readme/

e2e-kind: ## kind cluster (go run sigs.k8s.io/kind@v0.33.0), image, cert-manager, chart in both modes, e2e suite, cluster deleted. Needs Docker, else SKIP.
	@if ! docker info >/dev/null 2>&1; then \
	  echo "e2e-kind: SKIP: Docker is needed (kind runs the Kubernetes node as a Docker container) and 'docker info' failed here"; \
	else \
	  $(MAKE) --no-print-directory $(HELM) && HELM=$(HELM) IMG=gracekeeper:e2e test/e2e/kind.sh; \
	fi
