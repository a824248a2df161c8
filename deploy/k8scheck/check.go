package k8scheck

import (
	"errors"
	"fmt"
	"net"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"
)

// Name is the app.kubernetes.io/name label of every object.
const Name = "logdist"

// Container is the name of logdist's container in the Deployment.
const Container = "logdist"

// shutdownMargin is what logdist needs after --drain-timeout before a
// SIGKILL: closing the event-loop engines takes up to about a second
// (docs/OPERATIONS.md, "Signals", says to leave 2 s).
const shutdownMargin = 2 * time.Second

// listeners are the flags that make logdist listen, each with the
// container port (name and protocol) that must expose it. required: the
// flag's default listens (agents on :7400, UDP syslog on :5514, the admin
// API on loopback only, where the kubelet's probes cannot reach it), so
// the Deployment must say what it wants.
var listeners = []struct {
	flag, port string
	proto      corev1.Protocol
	required   bool
}{
	{"listen", "agents", corev1.ProtocolTCP, true},
	{"tls-listen", "agents-tls", corev1.ProtocolTCP, false},
	{"admin", "admin", corev1.ProtocolTCP, true},
	{"syslog-udp", "syslog-udp", corev1.ProtocolUDP, true},
	{"syslog-tcp", "syslog-tcp", corev1.ProtocolTCP, false},
	{"syslog-tls", "syslog-tls", corev1.ProtocolTCP, false},
}

// FileFlags are logdist's flags that name a file, and what the file holds.
var FileFlags = map[string]string{
	"config":            "config",
	"tls-cert":          "cert",
	"tls-key":           "key",
	"tls-client-ca":     "cert",
	"upstream-tls-ca":   "cert",
	"upstream-tls-cert": "cert",
	"upstream-tls-key":  "key",
	"auth-file":         "auth",
	"admin-token-file":  "tokens",
	"redact":            "redact",
}

// checker gathers the objects of one installation and the errors found.
type checker struct {
	errs       []error
	deploy     *appsv1.Deployment
	deploySrc  Object
	services   []*corev1.Service
	configMaps map[string]*corev1.ConfigMap
	secrets    map[string]*corev1.Secret
	hpas       []*autoscalingv2.HorizontalPodAutoscaler
	pdbs       []*policyv1.PodDisruptionBudget
}

func (c *checker) errorf(format string, args ...any) {
	c.errs = append(c.errs, fmt.Errorf(format, args...))
}

// Check reports every invariant the objects of one installation (the
// plain manifests, or one helm template run) break. It expects exactly
// one Deployment, with a container named logdist whose args are all
// --flag=value.
func Check(objs []Object) []error {
	c := newChecker(objs)
	if c.deploy == nil {
		c.errorf("no Deployment")
		return c.errs
	}
	pod := &c.deploy.Spec.Template
	ctr := c.container()
	if ctr == nil {
		return c.errs
	}
	flags := c.flags(ctr)
	ports := c.ports(ctr)
	c.checkSelector("Deployment "+c.deploy.Name+" spec.selector", c.deploy.Spec.Selector, pod.Labels)
	c.checkListeners(flags, ports)
	c.checkProbes(ctr, ports)
	c.checkDrain(pod, ctr, flags)
	c.checkFiles(pod, ctr, flags)
	c.checkSecurity(pod, ctr)
	for _, s := range c.services {
		c.checkService(s, pod.Labels, ports)
	}
	c.checkScaling(pod.Labels)
	return c.errs
}

