package k8scheck

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// Decode refuses what the API server would refuse or silently drop: a
// misspelled field, a key given twice, a kind (or a version of it) not
// known here.
func TestDecodeRefuses(t *testing.T) {
	deployment, err := os.ReadFile(filepath.Join(root, plainDir, "deployment.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	f := func(want string, doc string) {
		t.Helper()
		_, err := DecodeAll("test", []byte(doc))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v, want one containing %q", err, want)
		}
	}
	f(`unknown field "spec.template.spec.terminationGracePeriodSecond"`,
		strings.Replace(string(deployment), "terminationGracePeriodSeconds:", "terminationGracePeriodSecond:", 1))
	f(`unknown field "spec.template.spec.containers[0].readinesProbe"`,
		strings.Replace(string(deployment), "readinessProbe:", "readinesProbe:", 1))
	f(`unknown field "spec.selectors"`, "apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec:\n  selectors: {a: b}\n")
	f(`unknown field "spec.template.spec.containers[0].ReadinessProbe"`,
		strings.Replace(string(deployment), "readinessProbe:", "ReadinessProbe:", 1))
	f(`key "port" already set`, "apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec:\n  ports:\n    - port: 1\n      port: 2\n")
	f(`unknown apiVersion and kind "v1" "Pod"`, "apiVersion: v1\nkind: Pod\nmetadata: {name: x}\n")
	f(`unknown apiVersion and kind "autoscaling/v1" "HorizontalPodAutoscaler"`, "apiVersion: autoscaling/v1\nkind: HorizontalPodAutoscaler\nmetadata: {name: x}\n")
	f("without metadata.name", "apiVersion: v1\nkind: ConfigMap\n")
	if _, err := Decode("test", []byte("apiVersion: v1\nkind: Pod\n")); !errors.Is(err, ErrUnknownKind) {
		t.Errorf("Decode of a Pod: %v, want ErrUnknownKind", err)
	}
}

// plainSet is the plain manifests' objects, decoded afresh, with the ones
// a mutation needs.
type plainSet struct {
	objs    []Object
	deploy  *appsv1.Deployment
	ctr     *corev1.Container
	config  *corev1.ConfigMap
	hpa     *autoscalingv2.HorizontalPodAutoscaler
	pdb     *policyv1.PodDisruptionBudget
	service map[string]*corev1.Service
}

func loadPlain(t *testing.T) *plainSet {
	t.Helper()
	s := &plainSet{objs: plainObjects(t), service: map[string]*corev1.Service{}}
	for _, o := range s.objs {
		switch v := o.Obj.(type) {
		case *appsv1.Deployment:
			s.deploy, s.ctr = v, &v.Spec.Template.Spec.Containers[0]
		case *corev1.ConfigMap:
			s.config = v
		case *autoscalingv2.HorizontalPodAutoscaler:
			s.hpa = v
		case *policyv1.PodDisruptionBudget:
			s.pdb = v
		case *corev1.Service:
			s.service[v.Name] = v
		}
	}
	if s.deploy == nil || s.config == nil || s.hpa == nil || s.pdb == nil || s.service["logdist"] == nil || s.service["logdist-syslog"] == nil {
		t.Fatalf("the plain manifests lack an object the mutations need: %v", Kinds(s.objs))
	}
	return s
}

// setArg replaces (or, with a new name, adds) --name=value; an empty
// value removes it.
func (s *plainSet) setArg(name, value string) {
	args := s.ctr.Args[:0]
	for _, a := range s.ctr.Args {
		if !strings.HasPrefix(a, "--"+name+"=") {
			args = append(args, a)
		}
	}
	if value != "" {
		args = append(args, "--"+name+"="+value)
	}
	s.ctr.Args = args
}

