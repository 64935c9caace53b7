package guestgate_test

// What each kustomization docs/kubernetes.md deploys keeps between
// requests, and whether its replicas can keep it: the guestgate config
// inside each ConfigMap is laid out as the pod sees it and loaded by
// guestgate's own config package (as `guestgate validate` loads it), so an
// overlay's config cannot drift from the code, and its state backend is
// held to the pod's replicas, strategy and volumes.

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"

	"github.com/guestgate/guestgate/config"
	"github.com/guestgate/guestgate/engine"
)

const (
	embeddedStateOverlay = "deploy/kubernetes/overlays/embedded-state"
	redisBundlesOverlay  = "deploy/kubernetes/overlays/redis-bundles"
)

// kubernetesDeployments are what docs/kubernetes.md deploys, each with the
// state store its config must name.
var kubernetesDeployments = []struct {
	dir   string
	state string // none, embedded or redis
	// beyondBase are the top-level config keys in which its guestgate.yaml
	// differs from the base's; every other key must be the base's.
	beyondBase []string
}{
	{kubernetesBase, "none", nil},
	{embeddedStateOverlay, "embedded", []string{"issuer", "state"}},
	{redisBundlesOverlay, "redis", []string{"admin", "bundles", "issuer", "keys", "persistence_directory", "policy", "services", "state"}},
}

// TestKubernetesDeploymentsFailClosedWithTheStateTheyCanKeep: each renders,
// passes the pod's safety checks, its config loads in the pod's file
// system, names the state store the deployment is for, and that store fits
// the replicas.
func TestKubernetesDeploymentsFailClosedWithTheStateTheyCanKeep(t *testing.T) {
	base := mustRender(t, kubernetesBase)
	for _, d := range kubernetesDeployments {
		t.Run(filepath.Base(d.dir), func(t *testing.T) {
			m := mustRender(t, d.dir)
			if err := checkKubernetesSafety(m); err != nil {
				t.Fatalf("%s is unsafe:\n%v", d.dir, err)
			}
			cfg := loadPodConfig(t, m)
			if got := stateBackend(cfg); got != d.state {
				t.Fatalf("state %s, want %s", got, d.state)
			}
			if err := checkStateFitsPod(m, cfg); err != nil {
				t.Fatalf("%s:\n%v", d.dir, err)
			}
			if got := configBeyondBase(t, m, base); !slices.Equal(got, d.beyondBase) {
				t.Errorf("guestgate.yaml differs from the base's in %v, want only %v: make the same change in both", got, d.beyondBase)
			}
		})
	}
}

func stateBackend(cfg *config.Config) string {
	if !cfg.State.Enabled() {
		return "none"
	}
	return cfg.State.Backend
}

// loadPodConfig lays out guestgate's file system as the kubelet would
// (each ConfigMap and Secret volume at its mount, each key at its item
// path; the Secrets' values made up here), then reads the ConfigMap's
// config there: every file it names is provided, none is an environment
// variable, the config loads strictly and validates, and its policy
// (the directory as mounted, or the bundle source) loads.
func loadPodConfig(t *testing.T, m *manifests) *config.Config {
	t.Helper()
	root := t.TempDir()
	cfgPath := layOutPod(t, m, root, guestgateName)
	needs, err := config.Needs(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range needs {
		if n.Kind == "environment variable" {
			t.Errorf("%s: the pod's config reads the environment variable %s: give secrets as files from Secrets", n.Key, n.Name)
		}
		if n.Problem != "" {
			t.Errorf("%s: %s %s is not in the pod: %s", n.Key, n.Kind, strings.TrimPrefix(n.Name, root), n.Problem)
		}
	}
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatalf("the ConfigMap's config does not load: %v", err)
	}
	if cfg.Development || *cfg.Check.PreciseReasons {
		t.Error("the pod runs the development setup or sends precise reasons to clients")
	}
	if cfg.OPABundles.Enabled() {
		if _, err := cfg.OPABundles.Source(nil, cfg.Policy.MaxRevisionBytes); err != nil {
			t.Fatalf("the bundle source: %v", err)
		}
		return cfg
	}
	e, err := engine.New(engine.Options{Dir: cfg.Policy.Dir})
	if err != nil {
		t.Fatalf("the policies as the pod mounts them do not load: %v", err)
	}
	want, err := engine.New(engine.Options{Dir: "policies"})
	if err != nil {
		t.Fatal(err)
	}
	if e.Revision() != want.Revision() {
		t.Errorf("the mounted policies are revision %s, policies/ is %s: a file is missing or misplaced", e.Revision(), want.Revision())
	}
	return cfg
}