// newChecker indexes objs by kind, and reports the labels and namespaces
// that are wrong.
func newChecker(objs []Object) *checker {
	c := &checker{configMaps: map[string]*corev1.ConfigMap{}, secrets: map[string]*corev1.Secret{}}
	for _, o := range objs {
		var meta metav1.ObjectMeta
		switch v := o.Obj.(type) {
		case *appsv1.Deployment:
			if c.deploy != nil {
				c.errorf("%v: a second Deployment (the first: %v)", o, c.deploySrc)
			}
			c.deploy, c.deploySrc, meta = v, o, v.ObjectMeta
		case *corev1.Service:
			c.services, meta = append(c.services, v), v.ObjectMeta
		case *corev1.ConfigMap:
			c.configMaps[v.Name], meta = v, v.ObjectMeta
		case *corev1.Secret:
			c.secrets[v.Name], meta = v, v.ObjectMeta
		case *autoscalingv2.HorizontalPodAutoscaler:
			c.hpas, meta = append(c.hpas, v), v.ObjectMeta
		case *policyv1.PodDisruptionBudget:
			c.pdbs, meta = append(c.pdbs, v), v.ObjectMeta
		default:
			panic(fmt.Sprintf("BUG: k8scheck: Check has no case for %T", o.Obj))
		}
		if meta.Labels["app.kubernetes.io/name"] != Name {
			c.errorf("%v: label app.kubernetes.io/name is %q, want %q", o, meta.Labels["app.kubernetes.io/name"], Name)
		}
		if meta.Namespace != "" {
			c.errorf("%v: namespace %q: the manifests are namespace-less (kubectl -n, helm -n)", o, meta.Namespace)
		}
	}
	return c
}

// container returns logdist's container.
func (c *checker) container() *corev1.Container {
	for i := range c.deploy.Spec.Template.Spec.Containers {
		if ctr := &c.deploy.Spec.Template.Spec.Containers[i]; ctr.Name == Container {
			return ctr
		}
	}
	c.errorf("Deployment %s: no container named %q", c.deploy.Name, Container)
	return nil
}

// flags reads the container's args, each --flag=value.
func (c *checker) flags(ctr *corev1.Container) map[string]string {
	flags := map[string]string{}
	for _, a := range ctr.Args {
		name, value, ok := strings.Cut(strings.TrimPrefix(a, "--"), "=")
		if !ok || !strings.HasPrefix(a, "--") {
			c.errorf("Deployment %s: argument %q: write every flag as --flag=value, so that it can be checked", c.deploy.Name, a)
			continue
		}
		if _, dup := flags[name]; dup {
			c.errorf("Deployment %s: --%s given twice", c.deploy.Name, name)
		}
		flags[name] = value
	}
	return flags
}

// ports indexes the container's ports by name; every one must have a
// name, each once.
func (c *checker) ports(ctr *corev1.Container) map[string]corev1.ContainerPort {
	ports := map[string]corev1.ContainerPort{}
	for _, p := range ctr.Ports {
		if p.Name == "" {
			c.errorf("Deployment %s: container port %d has no name: Services and probes refer to ports by name", c.deploy.Name, p.ContainerPort)
			continue
		}
		if _, dup := ports[p.Name]; dup {
			c.errorf("Deployment %s: container port name %q used twice", c.deploy.Name, p.Name)
		}
		ports[p.Name] = p
	}
	return ports
}

// protocol is p's protocol, TCP when empty (the API's default).
func protocol(p corev1.Protocol) corev1.Protocol {
	if p == "" {
		return corev1.ProtocolTCP
	}
	return p
}

