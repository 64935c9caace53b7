# guestgate: the commands the README shows.
GO      ?= go
OPA     := $(GO) tool opa
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)

.PHONY: all build run test lint vet fmt-check staticcheck policy-test fuzz bench bench-go bench-fleet image clean

all: build

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/guestgate ./cmd/guestgate

# The sidecar with its built-in development setup (loopback, committed dev keys).
# Its state store (state.dir) is var/state, made here.
run: build
	mkdir -p -m 0700 var/state
	./bin/guestgate serve

# Every test: the linters, the Rego tests, then Go (with the race detector).
test: lint policy-test
	$(GO) test -race -count=1 ./...

# go vet, the gofmt check and staticcheck (pinned in go.mod as a tool, so
# every checkout runs the same version).
lint: vet fmt-check staticcheck

vet:
	$(GO) vet ./...

staticcheck:
	$(GO) tool staticcheck ./...

fmt-check:
	@out="$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))"; \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

policy-test:
	$(OPA) fmt --list --fail policies/
	$(OPA) check --strict policies/
	$(OPA) test policies/
	@$(OPA) test --coverage --threshold 95 policies/ > /dev/null || { echo "opa test: line coverage of policies/ is under 95%"; exit 1; }

# A short run of every fuzz target (not part of make test).
FUZZTIME ?= 20s
fuzz:
	$(GO) test ./tokens/ -run '^$$' -fuzz '^FuzzStrictParse$$' -fuzztime $(FUZZTIME)
	$(GO) test ./tokens/ -run '^$$' -fuzz '^FuzzVerify$$' -fuzztime $(FUZZTIME)
	$(GO) test ./ext_authz/ -run '^$$' -fuzz '^FuzzCheck$$' -fuzztime $(FUZZTIME)
	$(GO) test ./issuer/ -run '^$$' -fuzz '^FuzzSATRequest$$' -fuzztime $(FUZZTIME)
	$(GO) test ./ext_authz/ -run '^$$' -fuzz '^FuzzHTTPCheck$$' -fuzztime $(FUZZTIME)
	$(GO) test ./ext_authz/ -run '^$$' -fuzz '^FuzzJSONValue$$' -fuzztime $(FUZZTIME)
	$(GO) test ./ext_authz/ -run '^$$' -fuzz '^FuzzJSONValueAgainstStrictJSON$$' -fuzztime $(FUZZTIME)
	$(GO) test ./strictjson/ -run '^$$' -fuzz '^FuzzDecode$$' -fuzztime $(FUZZTIME)
	$(GO) test ./ext_authz/ -run '^$$' -fuzz '^FuzzBodyText$$' -fuzztime $(FUZZTIME)
	$(GO) test ./ext_authz/ -run '^$$' -fuzz '^FuzzCheckRequestCodec$$' -fuzztime $(FUZZTIME)
	$(GO) test ./engine/ -run '^$$' -fuzz '^FuzzDecisionCache$$' -fuzztime $(FUZZTIME)
	$(GO) test ./engine/plan/ -run '^$$' -fuzz '^FuzzPlanMatchesOPA$$' -fuzztime $(FUZZTIME)

# One table, every figure from one run, each target beside its figure: the
# Go benchmarks (in-process Check per token kind, policy evaluation, token
# verification), a loopback load test of the guestgate binary against a
# no-op floor server (A B A B) with the in-repo generator and with ghz (a
# tool pinned in go.mod), a session workload of 10 000 visitors, and policy
# reloads under load. Not part of make test; several minutes.
bench:
	$(GO) run ./bench/cmd/guestgate-bench

# The Go benchmarks alone.
bench-go:
	$(GO) test -run '^$$' -bench . -benchmem ./ext_authz/ ./engine/ ./tokens/ ./issuer/

# A Check that needs state on the embedded store and on Redis, and two
# replicas sharing one Redis against one (docs/fleet.md).
bench-fleet:
	$(GO) test -run '^$$' -bench 'CheckNeedingState|FleetThroughput' -benchtime 2s ./cmd/guestgate/

# The container image (Containerfile): the binary built here, static, then
# copied FROM scratch, so the build pulls nothing. Debian's podman, else
# its buildah: both build without a daemon. IMAGE names the result.
IMAGE    ?= localhost/guestgate:$(VERSION)
REVISION ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
BUILDER  ?= $(shell command -v podman >/dev/null 2>&1 && echo podman || echo buildah)
GOARCH   ?= $(shell $(GO) env GOARCH)
image:
	CGO_ENABLED=0 GOOS=linux GOARCH=$(GOARCH) $(GO) build -trimpath -ldflags "-s -w $(LDFLAGS)" -o bin/image/guestgate ./cmd/guestgate
	rm -rf bin/image/state bin/image/var && mkdir -p -m 0755 bin/image/var/lib/guestgate bin/image/state && mkdir -m 0700 bin/image/state/state
	$(BUILDER) build --arch $(GOARCH) --build-arg VERSION=$(VERSION) --build-arg REVISION=$(REVISION) -t $(IMAGE) -f Containerfile .

clean:
	rm -rf bin