// Check catches each way the objects can disagree. The plain manifests
// pass (TestPlainManifests); each case breaks one thing.
func TestCheckCatches(t *testing.T) {
	f := func(want string, mutate func(s *plainSet)) {
		t.Helper()
		s := loadPlain(t)
		mutate(s)
		errs := Check(s.objs)
		for _, err := range errs {
			if strings.Contains(err.Error(), want) {
				return
			}
		}
		t.Errorf("Check found %v, want an error containing %q", errs, want)
	}
	f(`Service logdist: selector map[app.kubernetes.io/name:logdistt] does not match`, func(s *plainSet) {
		s.service["logdist"].Spec.Selector["app.kubernetes.io/name"] = "logdistt"
	})
	f("Deployment logdist spec.selector app.kubernetes.io/name=other does not match", func(s *plainSet) {
		s.deploy.Spec.Selector.MatchLabels["app.kubernetes.io/name"] = "other"
	})
	f("terminationGracePeriodSeconds 15s is less than preStop 5s + --drain-timeout 10s + 2s", func(s *plainSet) {
		s.deploy.Spec.Template.Spec.TerminationGracePeriodSeconds = new(int64(15))
	})
	f("terminationGracePeriodSeconds 20s is less than preStop 5s + --drain-timeout 15s", func(s *plainSet) {
		s.setArg("drain-timeout", "15s")
	})
	f("--drain-timeout is not given", func(s *plainSet) { s.setArg("drain-timeout", "") })
	f("no preStop", func(s *plainSet) { s.ctr.Lifecycle = nil })
	f(`readinessProbe port "admn": the container has no port of that name`, func(s *plainSet) {
		s.ctr.ReadinessProbe.HTTPGet.Port = intstr.FromString("admn")
	})
	f("livenessProbe port 7480: name the container port", func(s *plainSet) {
		s.ctr.LivenessProbe.HTTPGet.Port = intstr.FromInt32(7480)
	})
	f(`readinessProbe path "/healthz", want "/readyz"`, func(s *plainSet) { s.ctr.ReadinessProbe.HTTPGet.Path = "/healthz" })
	f(`container port "agents" is 7401, but --listen=:7400 listens on 7400`, func(s *plainSet) { s.ctr.Ports[0].ContainerPort = 7401 })
	f("--admin=127.0.0.1:7480: the kubelet's probes", func(s *plainSet) { s.setArg("admin", "127.0.0.1:7480") })
	f("--syslog-udp is not given", func(s *plainSet) { s.setArg("syslog-udp", "") })
	f(`--syslog-tcp=:5514 listens, but the container has no port named "syslog-tcp"`, func(s *plainSet) { s.setArg("syslog-tcp", ":5514") })
	f(`Service logdist-syslog: port syslog-udp is TCP, container port syslog-udp is UDP`, func(s *plainSet) {
		s.service["logdist-syslog"].Spec.Ports[0].Protocol = corev1.ProtocolTCP
	})
	f(`Service logdist: port agents: targetPort "agent": the container has no port of that name`, func(s *plainSet) {
		s.service["logdist"].Spec.Ports[0].TargetPort = intstr.FromString("agent")
	})
	f("config file /etc/logdist/config/logdist.yaml: no analyzers list", func(s *plainSet) {
		s.config.Data["logdist.yaml"] = "log-format: json\n"
	})
	f("config file /etc/logdist/config/logdist.yaml: listen is also a flag", func(s *plainSet) {
		s.config.Data["logdist.yaml"] += "listen: :9000\n"
	})
	f("config file /etc/logdist/config/logdist.yaml: syslog-tcp listens where no container port", func(s *plainSet) {
		s.config.Data["logdist.yaml"] += "syslog-tcp: :5514\n"
	})
	f(`--config=/etc/logdist/config/logdist.yaml: ConfigMap logdist has no key "logdist.yaml"`, func(s *plainSet) {
		s.config.Data = map[string]string{"logdist.yml": s.config.Data["logdist.yaml"]}
	})
	f("--auth-file=/etc/logdist/nowhere/auth.yaml: no volume is mounted there", func(s *plainSet) {
		s.setArg("auth-file", "/etc/logdist/nowhere/auth.yaml")
	})
	f(`--auth-file=/etc/logdist/auth/tokens.yaml: Secret logdist-auth has no key "tokens.yaml"`, func(s *plainSet) {
		s.setArg("auth-file", "/etc/logdist/auth/tokens.yaml")
	})
	f("Secret logdist-tls: no volume of Deployment logdist mounts it", func(s *plainSet) {
		for i := range s.deploy.Spec.Template.Spec.Volumes {
			if v := &s.deploy.Spec.Template.Spec.Volumes[i]; v.Secret != nil && v.Secret.SecretName == "logdist-tls" {
				v.Secret.SecretName = "logdist-certs"
			}
		}
	})
	f("readOnlyRootFilesystem is not set", func(s *plainSet) { s.ctr.SecurityContext.ReadOnlyRootFilesystem = nil })
	f("capabilities must drop ALL", func(s *plainSet) { s.ctr.SecurityContext.Capabilities.Drop = nil })
	f("seccompProfile is not RuntimeDefault", func(s *plainSet) { s.deploy.Spec.Template.Spec.SecurityContext.SeccompProfile = nil })
	f("no memory limit", func(s *plainSet) { delete(s.ctr.Resources.Limits, corev1.ResourceMemory) })
	f("HorizontalPodAutoscaler logdist: scaleTargetRef apps/v1 Deployment logdist-old", func(s *plainSet) {
		s.hpa.Spec.ScaleTargetRef.Name = "logdist-old"
	})
	f("replicas 1 outside HorizontalPodAutoscaler logdist's 2-10", func(s *plainSet) { s.deploy.Spec.Replicas = new(int32(1)) })
	f("PodDisruptionBudget logdist: minAvailable 2 lets no pod go at 2 replicas", func(s *plainSet) {
		s.pdb.Spec.MaxUnavailable, s.pdb.Spec.MinAvailable = nil, new(intstr.FromInt32(2))
	})
	f("PodDisruptionBudget logdist spec.selector app.kubernetes.io/name=other does not match", func(s *plainSet) {
		s.pdb.Spec.Selector.MatchLabels["app.kubernetes.io/name"] = "other"
	})
	f(`label app.kubernetes.io/name is "", want "logdist"`, func(s *plainSet) { s.pdb.Labels = nil })
	f(`namespace "logs": the manifests are namespace-less`, func(s *plainSet) { s.config.Namespace = "logs" })
}