// checkListeners: each address logdist listens on is a container port of
// that number, name and protocol, and each such port is listened on.
func (c *checker) checkListeners(flags map[string]string, ports map[string]corev1.ContainerPort) {
	for _, l := range listeners {
		addr, given := flags[l.flag]
		p, declared := ports[l.port]
		switch {
		case !given && l.required:
			c.errorf("Deployment %s: --%s is not given: its default is not what a pod wants; give it (empty to turn it off)", c.deploy.Name, l.flag)
			continue
		case addr == "":
			if declared {
				c.errorf("Deployment %s: container port %q is declared but --%s is empty or not given: nothing listens on it", c.deploy.Name, l.port, l.flag)
			}
			continue
		}
		host, port, err := net.SplitHostPort(addr)
		n, nerr := strconv.Atoi(port)
		if err != nil || nerr != nil {
			c.errorf("Deployment %s: --%s=%s is not HOST:PORT", c.deploy.Name, l.flag, addr)
			continue
		}
		if l.flag == "admin" && host != "" && host != "0.0.0.0" && host != "::" {
			c.errorf("Deployment %s: --admin=%s: the kubelet's probes and Prometheus reach the pod's address, not %s; use :%d", c.deploy.Name, addr, host, n)
		}
		switch {
		case !declared:
			c.errorf("Deployment %s: --%s=%s listens, but the container has no port named %q", c.deploy.Name, l.flag, addr, l.port)
		case int(p.ContainerPort) != n:
			c.errorf("Deployment %s: container port %q is %d, but --%s=%s listens on %d", c.deploy.Name, l.port, p.ContainerPort, l.flag, addr, n)
		case protocol(p.Protocol) != l.proto:
			c.errorf("Deployment %s: container port %q is %s, but --%s is %s", c.deploy.Name, l.port, protocol(p.Protocol), l.flag, l.proto)
		}
	}
}

// checkProbes: readiness on /readyz, liveness on /healthz and a startup
// probe, each on the admin port by name.
func (c *checker) checkProbes(ctr *corev1.Container, ports map[string]corev1.ContainerPort) {
	probes := []struct {
		kind, path string
		p          *corev1.Probe
	}{
		{"startupProbe", "/healthz", ctr.StartupProbe},
		{"readinessProbe", "/readyz", ctr.ReadinessProbe},
		{"livenessProbe", "/healthz", ctr.LivenessProbe},
	}
	for _, pr := range probes {
		if pr.p == nil || pr.p.HTTPGet == nil {
			c.errorf("Deployment %s: no %s with httpGet %s", c.deploy.Name, pr.kind, pr.path)
			continue
		}
		g := pr.p.HTTPGet
		if g.Path != pr.path {
			c.errorf("Deployment %s: %s path %q, want %q", c.deploy.Name, pr.kind, g.Path, pr.path)
		}
		if g.Port.Type != intstr.String {
			c.errorf("Deployment %s: %s port %s: name the container port (admin), so that it follows --admin", c.deploy.Name, pr.kind, g.Port.String())
			continue
		}
		p, ok := ports[g.Port.StrVal]
		switch {
		case !ok:
			c.errorf("Deployment %s: %s port %q: the container has no port of that name", c.deploy.Name, pr.kind, g.Port.StrVal)
		case g.Port.StrVal != "admin":
			c.errorf("Deployment %s: %s port %q: /healthz and /readyz are on the admin port", c.deploy.Name, pr.kind, g.Port.StrVal)
		case protocol(p.Protocol) != corev1.ProtocolTCP:
			c.errorf("Deployment %s: %s port %q is %s", c.deploy.Name, pr.kind, g.Port.StrVal, p.Protocol)
		}
	}
}

