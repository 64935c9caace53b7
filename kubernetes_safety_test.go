package guestgate_test

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// publicPorts are the pod ports traffic may reach: in the base, Envoy's
// listener and guestgate's issuer routes. A mesh overlay, whose own proxy
// stands in front of the app, passes its own.
type publicPorts []int32

var basePublicPorts = publicPorts{envoyPort, 8181}

// checkKubernetesSafety reports every way the manifests could let a
// request reach the app without guestgate's yes, give a container more
// than it needs, or keep guestgate from honouring its limits and reloads.
func checkKubernetesSafety(m *manifests) error { return checkPodSafety(m, basePublicPorts) }

func checkPodSafety(m *manifests, public publicPorts) error {
	pod := m.pod()
	if pod == nil {
		return errNoPod
	}
	var errs []error
	fail := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	psc := pod.SecurityContext
	if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot {
		fail("pod: securityContext.runAsNonRoot must be true")
	}
	if psc == nil || psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		fail("pod: securityContext.seccompProfile must be RuntimeDefault")
	}
	if pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken {
		fail("pod: automountServiceAccountToken must be false (nothing here talks to the API server)")
	}
	if pod.HostNetwork || pod.HostPID || pod.HostIPC {
		fail("pod: no host network, PID or IPC namespace")
	}
	for _, c := range append(slices.Clone(pod.InitContainers), pod.Containers...) {
		if err := checkContainer(c); err != nil {
			fail("container %s: %w", c.Name, err)
		}
	}
	if gg := m.container(guestgateName); gg == nil {
		fail("no %s container", guestgateName)
	} else if err := checkGuestgateContainer(pod, gg); err != nil {
		fail("container %s: %w", guestgateName, err)
	}

	podLabels := labels.Set(m.templateLabels())
	ports := containerPorts(pod)
	for _, s := range m.services {
		if !labels.SelectorFromSet(s.Spec.Selector).Matches(podLabels) {
			continue
		}
		for _, p := range s.Spec.Ports {
			n, ok := resolvePort(p.TargetPort, ports)
			if !ok || !slices.Contains(public, n) {
				fail("Service %s port %s: targets %s, not one of the public ports %v (the app, the check and the admin listener stay unreachable)", s.Name, p.Name, p.TargetPort.String(), public)
			}
		}
	}
	if err := checkNetworkPolicy(m, podLabels, ports, public); err != nil {
		fail("%w", err)
	}
	covered := false
	for _, b := range m.pdbs {
		sel := b.Spec.Selector
		if sel != nil && labels.SelectorFromSet(sel.MatchLabels).Matches(podLabels) && (b.Spec.MinAvailable != nil || b.Spec.MaxUnavailable != nil) {
			covered = true
		}
	}
	if !covered {
		fail("no PodDisruptionBudget selects the pods with minAvailable or maxUnavailable")
	}
	return errors.Join(errs...)
}

func checkContainer(c corev1.Container) error {
	var errs []error
	fail := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	sc := c.SecurityContext
	if sc == nil {
		return errors.New("no securityContext")
	}
	if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		fail("allowPrivilegeEscalation must be false")
	}
	if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		fail("readOnlyRootFilesystem must be true")
	}
	if sc.Privileged != nil && *sc.Privileged {
		fail("privileged must not be true")
	}
	if sc.RunAsUser != nil && *sc.RunAsUser == 0 {
		fail("runAsUser 0")
	}
	if sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") || len(sc.Capabilities.Add) > 0 {
		fail("capabilities: drop ALL and add none")
	}
	if i := strings.LastIndex(c.Image, ":"); !strings.Contains(c.Image, "@sha256:") && (i < strings.LastIndex(c.Image, "/") || i < 0 || c.Image[i+1:] == "latest") {
		fail("image %q: pin a tag or digest (not latest)", c.Image)
	}
	return errors.Join(errs...)
}