// checkStateFitsPod reports every way the pod's replicas, strategy and
// volumes could not keep the state its config names:
//   - none: nothing is written anywhere in the pod. The visitors' own
//     channels deny state_unavailable, and so does minting, since the
//     issuer finds no writable directory for a store of its own (one per
//     pod would let a SAT be replayed on another replica and multiply the
//     rate limits by the replicas). No revocation token: its route is off.
//   - embedded: one pod, replaced rather than rolled, never scaled, with
//     state.dir on a writable ReadWriteOnce PersistentVolumeClaim: a second
//     pod with a store of its own would let a second visitor claim the
//     same channel there.
//   - redis: a fleet (two or more replicas), reaching Redis over TLS with
//     its password and the revocation token from mounted Secrets.
func checkStateFitsPod(m *manifests, cfg *config.Config) error {
	pod := m.pod()
	gg := m.container(guestgateName)
	if pod == nil || gg == nil {
		return errNoPod
	}
	var errs []error
	fail := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	dep := m.deployment()
	replicas := int32(1)
	if dep.Spec.Replicas != nil {
		replicas = *dep.Spec.Replicas
	}
	hpa := m.autoscaler()
	writable := func() (out []string) {
		for _, vm := range gg.VolumeMounts {
			if !vm.ReadOnly {
				out = append(out, vm.MountPath)
			}
		}
		return out
	}()
	switch stateBackend(cfg) {
	case "none":
		if cfg.Issuer.Enabled {
			fail("issuer.enabled without a state store: every mint would answer 503 state_unavailable (no replay memory, no rate limits every replica shares); turn the issuer on where state: is configured")
		}
		if len(writable) > 0 {
			fail("writable mounts %v without a state store: the issuer would keep a store of each pod's own there (a SAT replayable on another replica); mount nothing writable, or configure state:", writable)
		}
		for _, e := range gg.Env {
			if e.Name == "TMPDIR" {
				fail("env TMPDIR: gives the issuer a store of each pod's own")
			}
		}
		if cfg.Admin.RevocationTokenFile != "" {
			fail("admin.revocation_token_file without a state store: the route is off, the token serves nothing")
		}
	case "embedded":
		if replicas != 1 || hpa != nil {
			fail("replicas %d (autoscaler %v): the embedded store is one pod's; two pods would each own channels the other gives away", replicas, hpa != nil)
		}
		if dep.Spec.Strategy.Type != appsv1.RecreateDeploymentStrategyType {
			fail("strategy %s: a rollout would run two pods at once, the second waiting on the store's lock; want Recreate", dep.Spec.Strategy.Type)
		}
		if err := checkOnClaim(m, cfg.State.Dir); err != nil {
			fail("state.dir: %w", err)
		}
		if pod.SecurityContext == nil || pod.SecurityContext.FSGroup == nil {
			fail("no fsGroup: the non-root guestgate could not write the volume")
		}
	case "redis":
		least := replicas
		if hpa != nil && hpa.Spec.MinReplicas != nil {
			least = *hpa.Spec.MinReplicas
		}
		if least < 2 {
			fail("at least %d replicas: a fleet on Redis, whose PodDisruptionBudget keeps one serving, wants two or more", least)
		}
		r := cfg.State.Redis
		if r.TLS == nil && !strings.HasPrefix(r.Address, "/") && !strings.HasPrefix(r.Address, "unix://") {
			fail("state.redis.tls: the password and every ownership would cross the network in plaintext")
		}
		for key, p := range map[string]string{"state.redis.password_file": r.PasswordFile, "admin.revocation_token_file": cfg.Admin.RevocationTokenFile} {
			if !onSecret(pod, gg, p) {
				fail("%s %q: want a file of a mounted Secret", key, p)
			}
		}
		if r.TLS != nil && r.TLS.CAFile != "" && !onSecret(pod, gg, r.TLS.CAFile) {
			fail("state.redis.tls.ca_file %q: want a file of a mounted Secret", r.TLS.CAFile)
		}
		if len(writable) > 1 {
			fail("writable mounts %v: the redis backend keeps nothing on disk; only the bundles' persistence_directory is written", writable)
		}
	}
	return errors.Join(errs...)
}