// checkDrain: the grace period, counted from the start of preStop, covers
// the preStop sleep, --drain-timeout and the engines' close.
func (c *checker) checkDrain(pod *corev1.PodTemplateSpec, ctr *corev1.Container, flags map[string]string) {
	name := c.deploy.Name
	var preStop time.Duration
	switch ps := ctr.Lifecycle; {
	case ps == nil || ps.PreStop == nil:
		c.errorf("Deployment %s: no preStop: the pod would stop taking traffic while Services still send it some", name)
		return
	case ps.PreStop.Sleep != nil:
		preStop = time.Duration(ps.PreStop.Sleep.Seconds) * time.Second
	case ps.PreStop.Exec != nil && len(ps.PreStop.Exec.Command) == 2 && path.Base(ps.PreStop.Exec.Command[0]) == "sleep":
		n, err := strconv.Atoi(ps.PreStop.Exec.Command[1])
		if err != nil {
			c.errorf("Deployment %s: preStop %q: not sleep SECONDS", name, ps.PreStop.Exec.Command)
			return
		}
		preStop = time.Duration(n) * time.Second
	default:
		c.errorf("Deployment %s: preStop is not a sleep", name)
		return
	}
	if preStop <= 0 {
		c.errorf("Deployment %s: preStop sleeps %v", name, preStop)
	}
	v, ok := flags["drain-timeout"]
	if !ok {
		c.errorf("Deployment %s: --drain-timeout is not given: the grace period must be computed from it", name)
		return
	}
	drain, err := time.ParseDuration(v)
	if err != nil {
		c.errorf("Deployment %s: --drain-timeout=%s: %v", name, v, err)
		return
	}
	if pod.Spec.TerminationGracePeriodSeconds == nil {
		c.errorf("Deployment %s: terminationGracePeriodSeconds is not set (the default 30 s is not derived from the drain)", name)
		return
	}
	grace := time.Duration(*pod.Spec.TerminationGracePeriodSeconds) * time.Second
	if want := preStop + drain + shutdownMargin; grace < want {
		c.errorf("Deployment %s: terminationGracePeriodSeconds %v is less than preStop %v + --drain-timeout %v + %v to close: logdist would be killed while draining", name, grace, preStop, drain, shutdownMargin)
	}
}

// checkFiles: the files the flags name are mounted, from objects that
// have them; the config file is a ConfigMap's, with analyzers and without
// the settings the flags set; every ConfigMap and Secret is used.
func (c *checker) checkFiles(pod *corev1.PodTemplateSpec, ctr *corev1.Container, flags map[string]string) {
	name := c.deploy.Name
	volumes := c.volumes()
	used := map[string]bool{} // "ConfigMap/x", "Secret/y"
	for _, v := range pod.Spec.Volumes {
		switch {
		case v.ConfigMap != nil:
			used["ConfigMap/"+v.ConfigMap.Name] = true
			if c.configMaps[v.ConfigMap.Name] == nil {
				c.errorf("Deployment %s: volume %s: no ConfigMap %q", name, v.Name, v.ConfigMap.Name)
			}
		case v.Secret != nil:
			used["Secret/"+v.Secret.SecretName] = true
		}
	}
	for _, m := range ctr.VolumeMounts {
		if _, ok := volumes[m.Name]; !ok {
			c.errorf("Deployment %s: volumeMount %s: no volume of that name", name, m.Name)
		}
	}
	for cm := range c.configMaps {
		if !used["ConfigMap/"+cm] {
			c.errorf("ConfigMap %s: no volume of Deployment %s mounts it", cm, name)
		}
	}
	for s := range c.secrets {
		if !used["Secret/"+s] {
			c.errorf("Secret %s: no volume of Deployment %s mounts it", s, name)
		}
	}
	for flag := range FileFlags {
		file, ok := flags[flag]
		if !ok || file == "" {
			continue
		}
		data, found := c.mountedFile(volumes, ctr.VolumeMounts, "--"+flag, file)
		if flag != "config" || !found {
			continue
		}
		c.checkConfig(file, data, flags)
	}
	if _, ok := flags["config"]; !ok {
		c.errorf("Deployment %s: no --config: the ConfigMap's file is not read", name)
	}
}

// volumes indexes the Deployment's volumes by name.
func (c *checker) volumes() map[string]corev1.Volume {
	volumes := map[string]corev1.Volume{}
	for _, v := range c.deploy.Spec.Template.Spec.Volumes {
		volumes[v.Name] = v
	}
	return volumes
}

// command returns the args of logdist's container, and a function that
// reads a file they name from the ConfigMap or Secret mounted there (false
// when that object is not among objs).
func command(objs []Object) ([]string, func(file string) ([]byte, bool), error) {
	c := newChecker(objs)
	if c.deploy == nil {
		return nil, nil, errors.New("no Deployment")
	}
	ctr := c.container()
	if ctr == nil {
		return nil, nil, errors.Join(c.errs...)
	}
	volumes := c.volumes()
	return ctr.Args, func(file string) ([]byte, bool) {
		return c.mountedFile(volumes, ctr.VolumeMounts, "file", file)
	}, nil
}