func checkGuestgateContainer(pod *corev1.PodSpec, c *corev1.Container) error {
	var errs []error
	fail := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	if i := slices.Index(c.Args, "--config"); len(c.Args) < 3 || c.Args[0] != "serve" || i < 0 || i+1 >= len(c.Args) || c.Args[i+1] != guestgateConfig {
		fail("args %q: want serve --config %s (no --config is the development setup)", c.Args, guestgateConfig)
	}
	if _, ok := c.Resources.Limits[corev1.ResourceMemory]; !ok {
		fail("no memory limit: guestgate sets its collector's soft limit from it")
	}
	if _, ok := c.Resources.Requests[corev1.ResourceMemory]; !ok {
		fail("no memory request")
	}
	for _, e := range c.Env {
		if e.Name == "GOMEMLIMIT" || e.Name == "AUTOMEMLIMIT" || e.Name == "GOGC" {
			fail("env %s: overrides the collector settings guestgate takes from the memory limit", e.Name)
		}
	}
	if p := c.ReadinessProbe; p == nil || p.HTTPGet == nil || p.HTTPGet.Path != "/readyz" {
		fail("readinessProbe: want httpGet /readyz (ready only once a policy serves and every key set has keys)")
	}
	for name, p := range map[string]*corev1.Probe{"livenessProbe": c.LivenessProbe, "startupProbe": c.StartupProbe} {
		if p == nil || p.GRPC == nil || p.GRPC.Port != 9191 {
			fail("%s: want the gRPC health service on 9191", name)
		}
	}
	for _, vm := range c.VolumeMounts {
		v := volume(pod, vm.Name)
		if vm.SubPath != "" || vm.SubPathExpr != "" {
			fail("mount %s: subPath is never updated, so a changed ConfigMap or Secret is never reloaded", vm.Name)
		}
		writable := v != nil && (v.PersistentVolumeClaim != nil || v.EmptyDir != nil)
		if !vm.ReadOnly && !writable {
			fail("mount %s: want readOnly (only the state directory is written)", vm.Name)
		}
		if v != nil && v.Secret != nil && len(v.Secret.Items) == 0 {
			fail("volume %s: list the Secret's keys in items, so a missing key stops the pod", v.Name)
		}
	}
	return errors.Join(errs...)
}

func checkNetworkPolicy(m *manifests, podLabels labels.Set, ports map[string]int32, public publicPorts) error {
	var errs []error
	selected := false
	for _, np := range m.netpols {
		sel := labels.SelectorFromSet(np.Spec.PodSelector.MatchLabels)
		if len(np.Spec.PodSelector.MatchExpressions) > 0 || !sel.Matches(podLabels) || !slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeIngress) {
			continue
		}
		selected = true
		for i, r := range np.Spec.Ingress {
			if len(r.Ports) == 0 {
				errs = append(errs, fmt.Errorf("NetworkPolicy %s ingress[%d]: no ports admits every port", np.Name, i))
			}
			for _, p := range r.Ports {
				n, ok := int32(0), p.Port != nil
				if ok {
					n, ok = resolvePort(*p.Port, ports)
				}
				if !ok || p.EndPort != nil || !slices.Contains(public, n) {
					errs = append(errs, fmt.Errorf("NetworkPolicy %s ingress[%d]: admits port %v, not one of %v", np.Name, i, p.Port, public))
				}
			}
		}
	}
	if !selected {
		errs = append(errs, errors.New("no NetworkPolicy isolates the pods for ingress: any pod could call guestgate's check and admin listeners"))
	}
	return errors.Join(errs...)
}

func (m *manifests) templateLabels() map[string]string {
	for _, d := range m.deployments {
		if d.Name == podName {
			return d.Spec.Template.Labels
		}
	}
	return nil
}

func containerPorts(pod *corev1.PodSpec) map[string]int32 {
	out := map[string]int32{}
	for _, c := range pod.Containers {
		for _, p := range c.Ports {
			if p.Name != "" {
				out[p.Name] = p.ContainerPort
			}
		}
	}
	return out
}

func resolvePort(p intstr.IntOrString, named map[string]int32) (int32, bool) {
	if p.Type == intstr.Int {
		return p.IntVal, p.IntVal != 0
	}
	n, ok := named[p.StrVal]
	return n, ok
}

func volume(pod *corev1.PodSpec, name string) *corev1.Volume {
	for i := range pod.Volumes {
		if pod.Volumes[i].Name == name {
			return &pod.Volumes[i]
		}
	}
	return nil
}

func intOrStr(n int) *intstr.IntOrString {
	v := intstr.FromInt32(int32(n))
	return &v
}