// checkOnClaim: dir is a writable mount of a ReadWriteOnce claim.
func checkOnClaim(m *manifests, dir string) error {
	for _, vm := range m.container(guestgateName).VolumeMounts {
		if vm.MountPath != filepath.Clean(dir) {
			continue
		}
		v := volume(m.pod(), vm.Name)
		if v == nil || v.PersistentVolumeClaim == nil || vm.ReadOnly {
			return fmt.Errorf("%s is mounted from %s, not a writable PersistentVolumeClaim", dir, vm.Name)
		}
		for _, pvc := range m.pvcs {
			if pvc.Name == v.PersistentVolumeClaim.ClaimName && slices.Equal(pvc.Spec.AccessModes, []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce}) {
				return nil
			}
		}
		return fmt.Errorf("no ReadWriteOnce PersistentVolumeClaim %s in the manifests", v.PersistentVolumeClaim.ClaimName)
	}
	return fmt.Errorf("%s is not a mount: the store would be written to the read-only root (and lost with the pod)", dir)
}

// onSecret says whether p is in a read-only mount of a Secret volume.
// The config was loaded from a laid-out copy of the pod: compare the
// path below the pod's root.
func onSecret(pod *corev1.PodSpec, c *corev1.Container, p string) bool {
	for _, vm := range c.VolumeMounts {
		if i := strings.Index(p, vm.MountPath+"/"); i >= 0 && vm.ReadOnly {
			if v := volume(pod, vm.Name); v != nil && v.Secret != nil {
				return true
			}
		}
	}
	return false
}

// writableMount is the mount of c that holds p, if writable (an emptyDir
// or a claim).
func writableMount(pod *corev1.PodSpec, c *corev1.Container, p string) *corev1.Volume {
	for _, vm := range c.VolumeMounts {
		if strings.HasPrefix(p, vm.MountPath+"/") && !vm.ReadOnly {
			return volume(pod, vm.Name)
		}
	}
	return nil
}

func (m *manifests) deployment() *appsv1.Deployment {
	for _, d := range m.deployments {
		if d.Name == podName {
			return d
		}
	}
	return nil
}

// autoscaler is the HorizontalPodAutoscaler scaling the Deployment, if any.
func (m *manifests) autoscaler() *autoscalingv2.HorizontalPodAutoscaler {
	for _, h := range m.hpas {
		if r := h.Spec.ScaleTargetRef; r.Kind == "Deployment" && r.Name == podName {
			return h
		}
	}
	return nil
}