// mountedFile finds the volume that holds file and, when it is a
// ConfigMap or Secret of this installation, the file's content. found is
// false when the object is not in the set (a Secret made elsewhere).
func (c *checker) mountedFile(volumes map[string]corev1.Volume, mounts []corev1.VolumeMount, flag, file string) (data []byte, found bool) {
	name := c.deploy.Name
	if !path.IsAbs(file) {
		c.errorf("Deployment %s: %s=%s: not an absolute path (the image's working directory is /)", name, flag, file)
		return nil, false
	}
	var m *corev1.VolumeMount
	for i := range mounts {
		if strings.HasPrefix(file, strings.TrimSuffix(mounts[i].MountPath, "/")+"/") && (m == nil || len(mounts[i].MountPath) > len(m.MountPath)) {
			m = &mounts[i]
		}
	}
	if m == nil {
		c.errorf("Deployment %s: %s=%s: no volume is mounted there (the root file system is read-only and empty)", name, flag, file)
		return nil, false
	}
	key := strings.TrimPrefix(file, strings.TrimSuffix(m.MountPath, "/")+"/")
	if m.SubPath != "" {
		c.errorf("Deployment %s: volumeMount %s uses subPath: its file never sees updates", name, m.Name)
	}
	v := volumes[m.Name]
	switch {
	case v.ConfigMap != nil:
		cm := c.configMaps[v.ConfigMap.Name]
		if cm == nil {
			return nil, false // reported by checkFiles
		}
		s, ok := cm.Data[key]
		if !ok {
			c.errorf("Deployment %s: %s=%s: ConfigMap %s has no key %q", name, flag, file, cm.Name, key)
		}
		return []byte(s), ok
	case v.Secret != nil:
		s := c.secrets[v.Secret.SecretName]
		if s == nil {
			return nil, false
		}
		if b, ok := s.Data[key]; ok {
			return b, true
		}
		if b, ok := s.StringData[key]; ok {
			return []byte(b), true
		}
		c.errorf("Deployment %s: %s=%s: Secret %s has no key %q", name, flag, file, s.Name, key)
		return nil, false
	}
	c.errorf("Deployment %s: %s=%s: volume %s is neither a ConfigMap nor a Secret", name, flag, file, m.Name)
	return nil, false
}

// checkConfig: logdist's config file parses, lists analyzers, and does not
// set what the flags set (the flags would win, silently) nor a listener
// (it would listen on a port no Service or probe knows).
func (c *checker) checkConfig(file string, data []byte, flags map[string]string) {
	var cfg map[string]any
	if err := yaml.Unmarshal(data, &cfg); err != nil {
		c.errorf("config file %s: %v", file, err)
		return
	}
	as, ok := cfg["analyzers"].([]any)
	if !ok || len(as) == 0 {
		c.errorf("config file %s: no analyzers list", file)
	}
	for i, a := range as {
		switch a := a.(type) {
		case string: // the --analyzer form, name=…,addr=…
			if !strings.Contains(a, "addr=") {
				c.errorf("config file %s: analyzers[%d] %q has no addr=", file, i, a)
			}
		case map[string]any:
			if s, _ := a["addr"].(string); s == "" {
				c.errorf("config file %s: analyzers[%d] has no addr", file, i)
			}
		default:
			c.errorf("config file %s: analyzers[%d] is neither a mapping nor name=…,addr=…", file, i)
		}
	}
	for k := range cfg {
		if _, ok := flags[k]; ok {
			c.errorf("config file %s: %s is also a flag of the Deployment, which wins: set it in one place", file, k)
			continue
		}
		for _, l := range listeners {
			if k == l.flag {
				c.errorf("config file %s: %s listens where no container port, probe or Service knows: set it as a flag with its port", file, k)
			}
		}
	}
}

// checkSecurity: non-root, read-only, no capabilities, the runtime's
// seccomp profile, and resources requested and bounded.
func (c *checker) checkSecurity(pod *corev1.PodTemplateSpec, ctr *corev1.Container) {
	name := c.deploy.Name
	psc, sc := pod.Spec.SecurityContext, ctr.SecurityContext
	if psc == nil {
		psc = &corev1.PodSecurityContext{}
	}
	if sc == nil {
		c.errorf("Deployment %s: container %s has no securityContext", name, ctr.Name)
		return
	}
	if !isTrue(sc.RunAsNonRoot) && !isTrue(psc.RunAsNonRoot) {
		c.errorf("Deployment %s: runAsNonRoot is not set", name)
	}
	if !isTrue(sc.ReadOnlyRootFilesystem) {
		c.errorf("Deployment %s: readOnlyRootFilesystem is not set", name)
	}
	if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		c.errorf("Deployment %s: allowPrivilegeEscalation is not false", name)
	}
	if sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") || len(sc.Capabilities.Add) > 0 {
		c.errorf("Deployment %s: capabilities must drop ALL and add none (the ports are above 1024)", name)
	}
	seccomp := psc.SeccompProfile
	if sc.SeccompProfile != nil {
		seccomp = sc.SeccompProfile
	}
	if seccomp == nil || seccomp.Type != corev1.SeccompProfileTypeRuntimeDefault {
		c.errorf("Deployment %s: seccompProfile is not RuntimeDefault", name)
	}
	for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		req, hasReq := ctr.Resources.Requests[r]
		lim, hasLim := ctr.Resources.Limits[r]
		switch {
		case !hasReq:
			c.errorf("Deployment %s: no %s request (the autoscaler's utilisation is relative to it)", name, r)
		case !hasLim:
			c.errorf("Deployment %s: no %s limit", name, r)
		case req.Cmp(lim) > 0:
			c.errorf("Deployment %s: %s request %s exceeds its limit %s", name, r, req.String(), lim.String())
		}
	}
}

func isTrue(b *bool) bool { return b != nil && *b }

// checkService: the selector picks the Deployment's pods, and each port
// names a container port of the same protocol.
func (c *checker) checkService(s *corev1.Service, podLabels map[string]string, ports map[string]corev1.ContainerPort) {
	if len(s.Spec.Selector) == 0 {
		c.errorf("Service %s: no selector", s.Name)
	} else if !labels.SelectorFromSet(s.Spec.Selector).Matches(labels.Set(podLabels)) {
		c.errorf("Service %s: selector %v does not match the Deployment's pod labels %v", s.Name, s.Spec.Selector, podLabels)
	}
	if len(s.Spec.Ports) == 0 {
		c.errorf("Service %s: no ports", s.Name)
	}
	for _, sp := range s.Spec.Ports {
		if sp.TargetPort.Type != intstr.String {
			c.errorf("Service %s: port %s: targetPort %s: name the container port, so that it follows the flags", s.Name, sp.Name, sp.TargetPort.String())
			continue
		}
		cp, ok := ports[sp.TargetPort.StrVal]
		switch {
		case !ok:
			c.errorf("Service %s: port %s: targetPort %q: the container has no port of that name", s.Name, sp.Name, sp.TargetPort.StrVal)
		case protocol(cp.Protocol) != protocol(sp.Protocol):
			c.errorf("Service %s: port %s is %s, container port %s is %s", s.Name, sp.Name, protocol(sp.Protocol), cp.Name, protocol(cp.Protocol))
		}
	}
	if s.Spec.ExternalTrafficPolicy != "" && s.Spec.Type != corev1.ServiceTypeLoadBalancer && s.Spec.Type != corev1.ServiceTypeNodePort {
		c.errorf("Service %s: externalTrafficPolicy applies to LoadBalancer and NodePort only, not %s", s.Name, s.Spec.Type)
	}
}