// configBeyondBase lists the top-level keys of m's guestgate.yaml whose
// values differ from base's, sorted.
func configBeyondBase(t *testing.T, m, base *manifests) []string {
	t.Helper()
	var doc, baseDoc map[string]any
	for _, c := range []struct {
		m   *manifests
		out *map[string]any
	}{{m, &doc}, {base, &baseDoc}} {
		if err := yaml.Unmarshal([]byte(c.m.configMaps["guestgate-config"].Data["guestgate.yaml"]), c.out); err != nil {
			t.Fatal(err)
		}
	}
	var out []string
	for k, v := range doc {
		if !reflect.DeepEqual(v, baseDoc[k]) {
			out = append(out, k)
		}
	}
	for k := range baseDoc {
		if _, ok := doc[k]; !ok {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}

// Each edit makes a pod that cannot keep the state its config names; the
// check must refuse every one.
func TestKubernetesStateCheckRejectsPodsThatCannotKeepTheirState(t *testing.T) {
	for _, c := range []struct {
		name, dir string
		edit      func(m *manifests, cfg *config.Config)
		wantErr   string
	}{
		{"no state, an emptyDir for the issuer", kubernetesBase, func(m *manifests, _ *config.Config) {
			m.pod().Volumes = append(m.pod().Volumes, corev1.Volume{Name: "tmp", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}})
			gg := m.container(guestgateName)
			gg.VolumeMounts = append(gg.VolumeMounts, corev1.VolumeMount{Name: "tmp", MountPath: "/tmp"})
		}, "writable mounts"},
		{"no state, TMPDIR", kubernetesBase, func(m *manifests, _ *config.Config) {
			gg := m.container(guestgateName)
			gg.Env = append(gg.Env, corev1.EnvVar{Name: "TMPDIR", Value: "/etc/guestgate/config"})
		}, "TMPDIR"},
		{"embedded, two replicas", embeddedStateOverlay, func(m *manifests, _ *config.Config) { m.deployment().Spec.Replicas = ptr(int32(2)) }, "replicas 2"},
		{"embedded, autoscaled", embeddedStateOverlay, func(m *manifests, _ *config.Config) {
			m.hpas = append(m.hpas, &autoscalingv2.HorizontalPodAutoscaler{Spec: autoscalingv2.HorizontalPodAutoscalerSpec{
				ScaleTargetRef: autoscalingv2.CrossVersionObjectReference{Kind: "Deployment", Name: podName}}})
		}, "autoscaler true"},
		{"embedded, rolled", embeddedStateOverlay, func(m *manifests, _ *config.Config) {
			m.deployment().Spec.Strategy.Type = appsv1.RollingUpdateDeploymentStrategyType
		}, "Recreate"},
		{"embedded, dir off the volume", embeddedStateOverlay, func(_ *manifests, cfg *config.Config) { cfg.State.Dir = "/var/lib/guestgate/other" }, "not a mount"},
		{"embedded, volume not a claim", embeddedStateOverlay, func(m *manifests, _ *config.Config) {
			volume(m.pod(), "state").VolumeSource = corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}
		}, "not a writable PersistentVolumeClaim"},
		{"embedded, no claim", embeddedStateOverlay, func(m *manifests, _ *config.Config) { m.pvcs = nil }, "no ReadWriteOnce"},
		{"redis, one replica", redisBundlesOverlay, func(m *manifests, _ *config.Config) {
			m.autoscaler().Spec.MinReplicas = ptr(int32(1))
		}, "at least 1 replicas"},
		{"redis, plaintext", redisBundlesOverlay, func(_ *manifests, cfg *config.Config) { cfg.State.Redis.TLS = nil }, "state.redis.tls"},
		{"redis, password not from a Secret", redisBundlesOverlay, func(_ *manifests, cfg *config.Config) {
			cfg.State.Redis.PasswordFile = "/etc/guestgate/config/redis-password"
		}, "state.redis.password_file"},
		{"redis, revocation token not from a Secret", redisBundlesOverlay, func(_ *manifests, cfg *config.Config) { cfg.Admin.RevocationTokenFile = "" }, "admin.revocation_token_file"},
		{"redis, a writable state dir", redisBundlesOverlay, func(m *manifests, _ *config.Config) {
			m.pod().Volumes = append(m.pod().Volumes, corev1.Volume{Name: "state", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}})
			gg := m.container(guestgateName)
			gg.VolumeMounts = append(gg.VolumeMounts, corev1.VolumeMount{Name: "state", MountPath: "/var/lib/guestgate/state"})
		}, "keeps nothing on disk"},
	} {
		t.Run(c.name, func(t *testing.T) {
			m := mustRender(t, c.dir)
			cfg := loadPodConfig(t, m)
			if err := checkStateFitsPod(m, cfg); err != nil {
				t.Fatalf("unedited: %v", err)
			}
			c.edit(m, cfg)
			err := checkStateFitsPod(m, cfg)
			if err == nil {
				t.Fatal("the state check accepted the edited pod")
			}
			t.Logf("error: %v", err)
			if !strings.Contains(err.Error(), c.wantErr) {
				t.Fatalf("error %q does not mention %q", err, c.wantErr)
			}
		})
	}
}

// TestKubernetesRedisBundlesOverlayServesASignedPersistedBundle: the fleet's
// policy is a bundle that must verify against the configured public key,
// kept on the pod's emptyDir so a restarted container serves it before
// the server answers, and no policies ConfigMap stands beside it.
func TestKubernetesRedisBundlesOverlayServesASignedPersistedBundle(t *testing.T) {
	m := mustRender(t, redisBundlesOverlay)
	cfg := loadPodConfig(t, m)
	src, err := cfg.OPABundles.Source(nil, cfg.Policy.MaxRevisionBytes)
	if err != nil {
		t.Fatal(err)
	}
	if src.Verification == nil || !src.Verification.SignatureRequired() {
		t.Error("the bundle's signature is not required")
	}
	if src.PersistDir == "" {
		t.Error("the bundle is not persisted (persist: true): a restart would wait for the server")
	} else if v := writableMount(m.pod(), m.container(guestgateName), src.PersistDir); v == nil || v.EmptyDir == nil {
		t.Errorf("the bundle is kept at %s, not on a writable emptyDir", src.PersistDir)
	}
	if _, ok := m.configMaps["guestgate-policies"]; ok {
		t.Error("the policies ConfigMap is rendered though the bundle replaces it")
	}
	for _, vm := range m.container(guestgateName).VolumeMounts {
		if vm.MountPath == "/etc/guestgate/policies" {
			t.Error("the policies directory is still mounted")
		}
	}
	if hpa := m.autoscaler(); hpa == nil || hpa.Spec.MinReplicas == nil || m.deployment().Spec.Replicas == nil || *hpa.Spec.MinReplicas != *m.deployment().Spec.Replicas {
		t.Error("want an autoscaler whose minimum is the Deployment's replicas")
	}
	// The shipped key is a real ES256 public key: a placeholder would fail
	// only when the first bundle arrives.
	for name, k := range cfg.OPABundles.Keys {
		kc, _ := k.(map[string]any)
		pemText, _ := kc["key"].(string)
		blk, _ := pem.Decode([]byte(pemText))
		if blk == nil {
			t.Fatalf("keys.%s.key is not PEM", name)
		}
		pub, err := x509.ParsePKIXPublicKey(blk.Bytes)
		if ec, ok := pub.(*ecdsa.PublicKey); err != nil || !ok || ec.Curve != elliptic.P256() || kc["algorithm"] != "ES256" {
			t.Errorf("keys.%s: want an ES256 (P-256) public key: %T %v", name, pub, err)
		}
	}
}

// TestKubernetesDocsCreateEverySecretKeyThePodMounts: the commands in
// docs/kubernetes.md make each key every deployment's Secret volumes list,
// and apply each deployment, or the pod never starts.
func TestKubernetesDocsCreateEverySecretKeyThePodMounts(t *testing.T) {
	docs, err := os.ReadFile("docs/kubernetes.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range kubernetesDeployments {
		if !bytes.Contains(docs, []byte("kubectl -n guestgate apply -k "+d.dir+"\n")) {
			t.Errorf("docs/kubernetes.md does not apply %s", d.dir)
		}
		m := mustRender(t, d.dir)
		n := 0
		for _, v := range m.pod().Volumes {
			if v.Secret == nil {
				continue
			}
			if !bytes.Contains(docs, []byte("create secret generic "+v.Secret.SecretName+" ")) {
				t.Errorf("%s: docs/kubernetes.md does not create Secret %s", d.dir, v.Secret.SecretName)
			}
			for _, it := range v.Secret.Items {
				n++
				if !bytes.Contains(docs, []byte("--from-file="+it.Key+"=")) {
					t.Errorf("%s: docs/kubernetes.md does not create key %s of Secret %s", d.dir, it.Key, v.Secret.SecretName)
				}
			}
		}
		if n == 0 {
			t.Fatalf("%s: no Secret keys in the Deployment: update the test", d.dir)
		}
	}
}