// checkSelector: sel is set and selects pods labelled podLabels.
func (c *checker) checkSelector(what string, sel *metav1.LabelSelector, podLabels map[string]string) {
	if sel == nil || (len(sel.MatchLabels) == 0 && len(sel.MatchExpressions) == 0) {
		c.errorf("%s: no selector", what)
		return
	}
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		c.errorf("%s: %v", what, err)
		return
	}
	if !s.Matches(labels.Set(podLabels)) {
		c.errorf("%s %s does not match the Deployment's pod labels %v", what, s, podLabels)
	}
}

// checkScaling: the autoscaler scales this Deployment on CPU within a
// range that holds its replicas, and the disruption budget selects its
// pods and lets at least one go at the smallest size.
func (c *checker) checkScaling(podLabels map[string]string) {
	d := c.deploy
	minReplicas := int32(1)
	if d.Spec.Replicas != nil {
		minReplicas = *d.Spec.Replicas
	}
	if len(c.hpas) > 1 {
		c.errorf("%d HorizontalPodAutoscalers", len(c.hpas))
	}
	for _, h := range c.hpas {
		ref := h.Spec.ScaleTargetRef
		if ref.APIVersion != "apps/v1" || ref.Kind != "Deployment" || ref.Name != d.Name {
			c.errorf("HorizontalPodAutoscaler %s: scaleTargetRef %s %s %s, want apps/v1 Deployment %s", h.Name, ref.APIVersion, ref.Kind, ref.Name, d.Name)
		}
		lo := int32(1)
		if h.Spec.MinReplicas != nil {
			lo = *h.Spec.MinReplicas
		}
		if lo > h.Spec.MaxReplicas {
			c.errorf("HorizontalPodAutoscaler %s: minReplicas %d > maxReplicas %d", h.Name, lo, h.Spec.MaxReplicas)
		}
		if d.Spec.Replicas != nil && (*d.Spec.Replicas < lo || *d.Spec.Replicas > h.Spec.MaxReplicas) {
			c.errorf("Deployment %s: replicas %d outside HorizontalPodAutoscaler %s's %d-%d: every apply would fight it", d.Name, *d.Spec.Replicas, h.Name, lo, h.Spec.MaxReplicas)
		}
		cpu := slices.ContainsFunc(h.Spec.Metrics, func(m autoscalingv2.MetricSpec) bool {
			return m.Type == autoscalingv2.ResourceMetricSourceType && m.Resource != nil && m.Resource.Name == corev1.ResourceCPU
		})
		if !cpu {
			c.errorf("HorizontalPodAutoscaler %s: no CPU resource metric", h.Name)
		}
		minReplicas = lo
	}
	for _, p := range c.pdbs {
		c.checkSelector("PodDisruptionBudget "+p.Name+" spec.selector", p.Spec.Selector, podLabels)
		switch {
		case p.Spec.MaxUnavailable != nil && p.Spec.MinAvailable != nil:
			c.errorf("PodDisruptionBudget %s: both minAvailable and maxUnavailable", p.Name)
		case p.Spec.MaxUnavailable != nil:
			if n, err := intstr.GetScaledValueFromIntOrPercent(p.Spec.MaxUnavailable, int(minReplicas), true); err != nil || n < 1 {
				c.errorf("PodDisruptionBudget %s: maxUnavailable %s lets no pod go at %d replicas: node drains would block", p.Name, p.Spec.MaxUnavailable.String(), minReplicas)
			}
		case p.Spec.MinAvailable != nil:
			if n, err := intstr.GetScaledValueFromIntOrPercent(p.Spec.MinAvailable, int(minReplicas), true); err != nil || n >= int(minReplicas) {
				c.errorf("PodDisruptionBudget %s: minAvailable %s lets no pod go at %d replicas: node drains would block", p.Name, p.Spec.MinAvailable.String(), minReplicas)
			}
		default:
			c.errorf("PodDisruptionBudget %s: neither minAvailable nor maxUnavailable", p.Name)
		}
	}
}
