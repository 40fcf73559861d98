// Package deployments holds vwire's Kubernetes manifests and systemd units
// (see README.md); its tests check them against the Kubernetes API types, the
// vwire binary's real flags, and the networkservicemesh.io examples.
package deployments

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apiextv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"

	"github.com/vwire/vwire/registry/manifest"
)

const (
	kubeDir       = "kubernetes"
	systemdDir    = "systemd"
	namespace     = "vwire"
	vwireImage    = "ghcr.io/vwire/vwire"
	examplesFile  = "examples/architecture/networkservices.yaml"
	seedFile      = "../registry/manifest/testdata/seed-examples.yaml"
	seedMalformed = 3 // the seed document `vwire apply` must reject
	crdGroup      = "networkservicemesh.io"
	crdVersion    = "v1"
)

// externalSecrets are created by the operator before applying (README.md).
var externalSecrets = []string{"vwire-ca", "vwire-etcd-tls", "vwire-etcd-client-tls"}

// ---- YAML documents ---------------------------------------------------------

// document is one YAML document of a multi-document file.
type document struct {
	file string
	n    int // 1-based, counting documents with content only
	line int // first line of the document in the file
	text string
}

func (d document) String() string {
	return fmt.Sprintf("%s: document %d (line %d)", d.file, d.n, d.line)
}

// splitDocuments cuts a file at its `---` lines, dropping documents made of
// comments and blank lines only (as `vwire apply` and kubectl do).
func splitDocuments(t *testing.T, file string) []document {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var docs []document
	var cur []string
	start := 1
	flush := func() {
		text := strings.Join(cur, "\n")
		if hasContent(text) {
			docs = append(docs, document{file: file, n: len(docs) + 1, line: start, text: text + "\n"})
		}
		cur = nil
	}
	for i, l := range strings.Split(string(data), "\n") {
		if l == "---" || strings.HasPrefix(l, "--- ") || strings.HasPrefix(l, "---\t") {
			flush()
			start = i + 2
			continue
		}
		cur = append(cur, l)
	}
	flush()
	return docs
}

func hasContent(text string) bool {
	for l := range strings.SplitSeq(text, "\n") {
		if s := strings.TrimSpace(l); s != "" && !strings.HasPrefix(s, "#") {
			return true
		}
	}
	return false
}

// ---- Kubernetes manifests -------------------------------------------------

// kustomization is the part of kustomize's Kustomization these manifests use,
// decoded strictly: a field outside it fails the test.
type kustomization struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Namespace  string `json:"namespace"`
	Labels     []struct {
		Pairs            map[string]string `json:"pairs"`
		IncludeSelectors bool              `json:"includeSelectors,omitempty"`
	} `json:"labels"`
	Resources []string `json:"resources"`
	Images    []struct {
		Name    string `json:"name"`
		NewName string `json:"newName,omitempty"`
		NewTag  string `json:"newTag,omitempty"`
		Digest  string `json:"digest,omitempty"`
	} `json:"images"`
}

// kinds maps apiVersion/kind to the API type a document decodes into.
var kinds = map[string]func() any{
	"v1/Namespace":                                     func() any { return &corev1.Namespace{} },
	"v1/Service":                                       func() any { return &corev1.Service{} },
	"v1/ServiceAccount":                                func() any { return &corev1.ServiceAccount{} },
	"v1/ConfigMap":                                     func() any { return &corev1.ConfigMap{} },
	"v1/PersistentVolumeClaim":                         func() any { return &corev1.PersistentVolumeClaim{} },
	"apps/v1/Deployment":                               func() any { return &appsv1.Deployment{} },
	"apps/v1/DaemonSet":                                func() any { return &appsv1.DaemonSet{} },
	"apps/v1/StatefulSet":                              func() any { return &appsv1.StatefulSet{} },
	"rbac.authorization.k8s.io/v1/Role":                func() any { return &rbacv1.Role{} },
	"rbac.authorization.k8s.io/v1/ClusterRole":         func() any { return &rbacv1.ClusterRole{} },
	"rbac.authorization.k8s.io/v1/RoleBinding":         func() any { return &rbacv1.RoleBinding{} },
	"rbac.authorization.k8s.io/v1/ClusterRoleBinding":  func() any { return &rbacv1.ClusterRoleBinding{} },
	"policy/v1/PodDisruptionBudget":                    func() any { return &policyv1.PodDisruptionBudget{} },
	"networking.k8s.io/v1/NetworkPolicy":               func() any { return &networkingv1.NetworkPolicy{} },
	"apiextensions.k8s.io/v1/CustomResourceDefinition": func() any { return &apiextv1.CustomResourceDefinition{} },
}

// manifests holds every decoded object of deployments/kubernetes.
type manifests struct {
	kust    kustomization
	objects []object
}

type object struct {
	doc  document
	kind string // apiVersion/kind
	obj  any
}

func (m *manifests) all(kind string) []object {
	var out []object
	for _, o := range m.objects {
		if o.kind == kind {
			out = append(out, o)
		}
	}
	return out
}

var loaded struct {
	once sync.Once
	m    *manifests
	errs []string
}

// loadManifests decodes every document under deployments/kubernetes strictly
// into its API type; the errors are reported by TestManifestsDecodeStrictly
// and fail every test that uses the objects.
func loadManifests(t *testing.T) *manifests {
	t.Helper()
	loaded.once.Do(func() {
		m := &manifests{}
		errf := func(format string, args ...any) { loaded.errs = append(loaded.errs, fmt.Sprintf(format, args...)) }
		kdata, err := os.ReadFile(filepath.Join(kubeDir, "kustomization.yaml"))
		if err != nil {
			errf("%v", err)
		} else if err := yaml.UnmarshalStrict(kdata, &m.kust); err != nil {
			errf("kustomization.yaml: %v", err)
		}
		files, err := filepath.Glob(filepath.Join(kubeDir, "*.y*ml"))
		if err != nil {
			errf("%v", err)
		}
		for _, f := range files {
			if filepath.Base(f) == "kustomization.yaml" {
				continue
			}
			for _, d := range splitDocuments(t, f) {
				var tm metav1.TypeMeta
				if err := yaml.Unmarshal([]byte(d.text), &tm); err != nil {
					errf("%s: %v", d, err)
					continue
				}
				kind := tm.APIVersion + "/" + tm.Kind
				newObj := kinds[kind]
				if newObj == nil {
					errf("%s: apiVersion %q kind %q: not a kind these manifests may use", d, tm.APIVersion, tm.Kind)
					continue
				}
				obj := newObj()
				if err := yaml.UnmarshalStrict([]byte(d.text), obj); err != nil {
					errf("%s (%s): %v", d, kind, err)
					continue
				}
				m.objects = append(m.objects, object{doc: d, kind: kind, obj: obj})
			}
		}
		loaded.m = m
	})
	if len(loaded.errs) > 0 {
		t.Fatalf("manifests do not decode:\n%s", strings.Join(loaded.errs, "\n"))
	}
	return loaded.m
}

func TestManifestsDecodeStrictly(t *testing.T) {
	m := loadManifests(t)
	if len(m.objects) == 0 {
		t.Fatal("no manifests")
	}
	for _, o := range m.objects {
		meta := objectMeta(o.obj)
		if meta.Name == "" {
			t.Errorf("%s: metadata.name is empty", o.doc)
		}
		if namespaced(o.kind) && meta.Namespace != namespace {
			t.Errorf("%s: %s %s is in namespace %q, want %q", o.doc, o.kind, meta.Name, meta.Namespace, namespace)
		}
		if !namespaced(o.kind) && meta.Namespace != "" {
			t.Errorf("%s: cluster-scoped %s %s has namespace %q", o.doc, o.kind, meta.Name, meta.Namespace)
		}
	}
	if len(m.all("v1/Namespace")) != 1 || objectMeta(m.all("v1/Namespace")[0].obj).Name != namespace {
		t.Errorf("want exactly one Namespace, %q", namespace)
	}
}

// The strict decoder must really refuse unknown fields: a misspelt field in a
// manifest would otherwise be dropped silently.
func TestStrictDecodingRejectsUnknownFields(t *testing.T) {
	doc := "apiVersion: apps/v1\nkind: DaemonSet\nmetadata: {name: x}\nspec:\n  template:\n    spec:\n      hostNetwrk: true\n"
	if err := yaml.UnmarshalStrict([]byte(doc), &appsv1.DaemonSet{}); err == nil {
		t.Fatal("a misspelt field decoded without error")
	}
}

func objectMeta(obj any) metav1.ObjectMeta {
	return reflect.ValueOf(obj).Elem().FieldByName("ObjectMeta").Interface().(metav1.ObjectMeta)
}

func namespaced(kind string) bool {
	switch kind {
	case "v1/Namespace", "rbac.authorization.k8s.io/v1/ClusterRole", "rbac.authorization.k8s.io/v1/ClusterRoleBinding",
		"apiextensions.k8s.io/v1/CustomResourceDefinition":
		return false
	}
	return true
}

func TestKustomizationListsEveryManifest(t *testing.T) {
	m := loadManifests(t)
	k := m.kust
	if k.APIVersion != "kustomize.config.k8s.io/v1beta1" || k.Kind != "Kustomization" {
		t.Errorf("kustomization.yaml: apiVersion/kind %s/%s", k.APIVersion, k.Kind)
	}
	if k.Namespace != namespace {
		t.Errorf("kustomization.yaml: namespace %q, want %q", k.Namespace, namespace)
	}
	listed := map[string]bool{}
	for _, r := range k.Resources {
		if listed[r] {
			t.Errorf("kustomization.yaml lists %s twice", r)
		}
		listed[r] = true
		if filepath.IsAbs(r) || strings.Contains(r, "..") {
			t.Errorf("kustomization.yaml: resource %s is outside deployments/kubernetes", r)
		}
		if _, err := os.Stat(filepath.Join(kubeDir, r)); err != nil {
			t.Errorf("kustomization.yaml: resource %s: %v", r, err)
		}
	}
	files, _ := filepath.Glob(filepath.Join(kubeDir, "*.y*ml"))
	for _, f := range files {
		if b := filepath.Base(f); b != "kustomization.yaml" && !listed[b] {
			t.Errorf("%s is not listed in kustomization.yaml", f)
		}
	}
	// The vwire image is a kustomize image, so that it can be overridden, and
	// every image used is one.
	images := map[string]bool{}
	for _, im := range k.Images {
		images[im.Name] = true
	}
	if !images[vwireImage] {
		t.Errorf("kustomization.yaml: images does not name %s", vwireImage)
	}
	for _, c := range allContainers(m) {
		name, _, _ := strings.Cut(c.c.Image, ":")
		if !images[name] {
			t.Errorf("%s: container %s: image %s is not among kustomization.yaml's images", c.where, c.c.Name, c.c.Image)
		}
	}
}

// podContainer is a container with where it comes from.
type podContainer struct {
	where string
	pod   *corev1.PodSpec
	c     corev1.Container
	init  bool
}

func podSpecs(m *manifests) map[string]*corev1.PodSpec {
	out := map[string]*corev1.PodSpec{}
	for _, o := range m.objects {
		switch w := o.obj.(type) {
		case *appsv1.Deployment:
			out["Deployment/"+w.Name] = &w.Spec.Template.Spec
		case *appsv1.DaemonSet:
			out["DaemonSet/"+w.Name] = &w.Spec.Template.Spec
		case *appsv1.StatefulSet:
			out["StatefulSet/"+w.Name] = &w.Spec.Template.Spec
		}
	}
	return out
}

func allContainers(m *manifests) []podContainer {
	var out []podContainer
	specs := podSpecs(m)
	for _, where := range slices.Sorted(maps.Keys(specs)) {
		ps := specs[where]
		for _, c := range ps.InitContainers {
			out = append(out, podContainer{where, ps, c, true})
		}
		for _, c := range ps.Containers {
			out = append(out, podContainer{where, ps, c, false})
		}
	}
	return out
}

func TestWorkloads(t *testing.T) {
	m := loadManifests(t)
	sas := map[string]*corev1.ServiceAccount{}
	for _, o := range m.all("v1/ServiceAccount") {
		sa := o.obj.(*corev1.ServiceAccount)
		sas[sa.Name] = sa
		if sa.AutomountServiceAccountToken == nil || *sa.AutomountServiceAccountToken {
			t.Errorf("ServiceAccount %s mounts its token: vwire uses no Kubernetes API", sa.Name)
		}
	}
	configMaps := map[string]*corev1.ConfigMap{}
	for _, o := range m.all("v1/ConfigMap") {
		cm := o.obj.(*corev1.ConfigMap)
		configMaps[cm.Name] = cm
	}
	for _, o := range m.objects {
		var sel *metav1.LabelSelector
		var tmpl map[string]string
		switch w := o.obj.(type) {
		case *appsv1.Deployment:
			sel, tmpl = w.Spec.Selector, w.Spec.Template.Labels
		case *appsv1.DaemonSet:
			sel, tmpl = w.Spec.Selector, w.Spec.Template.Labels
		case *appsv1.StatefulSet:
			sel, tmpl = w.Spec.Selector, w.Spec.Template.Labels
		default:
			continue
		}
		if sel == nil || len(sel.MatchLabels) == 0 || !subset(sel.MatchLabels, tmpl) {
			t.Errorf("%s: selector %v does not select the pod template's labels %v", o.doc, sel, tmpl)
		}
	}
	for where, ps := range podSpecs(m) {
		if ps.ServiceAccountName == "" || sas[ps.ServiceAccountName] == nil {
			t.Errorf("%s: serviceAccountName %q is not one of the manifests' ServiceAccounts", where, ps.ServiceAccountName)
		}
		if ps.AutomountServiceAccountToken == nil || *ps.AutomountServiceAccountToken {
			t.Errorf("%s: mounts a service account token", where)
		}
		for _, v := range ps.Volumes {
			if v.ConfigMap != nil && configMaps[v.ConfigMap.Name] == nil {
				t.Errorf("%s: volume %s: ConfigMap %s is not in the manifests", where, v.Name, v.ConfigMap.Name)
			}
			if v.Secret != nil && !slices.Contains(externalSecrets, v.Secret.SecretName) {
				t.Errorf("%s: volume %s: unknown Secret %s", where, v.Name, v.Secret.SecretName)
			}
		}
		volumes := map[string]bool{}
		for _, v := range ps.Volumes {
			volumes[v.Name] = true
		}
		for _, c := range claimTemplates(m, where) {
			volumes[c] = true
		}
		for _, c := range append(slices.Clone(ps.InitContainers), ps.Containers...) {
			for _, vm := range c.VolumeMounts {
				if !volumes[vm.Name] {
					t.Errorf("%s: container %s mounts undefined volume %s", where, c.Name, vm.Name)
				}
			}
			env := map[string]bool{}
			for _, e := range c.Env {
				env[e.Name] = true
				if r := e.ValueFrom; r != nil && r.ConfigMapKeyRef != nil {
					cm := configMaps[r.ConfigMapKeyRef.Name]
					if cm == nil || !slices.Contains(slices.Collect(maps.Keys(cm.Data)), r.ConfigMapKeyRef.Key) {
						t.Errorf("%s: container %s: env %s: no key %s in ConfigMap %s", where, c.Name, e.Name, r.ConfigMapKeyRef.Key, r.ConfigMapKeyRef.Name)
					}
				}
			}
			// Kubernetes leaves an undefined $(VAR) as it is.
			for _, a := range append(slices.Clone(c.Command), c.Args...) {
				for _, mm := range kubeVar.FindAllStringSubmatch(a, -1) {
					if !env[mm[1]] {
						t.Errorf("%s: container %s: %q uses $(%s), which its env does not define", where, c.Name, a, mm[1])
					}
				}
			}
		}
	}
	// Every Service selects some pod template.
	for _, o := range m.all("v1/Service") {
		svc := o.obj.(*corev1.Service)
		found := false
		for _, ps := range allPodTemplates(m) {
			if subset(svc.Spec.Selector, ps.Labels) {
				found = true
				for _, p := range svc.Spec.Ports {
					if p.TargetPort.Type == intstr.String && !hasPort(ps.Spec, p.TargetPort.StrVal) {
						t.Errorf("Service %s: targetPort %s is no container port of the pods it selects", svc.Name, p.TargetPort.StrVal)
					}
				}
			}
		}
		if !found {
			t.Errorf("Service %s: selector %v selects no pod template", svc.Name, svc.Spec.Selector)
		}
	}
	// Least privilege: no vwire ServiceAccount is bound to any role.
	for _, kind := range []string{"rbac.authorization.k8s.io/v1/RoleBinding", "rbac.authorization.k8s.io/v1/ClusterRoleBinding"} {
		for _, o := range m.all(kind) {
			var subjects []rbacv1.Subject
			switch b := o.obj.(type) {
			case *rbacv1.RoleBinding:
				subjects = b.Subjects
			case *rbacv1.ClusterRoleBinding:
				subjects = b.Subjects
			}
			for _, s := range subjects {
				if s.Kind == "ServiceAccount" && sas[s.Name] != nil {
					t.Errorf("%s binds ServiceAccount %s: vwire's processes use no Kubernetes API", o.doc, s.Name)
				}
			}
		}
	}
}

var kubeVar = regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)

// claimTemplates returns the volume claim templates of a StatefulSet
// (where is "StatefulSet/<name>"), which its containers mount as volumes.
func claimTemplates(m *manifests, where string) []string {
	var out []string
	for _, o := range m.all("apps/v1/StatefulSet") {
		if s := o.obj.(*appsv1.StatefulSet); "StatefulSet/"+s.Name == where {
			for _, c := range s.Spec.VolumeClaimTemplates {
				out = append(out, c.Name)
			}
		}
	}
	return out
}

func allPodTemplates(m *manifests) []corev1.PodTemplateSpec {
	var out []corev1.PodTemplateSpec
	for _, o := range m.objects {
		switch w := o.obj.(type) {
		case *appsv1.Deployment:
			out = append(out, w.Spec.Template)
		case *appsv1.DaemonSet:
			out = append(out, w.Spec.Template)
		case *appsv1.StatefulSet:
			out = append(out, w.Spec.Template)
		}
	}
	return out
}

func hasPort(ps corev1.PodSpec, name string) bool {
	for _, c := range append(slices.Clone(ps.InitContainers), ps.Containers...) {
		for _, p := range c.Ports {
			if p.Name == name {
				return true
			}
		}
	}
	return false
}

func subset(sub, set map[string]string) bool {
	if len(sub) == 0 {
		return false
	}
	for k, v := range sub {
		if set[k] != v {
			return false
		}
	}
	return true
}

func TestNodeDaemonSet(t *testing.T) {
	m := loadManifests(t)
	dss := m.all("apps/v1/DaemonSet")
	if len(dss) != 1 {
		t.Fatalf("want one DaemonSet, got %d", len(dss))
	}
	ds := dss[0].obj.(*appsv1.DaemonSet)
	ps := &ds.Spec.Template.Spec
	if !ps.HostNetwork || !ps.HostPID {
		t.Errorf("DaemonSet %s: hostNetwork %v, hostPID %v; want both", ds.Name, ps.HostNetwork, ps.HostPID)
	}
	if ps.DNSPolicy != corev1.DNSClusterFirstWithHostNet {
		t.Errorf("DaemonSet %s: dnsPolicy %q: the manager resolves the registry's Service name from the host network", ds.Name, ps.DNSPolicy)
	}
	hostPaths := map[string]string{} // volume name -> host path
	for _, v := range ps.Volumes {
		if v.HostPath != nil {
			hostPaths[v.Name] = v.HostPath.Path
		}
	}
	containers := map[string]corev1.Container{}
	for _, c := range ps.InitContainers {
		containers[c.Name] = c
	}
	for _, c := range ps.Containers {
		containers[c.Name] = c
	}
	want := map[string][]string{
		"manager":   {"/var/lib/networkservicemesh", "/var/lib/vwire"},
		"forwarder": {"/var/lib/networkservicemesh", "/var/lib/vwire", "/run/vpp"},
		"vpp":       {"/run/vpp"},
	}
	for name, paths := range want {
		c, ok := containers[name]
		if !ok {
			t.Errorf("DaemonSet %s: no container %s", ds.Name, name)
			continue
		}
		mounted := map[string]bool{}
		for _, vm := range c.VolumeMounts {
			if hp, ok := hostPaths[vm.Name]; ok {
				// The paths are passed to workloads and peers: they must be
				// the host's own.
				if vm.MountPath != hp {
					t.Errorf("container %s mounts host path %s at %s; want the same path", name, hp, vm.MountPath)
				}
				mounted[hp] = true
			}
		}
		for _, p := range paths {
			if !mounted[p] {
				t.Errorf("container %s does not mount host path %s", name, p)
			}
		}
	}
	for _, name := range []string{"forwarder", "vpp"} {
		c := containers[name]
		if c.SecurityContext == nil || c.SecurityContext.Privileged == nil || !*c.SecurityContext.Privileged {
			t.Errorf("container %s is not privileged", name)
		}
	}
	// VPP is a sidecar the forwarder attaches to.
	if vpp, ok := containers["vpp"]; ok {
		if vpp.RestartPolicy == nil || *vpp.RestartPolicy != corev1.ContainerRestartPolicyAlways ||
			!slices.ContainsFunc(ps.InitContainers, func(c corev1.Container) bool { return c.Name == "vpp" }) {
			t.Errorf("container vpp is not a sidecar (init container with restartPolicy: Always)")
		}
		if len(vpp.Command) == 0 || vpp.Command[0] != "/usr/bin/vpp" {
			t.Errorf("container vpp runs %v, want /usr/bin/vpp", vpp.Command)
		}
	}
	fwd := containers["forwarder"]
	if v := flagValue(fwd.Args, "dataplane"); v != "vpp" {
		t.Errorf("forwarder --dataplane %q, want vpp", v)
	}
	if v := flagValue(fwd.Args, "vpp-api-socket"); v != "/run/vpp/api.sock" {
		t.Errorf("forwarder --vpp-api-socket %q, want /run/vpp/api.sock", v)
	}
	for _, name := range []string{"manager", "forwarder"} {
		c := containers[name]
		ok := slices.ContainsFunc(c.Env, func(e corev1.EnvVar) bool {
			return e.Name == "NODE_NAME" && e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "spec.nodeName"
		})
		if !ok {
			t.Errorf("container %s: no NODE_NAME from the downward API (spec.nodeName)", name)
		}
	}
}

func TestRegistryAndEtcd(t *testing.T) {
	m := loadManifests(t)
	var reg *appsv1.Deployment
	for _, o := range m.all("apps/v1/Deployment") {
		if d := o.obj.(*appsv1.Deployment); d.Name == "vwire-registry" {
			reg = d
		}
	}
	if reg == nil {
		t.Fatal("no Deployment vwire-registry")
	}
	args := reg.Spec.Template.Spec.Containers[0].Args
	if args[0] != "registry" || flagValue(args, "store") != "etcd" || flagValue(args, "etcd-endpoints") == "" {
		t.Errorf("registry args %v: want registry --store etcd --etcd-endpoints ...", args)
	}
	svcPort := false
	for _, o := range m.all("v1/Service") {
		svc := o.obj.(*corev1.Service)
		if svc.Name == "vwire-registry" {
			for _, p := range svc.Spec.Ports {
				svcPort = svcPort || p.Port == 5002
			}
		}
	}
	if !svcPort {
		t.Error("no Service vwire-registry on port 5002")
	}
	sts := m.all("apps/v1/StatefulSet")
	if len(sts) != 1 {
		t.Fatalf("want one StatefulSet (etcd), got %d", len(sts))
	}
	etcd := sts[0].obj.(*appsv1.StatefulSet)
	if etcd.Spec.Replicas == nil || *etcd.Spec.Replicas != 1 || len(etcd.Spec.VolumeClaimTemplates) != 1 {
		t.Errorf("StatefulSet %s: want one replica and one volume claim template", etcd.Name)
	}
	// The registry's endpoint names the etcd Service.
	// Over TLS with a client certificate, as etcd asks (--client-cert-auth).
	if !strings.HasPrefix(flagValue(args, "etcd-endpoints"), "https://") ||
		flagValue(args, "etcd-cert") == "" || flagValue(args, "etcd-key") == "" || flagValue(args, "etcd-ca") == "" {
		t.Errorf("registry args %v: want https etcd endpoints with --etcd-cert, --etcd-key and --etcd-ca", args)
	}
	if !slices.Contains(etcd.Spec.Template.Spec.Containers[0].Args, "--client-cert-auth") {
		t.Errorf("StatefulSet %s: etcd does not ask clients for a certificate (--client-cert-auth)", etcd.Name)
	}
	host := strings.TrimPrefix(flagValue(args, "etcd-endpoints"), "https://")
	host, _, _ = strings.Cut(host, ":")
	if !strings.HasPrefix(host, etcd.Spec.ServiceName) {
		t.Errorf("registry --etcd-endpoints %q does not name etcd's Service %s", flagValue(args, "etcd-endpoints"), etcd.Spec.ServiceName)
	}
}

// ---- the vwire binary's flags ---------------------------------------------

var binary struct {
	once sync.Once
	path string
	err  error
	help sync.Map // command -> map[string]bool
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binary.path != "" {
		os.RemoveAll(filepath.Dir(binary.path))
	}
	os.Exit(code)
}

// vwireBinary builds ./cmd/vwire once for the package's tests.
func vwireBinary(t *testing.T) string {
	t.Helper()
	binary.once.Do(func() {
		// go test puts its own GOROOT/bin first in PATH.
		goTool, err := exec.LookPath("go")
		if err != nil {
			binary.err = err
			return
		}
		dir, err := os.MkdirTemp("", "vwire-deployments-")
		if err != nil {
			binary.err = err
			return
		}
		binary.path = filepath.Join(dir, "vwire")
		cmd := exec.Command(goTool, "build", "-o", binary.path, "./cmd/vwire")
		cmd.Dir = ".."
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			binary.err = fmt.Errorf("go build ./cmd/vwire: %v\n%s", err, out)
		}
	})
	if binary.err != nil {
		t.Fatal(binary.err)
	}
	return binary.path
}

var helpFlagLine = regexp.MustCompile(`^\s+(?:-([A-Za-z0-9]), )?--([a-z0-9][a-z0-9-]*)`)

// commandFlags returns the flags `vwire <command> --help` lists (its own and
// the global ones, long and short names).
func commandFlags(t *testing.T, command []string) map[string]bool {
	t.Helper()
	key := strings.Join(command, " ")
	if f, ok := binary.help.Load(key); ok {
		return f.(map[string]bool)
	}
	out, err := exec.Command(vwireBinary(t), append(slices.Clone(command), "--help")...).CombinedOutput()
	if err != nil {
		t.Fatalf("vwire %s --help: %v\n%s", key, err, out)
	}
	// An unknown command makes cobra print the root's help: make sure this is
	// the command's own.
	if !strings.Contains(string(out), "\n  vwire "+key) {
		t.Fatalf("vwire has no command %q:\n%s", key, out)
	}
	flags := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		if mm := helpFlagLine.FindStringSubmatch(sc.Text()); mm != nil {
			if mm[1] != "" {
				flags[mm[1]] = true
			}
			flags[mm[2]] = true
		}
	}
	binary.help.Store(key, flags)
	return flags
}

// invocation splits vwire's arguments into its command (the leading words)
// and its flag names.
func invocation(args []string) (command []string, flags []string) {
	i := 0
	for ; i < len(args) && !strings.HasPrefix(args[i], "-"); i++ {
		command = append(command, args[i])
	}
	for _, a := range args[i:] {
		if name, ok := strings.CutPrefix(a, "--"); ok {
			name, _, _ = strings.Cut(name, "=")
			flags = append(flags, name)
		} else if name, ok := strings.CutPrefix(a, "-"); ok && name != "" && !isNumber(name) {
			flags = append(flags, name[:1])
		}
	}
	return command, flags
}

func isNumber(s string) bool {
	_, err := strconv.ParseFloat(s, 64)
	return err == nil
}

// flagValue returns the value given to --name (as --name=v or --name v).
func flagValue(args []string, name string) string {
	for i, a := range args {
		if v, ok := strings.CutPrefix(a, "--"+name+"="); ok {
			return v
		}
		if a == "--"+name && i+1 < len(args) {
			return args[i+1]
		}
	}
	return ""
}

// checkFlags fails for every flag the command does not have, except the
// pending ones, which are logged.
func checkFlags(t *testing.T, where string, args []string) {
	t.Helper()
	command, flags := invocation(args)
	if len(command) == 0 {
		t.Errorf("%s: no vwire command in %v", where, args)
		return
	}
	known := commandFlags(t, command)
	for _, f := range flags {
		switch {
		case known[f]:
		default:
			t.Errorf("%s: vwire %s has no flag --%s", where, strings.Join(command, " "), f)
		}
	}
}

// isVwire tells whether a container runs the vwire binary.
func isVwire(c corev1.Container) bool {
	if len(c.Command) > 0 {
		return filepath.Base(c.Command[0]) == "vwire"
	}
	name, _, _ := strings.Cut(c.Image, ":")
	return name == vwireImage
}

func TestContainerFlagsExist(t *testing.T) {
	m := loadManifests(t)
	n := 0
	for _, pc := range allContainers(m) {
		if !isVwire(pc.c) {
			continue
		}
		n++
		where := pc.where + "/" + pc.c.Name
		args := pc.c.Args
		if len(pc.c.Command) > 1 {
			args = append(slices.Clone(pc.c.Command[1:]), args...)
		}
		checkFlags(t, where, args)
		// Health probes go to the --metrics-listen port.
		listen := flagValue(args, "metrics-listen")
		if listen == "" {
			t.Errorf("%s: no --metrics-listen", where)
			continue
		}
		_, port, _ := strings.Cut(listen, ":")
		for probe, want := range map[string]*corev1.Probe{"/healthz": pc.c.LivenessProbe, "/readyz": pc.c.ReadinessProbe} {
			if want == nil || want.HTTPGet == nil {
				t.Errorf("%s: no HTTP probe for %s", where, probe)
				continue
			}
			if want.HTTPGet.Path != probe || resolvePort(pc.c, want.HTTPGet.Port) != port {
				t.Errorf("%s: probe %s:%s, want %s on port %s (--metrics-listen)", where, want.HTTPGet.Path, want.HTTPGet.Port.String(), probe, port)
			}
		}
	}
	if n < 3 {
		t.Errorf("found %d vwire containers, want the registry, the manager and the forwarder", n)
	}
}

func resolvePort(c corev1.Container, p intstr.IntOrString) string {
	if p.Type == intstr.Int {
		return strconv.Itoa(p.IntValue())
	}
	for _, cp := range c.Ports {
		if cp.Name == p.StrVal {
			return strconv.Itoa(int(cp.ContainerPort))
		}
	}
	return p.StrVal
}

// ---- CRD schemas ------------------------------------------------------------

func crds(t *testing.T) map[string]*apiextv1.CustomResourceDefinition {
	t.Helper()
	m := loadManifests(t)
	out := map[string]*apiextv1.CustomResourceDefinition{}
	for _, o := range m.all("apiextensions.k8s.io/v1/CustomResourceDefinition") {
		c := o.obj.(*apiextv1.CustomResourceDefinition)
		out[c.Spec.Names.Kind] = c
	}
	for _, kind := range []string{"NetworkService", "NetworkServiceEndpoint"} {
		c := out[kind]
		if c == nil {
			t.Fatalf("no CustomResourceDefinition for %s", kind)
		}
		if c.Spec.Group != crdGroup || c.Name != c.Spec.Names.Plural+"."+crdGroup {
			t.Errorf("CRD %s: group %s, name %s", kind, c.Spec.Group, c.Name)
		}
		if len(c.Spec.Versions) != 1 || c.Spec.Versions[0].Name != crdVersion || !c.Spec.Versions[0].Served || !c.Spec.Versions[0].Storage ||
			c.Spec.Versions[0].Schema == nil || c.Spec.Versions[0].Schema.OpenAPIV3Schema == nil {
			t.Fatalf("CRD %s: want one served, stored version %s with a schema", kind, crdVersion)
		}
	}
	return out
}

// validateObject checks a decoded manifest against the CRD of its kind.
func validateObject(crds map[string]*apiextv1.CustomResourceDefinition, v any) error {
	obj, ok := v.(map[string]any)
	if !ok {
		return errors.New("document is not a map")
	}
	kind, _ := obj["kind"].(string)
	c := crds[kind]
	if c == nil {
		return fmt.Errorf("kind: no CRD for %q", kind)
	}
	if av := obj["apiVersion"]; av != c.Spec.Group+"/"+c.Spec.Versions[0].Name {
		return fmt.Errorf("apiVersion: %v is not served by %s", av, c.Name)
	}
	// metadata is the API server's ObjectMeta, whatever the schema says.
	meta, err := json.Marshal(obj["metadata"])
	if err != nil {
		return err
	}
	var om metav1.ObjectMeta
	dec := json.NewDecoder(bytes.NewReader(meta))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&om); err != nil {
		return fmt.Errorf("metadata: %v", err)
	}
	rest := maps.Clone(obj)
	delete(rest, "metadata")
	return validateSchema("", c.Spec.Versions[0].Schema.OpenAPIV3Schema, rest)
}

// schemaError is a validation failure at a field path.
type schemaError struct{ path, msg string }

func (e *schemaError) Error() string {
	if e.path == "" {
		return e.msg
	}
	return e.path + ": " + e.msg
}

func serr(path, format string, args ...any) error {
	return &schemaError{path, fmt.Sprintf(format, args...)}
}

func joinPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// validateSchema is a structural validator for the subset of OpenAPI v3
// these CRDs use: types, properties, required, additionalProperties, items,
// nullable, enum, pattern, format date-time, minimum/maximum, min/max items and properties,
// x-kubernetes-preserve-unknown-fields. Unknown fields are errors (as with
// kubectl's strict field validation). A schema using anything else fails,
// so that the validator cannot pass what it does not understand.
func validateSchema(path string, s *apiextv1.JSONSchemaProps, v any) error {
	if err := supported(path, s); err != nil {
		return err
	}
	if v == nil {
		if s.Nullable {
			return nil
		}
		return serr(path, "must not be null")
	}
	preserve := s.XPreserveUnknownFields != nil && *s.XPreserveUnknownFields
	switch s.Type {
	case "object":
		if _, ok := v.(map[string]any); !ok {
			return serr(path, "must be an object, got %s", describe(v))
		}
	case "array":
		if _, ok := v.([]any); !ok {
			return serr(path, "must be an array, got %s", describe(v))
		}
	case "string":
		if _, ok := v.(string); !ok {
			return serr(path, "must be a string, got %s", describe(v))
		}
	case "boolean":
		if _, ok := v.(bool); !ok {
			return serr(path, "must be a boolean, got %s", describe(v))
		}
	case "integer":
		n, ok := v.(json.Number)
		if !ok || strings.ContainsAny(n.String(), ".eE") {
			return serr(path, "must be an integer, got %s", describe(v))
		}
	case "number":
		if _, ok := v.(json.Number); !ok {
			return serr(path, "must be a number, got %s", describe(v))
		}
	case "":
		if !preserve {
			return serr(path, "schema has no type")
		}
	default:
		return serr(path, "schema type %q is not supported by this validator", s.Type)
	}
	if len(s.Enum) > 0 {
		got, _ := json.Marshal(v)
		if !slices.ContainsFunc(s.Enum, func(e apiextv1.JSON) bool { return bytes.Equal(bytes.TrimSpace(e.Raw), got) }) {
			return serr(path, "%s is not one of the allowed values", got)
		}
	}
	switch v := v.(type) {
	case string:
		switch s.Format {
		case "":
		case "date-time":
			if _, err := time.Parse(time.RFC3339Nano, v); err != nil {
				return serr(path, "must be a date-time (RFC 3339), got %q", v)
			}
		default:
			return serr(path, "format %q is not supported by this validator", s.Format)
		}
		if s.MaxLength != nil && int64(len(v)) > *s.MaxLength || s.MinLength != nil && int64(len(v)) < *s.MinLength {
			return serr(path, "length %d out of bounds", len(v))
		}
		if s.Pattern != "" && !regexp.MustCompile(s.Pattern).MatchString(v) {
			return serr(path, "%q does not match %s", v, s.Pattern)
		}
	case json.Number:
		f, ok := new(big.Float).SetString(v.String())
		if !ok {
			return serr(path, "bad number %s", v)
		}
		if s.Minimum != nil && f.Cmp(big.NewFloat(*s.Minimum)) < 0 {
			return serr(path, "must be at least %v, got %s", *s.Minimum, v)
		}
		if s.Maximum != nil && f.Cmp(big.NewFloat(*s.Maximum)) > 0 {
			return serr(path, "must be at most %v, got %s", *s.Maximum, v)
		}
	case []any:
		if s.MinItems != nil && int64(len(v)) < *s.MinItems {
			return serr(path, "must have at least %d items, got %d", *s.MinItems, len(v))
		}
		if s.MaxItems != nil && int64(len(v)) > *s.MaxItems {
			return serr(path, "must have at most %d items, got %d", *s.MaxItems, len(v))
		}
		if s.Type != "array" {
			return nil // preserved as it is
		}
		if s.Items == nil || s.Items.Schema == nil {
			return serr(path, "array schema without a single items schema")
		}
		for i, item := range v {
			if err := validateSchema(fmt.Sprintf("%s[%d]", path, i), s.Items.Schema, item); err != nil {
				return err
			}
		}
	case map[string]any:
		if s.MinProperties != nil && int64(len(v)) < *s.MinProperties {
			return serr(path, "must have at least %d properties, got %d", *s.MinProperties, len(v))
		}
		if s.MaxProperties != nil && int64(len(v)) > *s.MaxProperties {
			return serr(path, "must have at most %d properties, got %d", *s.MaxProperties, len(v))
		}
		if s.Type != "object" {
			return nil // preserved as it is
		}
		for _, r := range s.Required {
			if _, ok := v[r]; !ok {
				return serr(joinPath(path, r), "required")
			}
		}
		for _, k := range slices.Sorted(maps.Keys(v)) {
			sub := joinPath(path, k)
			if ps, ok := s.Properties[k]; ok {
				if err := validateSchema(sub, &ps, v[k]); err != nil {
					return err
				}
				continue
			}
			if ap := s.AdditionalProperties; ap != nil {
				if ap.Schema != nil {
					if err := validateSchema(sub, ap.Schema, v[k]); err != nil {
						return err
					}
					continue
				}
				if ap.Allows {
					continue
				}
			}
			if !preserve {
				return serr(sub, "unknown field")
			}
		}
	}
	return nil
}

func supported(path string, s *apiextv1.JSONSchemaProps) error {
	var unsupported []string
	if len(s.AllOf)+len(s.AnyOf)+len(s.OneOf) > 0 || s.Not != nil {
		unsupported = append(unsupported, "allOf/anyOf/oneOf/not")
	}
	if len(s.XValidations) > 0 {
		unsupported = append(unsupported, "x-kubernetes-validations")
	}
	if len(s.PatternProperties) > 0 || len(s.Dependencies) > 0 || s.MultipleOf != nil ||
		s.UniqueItems || s.ExclusiveMinimum || s.ExclusiveMaximum || s.XIntOrString || s.XEmbeddedResource || s.Ref != nil {
		unsupported = append(unsupported, "patternProperties/dependencies/multipleOf/uniqueItems/exclusive bounds/int-or-string/embedded/$ref")
	}
	if s.Pattern != "" {
		if _, err := regexp.Compile(s.Pattern); err != nil {
			unsupported = append(unsupported, fmt.Sprintf("pattern %q (%v)", s.Pattern, err))
		}
	}
	if len(unsupported) > 0 {
		return serr(path, "schema uses %s, which this validator does not implement", strings.Join(unsupported, ", "))
	}
	return nil
}

func describe(v any) string {
	switch v.(type) {
	case map[string]any:
		return "an object"
	case []any:
		return "an array"
	case string:
		return "a string"
	case json.Number:
		return "a number"
	case bool:
		return "a boolean"
	}
	return fmt.Sprintf("%T", v)
}

// decodeDocument reads a YAML document the way the API server receives it
// (YAML to JSON), keeping numbers exact.
func decodeDocument(t *testing.T, d document) any {
	t.Helper()
	j, err := yaml.YAMLToJSON([]byte(d.text))
	if err != nil {
		t.Fatalf("%s: %v", d, err)
	}
	dec := json.NewDecoder(bytes.NewReader(j))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("%s: %v", d, err)
	}
	return v
}

func TestCRDsAcceptArchitectureExamples(t *testing.T) {
	c := crds(t)
	docs := splitDocuments(t, examplesFile)
	if len(docs) == 0 {
		t.Fatalf("%s: no documents", examplesFile)
	}
	for _, d := range docs {
		if err := validateObject(c, decodeDocument(t, d)); err != nil {
			t.Errorf("%s: rejected by the CRD schema: %v", d, err)
		}
	}
}

func TestCRDsRejectMalformedSeedDocument(t *testing.T) {
	c := crds(t)
	docs := splitDocuments(t, seedFile)
	if len(docs) < seedMalformed {
		t.Fatalf("%s: %d documents", seedFile, len(docs))
	}
	for _, d := range docs {
		err := validateObject(c, decodeDocument(t, d))
		if d.n != seedMalformed {
			if err != nil {
				t.Errorf("%s: rejected by the CRD schema: %v", d, err)
			}
			continue
		}
		if !strings.Contains(d.text, "AS WRITTEN") {
			t.Fatalf("%s is not the malformed (AS WRITTEN) document", d)
		}
		var se *schemaError
		if !errors.As(err, &se) {
			t.Fatalf("%s: accepted by the CRD schema (err %v), want it rejected", d, err)
		}
		if want := "spec.matches[2].source_selector.routes"; se.path != want {
			t.Errorf("%s: rejected at %s (%v), want at %s", d, se.path, err, want)
		}
	}
}

// TestCRDsAgreeWithApply compares the CRD schemas with `vwire apply`'s
// decoder (registry/manifest) on documents of both kinds, valid and not.
// Left out are what a structural schema cannot express and the two differ on
// by design: names (Kubernetes' rules are not the registry's), label key
// syntax and destination_selector templates.
func TestCRDsAgreeWithApply(t *testing.T) {
	c := crds(t)
	const ns = "apiVersion: networkservicemesh.io/v1\nkind: NetworkService\nmetadata:\n  name: svc\n"
	const nse = "apiVersion: networkservicemesh.io/v1\nkind: NetworkServiceEndpoint\nmetadata:\n  name: nse-1\n"
	cases := []struct {
		name, text string
		ok         bool
	}{
		{"service, no spec", ns, true},
		{"service, ETHERNET", ns + "spec: {payload: ETHERNET}\n", true},
		{"service, null matches", ns + "spec: {payload: IP, matches: null}\n", true},
		{"service, all fields", ns + `spec:
  payload: IP
  matches:
    - source_selector: {app: web, n: 5, on: true}
      fallthrough: true
      metadata: {labels: {p2p: "true"}}
      routes:
        - destination_selector: {nodeName: "{{ .nodeName }}"}
          weight: 4294967295
`, true},
		{"service, metadata labels and namespace", "apiVersion: networkservicemesh.io/v1\nkind: NetworkService\nmetadata: {name: svc, namespace: default, labels: {a: b}, annotations: {c: d}}\n", true},
		{"service, unknown payload", ns + "spec: {payload: MPLS}\n", false},
		{"service, payload not a string", ns + "spec: {payload: 4}\n", false},
		{"service, unknown spec field", ns + "spec: {payload: IP, color: red}\n", false},
		{"service, unknown match field", ns + "spec: {matches: [{source_selector: {}, colour: red}]}\n", false},
		{"service, unknown route field", ns + "spec: {matches: [{routes: [{weight: 1, cost: 2}]}]}\n", false},
		{"service, unknown match metadata field", ns + "spec: {matches: [{metadata: {annotations: {a: b}}}]}\n", false},
		{"service, matches not a list", ns + "spec: {matches: {a: b}}\n", false},
		{"service, match not a map", ns + "spec: {matches: [5]}\n", false},
		{"service, selector a list", ns + "spec: {matches: [{source_selector: [a]}]}\n", false},
		{"service, selector value a list", ns + "spec: {matches: [{source_selector: {a: [b]}}]}\n", false},
		{"service, selector value an empty list", ns + "spec: {matches: [{source_selector: {a: []}}]}\n", false},
		{"service, selector value a map", ns + "spec: {matches: [{routes: [{destination_selector: {a: {b: c}}}]}]}\n", false},
		{"service, selector value an empty map", ns + "spec: {matches: [{routes: [{destination_selector: {a: {}}}]}]}\n", false},
		{"service, selector value null", ns + "spec: {matches: [{source_selector: {a: null}}]}\n", false},
		{"service, label value a list", ns + "spec: {matches: [{metadata: {labels: {a: [b]}}}]}\n", false},
		{"service, negative weight", ns + "spec: {matches: [{routes: [{weight: -1}]}]}\n", false},
		{"service, weight above uint32", ns + "spec: {matches: [{routes: [{weight: 4294967296}]}]}\n", false},
		{"service, fractional weight", ns + "spec: {matches: [{routes: [{weight: 1.5}]}]}\n", false},
		{"service, weight a string", ns + "spec: {matches: [{routes: [{weight: \"1\"}]}]}\n", false},
		{"service, fallthrough a string", ns + "spec: {matches: [{fallthrough: \"maybe\"}]}\n", false},
		{"service, unknown top-level field", ns + "status: {}\n", false},
		{"endpoint, README example", nse + `spec:
  network_service_names: [local-vl3]
  network_service_labels:
    local-vl3:
      labels: {nodeName: node1}
  url: tcp://10.0.0.1:5001
  expiration_time: "2030-01-01T00:00:00Z"
`, true},
		{"endpoint, url only", nse + "spec: {url: \"unix:///var/lib/networkservicemesh/endpoints/a.sock\"}\n", true},
		{"endpoint, numeric and boolean labels", nse + "spec: {url: \"tcp://h:1\", network_service_labels: {svc: {labels: {n: 1, b: false}}}}\n", true},
		{"endpoint, null labels", nse + "spec: {url: \"tcp://h:1\", network_service_names: null, network_service_labels: {svc: {labels: null}}}\n", true},
		{"endpoint, fractional seconds", nse + "spec: {url: \"tcp://h:1\", expiration_time: \"2030-01-01T00:00:00.5+02:00\"}\n", true},
		{"endpoint, no spec", nse, false},
		{"endpoint, empty spec", nse + "spec: {}\n", false},
		{"endpoint, url without scheme", nse + "spec: {url: \"10.0.0.1:5001\"}\n", false},
		{"endpoint, url without host or path", nse + "spec: {url: \"tcp://\"}\n", false},
		{"endpoint, bad expiration_time", nse + "spec: {url: \"tcp://h:1\", expiration_time: tomorrow}\n", false},
		{"endpoint, expiration_time a number", nse + "spec: {url: \"tcp://h:1\", expiration_time: 5}\n", false},
		{"endpoint, names not a list", nse + "spec: {url: \"tcp://h:1\", network_service_names: svc}\n", false},
		{"endpoint, name not a string", nse + "spec: {url: \"tcp://h:1\", network_service_names: [[svc]]}\n", false},
		{"endpoint, unknown labels field", nse + "spec: {url: \"tcp://h:1\", network_service_labels: {svc: {labels: {}, extra: 1}}}\n", false},
		{"endpoint, labels value a map", nse + "spec: {url: \"tcp://h:1\", network_service_labels: {svc: {labels: {a: {b: c}}}}}\n", false},
		{"endpoint, service labels not a map", nse + "spec: {url: \"tcp://h:1\", network_service_labels: {svc: [a]}}\n", false},
		{"endpoint, url not a string", nse + "spec: {url: 5}\n", false},
		{"endpoint, unknown spec field", nse + "spec: {url: \"tcp://h:1\", urls: [a]}\n", false},
		{"endpoint, unknown metadata field", "apiVersion: networkservicemesh.io/v1\nkind: NetworkServiceEndpoint\nmetadata: {name: a, nickname: b}\nspec: {url: \"tcp://h:1\"}\n", false},
	}
	for _, tc := range cases {
		d := document{file: tc.name, n: 1, line: 1, text: tc.text}
		schemaErr := validateObject(c, decodeDocument(t, d))
		_, applyErr := manifest.Decode("case.yaml", []byte(tc.text))
		if (schemaErr == nil) != tc.ok {
			t.Errorf("%s: CRD schema error %v, want ok=%v", tc.name, schemaErr, tc.ok)
		}
		if (applyErr == nil) != tc.ok {
			t.Errorf("%s: vwire apply error %v, want ok=%v", tc.name, applyErr, tc.ok)
		}
	}
	// And every document of the examples and the seed file.
	for _, f := range []string{examplesFile, seedFile} {
		for _, d := range splitDocuments(t, f) {
			schemaErr := validateObject(c, decodeDocument(t, d))
			_, applyErr := manifest.Decode("doc.yaml", []byte(d.text))
			if (schemaErr == nil) != (applyErr == nil) {
				t.Errorf("%s: CRD schema says %v, vwire apply says %v", d, schemaErr, applyErr)
			}
		}
	}
}

// ---- systemd units ----------------------------------------------------------

// unit is a parsed systemd unit file: section -> key -> values in order.
type unit map[string]map[string][]string

// parseUnit reads systemd's INI dialect: [Section] headers, Key=Value lines,
// comments (# and ;), and lines continued with a trailing backslash.
func parseUnit(t *testing.T, file string) unit {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	u := unit{}
	section := ""
	var cont strings.Builder
	for i, raw := range strings.Split(string(data), "\n") {
		line := strings.TrimSpace(raw)
		if cont.Len() == 0 && (line == "" || line[0] == '#' || line[0] == ';') {
			continue
		}
		if strings.HasSuffix(line, "\\") {
			cont.WriteString(strings.TrimSuffix(line, "\\") + " ")
			continue
		}
		if cont.Len() > 0 {
			if line != "" && line[0] != '#' && line[0] != ';' {
				cont.WriteString(line)
			}
			line = cont.String()
			cont.Reset()
		}
		if strings.HasPrefix(line, "[") {
			if !strings.HasSuffix(line, "]") {
				t.Fatalf("%s:%d: bad section header %q", file, i+1, line)
			}
			section = line[1 : len(line)-1]
			if u[section] != nil {
				t.Errorf("%s:%d: section [%s] twice", file, i+1, section)
			}
			u[section] = map[string][]string{}
			continue
		}
		key, value, ok := strings.Cut(line, "=")
		if !ok || section == "" || strings.TrimSpace(key) == "" || strings.ContainsAny(strings.TrimSpace(key), " \t") {
			t.Fatalf("%s:%d: not a Key=Value line in a section: %q", file, i+1, line)
		}
		key = strings.TrimSpace(key)
		u[section][key] = append(u[section][key], strings.TrimSpace(value))
	}
	if cont.Len() > 0 {
		t.Fatalf("%s: ends in a continued line", file)
	}
	return u
}

func (u unit) get(section, key string) string {
	v := u[section][key]
	if len(v) == 0 {
		return ""
	}
	return v[len(v)-1]
}

// words returns every space-separated word of all values of a key.
func (u unit) words(section, key string) []string {
	var out []string
	for _, v := range u[section][key] {
		out = append(out, strings.Fields(v)...)
	}
	return out
}

// environment returns the unit's Environment= defaults.
func (u unit) environment(t *testing.T) map[string]string {
	env := map[string]string{}
	for _, w := range u.words("Service", "Environment") {
		k, v, ok := strings.Cut(w, "=")
		if !ok {
			t.Errorf("Environment word %q is not VAR=value", w)
		}
		env[k] = v
	}
	return env
}

// parseEnvFile reads an EnvironmentFile (VAR=value, optional double quotes).
func parseEnvFile(t *testing.T, file string) map[string]string {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{}
	for i, l := range strings.Split(string(data), "\n") {
		l = strings.TrimSpace(l)
		if l == "" || l[0] == '#' || l[0] == ';' {
			continue
		}
		k, v, ok := strings.Cut(l, "=")
		if !ok || !regexp.MustCompile(`^[A-Z_][A-Z0-9_]*$`).MatchString(k) {
			t.Errorf("%s:%d: not VAR=value: %q", file, i+1, l)
			continue
		}
		if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
			v = v[1 : len(v)-1]
		}
		env[k] = v
	}
	return env
}

var unitVar = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)`)

// systemdVars are set by systemd itself for the units' settings.
var systemdVars = []string{"STATE_DIRECTORY", "RUNTIME_DIRECTORY"}

func TestSystemdUnits(t *testing.T) {
	envFile := parseEnvFile(t, filepath.Join(systemdDir, "vwire.env"))
	units := map[string]unit{}
	declared := map[string]bool{}
	for _, name := range []string{"vwire-registry.service", "vwire-manager.service", "vwire-forwarder.service", "vpp.service"} {
		u := parseUnit(t, filepath.Join(systemdDir, name))
		units[name] = u
		for _, s := range []string{"Unit", "Service", "Install"} {
			if u[s] == nil {
				t.Errorf("%s: no [%s] section", name, s)
			}
		}
		for _, kv := range [][2]string{{"Unit", "Description"}, {"Service", "ExecStart"}, {"Service", "Restart"}, {"Install", "WantedBy"}} {
			if u.get(kv[0], kv[1]) == "" {
				t.Errorf("%s: no %s= in [%s]", name, kv[1], kv[0])
			}
		}
		if len(u["Service"]["ExecStart"]) != 1 {
			t.Errorf("%s: want one ExecStart=, got %d", name, len(u["Service"]["ExecStart"]))
		}
		if u.get("Service", "NoNewPrivileges") != "yes" || u.get("Service", "ProtectSystem") == "" {
			t.Errorf("%s: no NoNewPrivileges=yes / ProtectSystem=", name)
		}
		for k := range u.environment(t) {
			declared[k] = true
		}
	}
	for k := range envFile {
		if !declared[k] {
			t.Errorf("vwire.env sets %s, which no unit has a default for (misspelt?)", k)
		}
	}

	for _, name := range []string{"vwire-registry.service", "vwire-manager.service", "vwire-forwarder.service"} {
		u := units[name]
		defaults := u.environment(t)
		if !slices.Contains(u.words("Service", "EnvironmentFile"), "-/etc/vwire/vwire.env") {
			t.Errorf("%s: does not read -/etc/vwire/vwire.env", name)
		}
		words := strings.Fields(u.get("Service", "ExecStart"))
		if len(words) == 0 || strings.TrimLeft(words[0], "-@+!:") != "/usr/local/bin/vwire" {
			t.Errorf("%s: ExecStart does not run /usr/local/bin/vwire: %v", name, words)
			continue
		}
		// Expand the variables: ${VAR} stays one word, $VAR splits.
		var args []string
		for _, w := range words[1:] {
			if m := regexp.MustCompile(`^\$([A-Za-z_][A-Za-z0-9_]*)$`).FindStringSubmatch(w); m != nil {
				val, ok := envFile[m[1]]
				if !ok {
					val = defaults[m[1]]
				}
				args = append(args, strings.Fields(val)...)
				continue
			}
			args = append(args, w)
		}
		for _, m := range unitVar.FindAllStringSubmatch(u.get("Service", "ExecStart"), -1) {
			v := m[1] + m[2]
			if _, ok := defaults[v]; !ok && !slices.Contains(systemdVars, v) {
				t.Errorf("%s: ExecStart uses $%s, which has no Environment= default", name, v)
			}
		}
		checkFlags(t, name, args)
		want := strings.TrimSuffix(strings.TrimPrefix(name, "vwire-"), ".service")
		if args[0] != want {
			t.Errorf("%s: runs vwire %s, want vwire %s", name, args[0], want)
		}
	}

	fwd := units["vwire-forwarder.service"]
	args := strings.Fields(fwd.get("Service", "ExecStart"))
	if flagValue(args, "dataplane") != "vpp" || flagValue(args, "vpp-api-socket") == "" {
		t.Errorf("vwire-forwarder.service: want --dataplane vpp --vpp-api-socket ...: %v", args)
	}
	if v := fwd.environment(t)["VWIRE_VPP_API_SOCKET"]; v != "/run/vpp/api.sock" {
		t.Errorf("vwire-forwarder.service: VPP API socket default %q, want /run/vpp/api.sock", v)
	}
	for _, key := range []string{"Requires", "After"} {
		if !slices.Contains(fwd.words("Unit", key), "vpp.service") {
			t.Errorf("vwire-forwarder.service: %s= does not name vpp.service", key)
		}
	}
	caps := fwd.words("Service", "CapabilityBoundingSet")
	for _, c := range []string{"CAP_NET_ADMIN", "CAP_SYS_ADMIN"} {
		if !slices.Contains(caps, c) {
			t.Errorf("vwire-forwarder.service: CapabilityBoundingSet lacks %s", c)
		}
	}
	if rn := fwd.get("Service", "RestrictNamespaces"); rn != "" && rn != "no" && !slices.Contains(strings.Fields(rn), "net") {
		t.Errorf("vwire-forwarder.service: RestrictNamespaces=%s forbids setns into network namespaces", rn)
	}
	if fwd.get("Service", "PrivateNetwork") == "yes" || fwd.get("Service", "User") != "" {
		t.Error("vwire-forwarder.service: must run as root in the host's network namespace")
	}
	for _, name := range []string{"vwire-registry.service", "vwire-manager.service"} {
		if caps := units[name]["Service"]["CapabilityBoundingSet"]; len(caps) == 0 || caps[len(caps)-1] != "" {
			t.Errorf("%s: CapabilityBoundingSet=%v, want it set empty (no capabilities)", name, caps)
		}
	}
	if reg := units["vwire-registry.service"]; reg.get("Service", "DynamicUser") != "yes" && reg.get("Service", "User") == "" {
		t.Error("vwire-registry.service runs as root")
	}
	vpp := strings.Fields(units["vpp.service"].get("Service", "ExecStart"))
	if len(vpp) < 3 || vpp[0] != "/usr/bin/vpp" || vpp[1] != "-c" {
		t.Errorf("vpp.service: ExecStart %v, want /usr/bin/vpp -c <startup.conf>", vpp)
	}
	if !slices.Contains(units["vpp.service"].words("Unit", "Before"), "vwire-forwarder.service") {
		t.Error("vpp.service: not ordered Before=vwire-forwarder.service")
	}
}

// TestSystemdAnalyzeVerify runs `systemd-analyze verify` on the units (with
// the built binary standing in for /usr/local/bin/vwire and /usr/bin/vpp),
// when the machine has it: unknown directives, bad values and bad
// dependencies fail.
func TestSystemdAnalyzeVerify(t *testing.T) {
	sa, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze is not installed")
	}
	bin := vwireBinary(t)
	dir := t.TempDir()
	files, _ := filepath.Glob(filepath.Join(systemdDir, "*.service"))
	var paths []string
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		data = bytes.ReplaceAll(data, []byte("/usr/local/bin/vwire"), []byte(bin))
		data = bytes.ReplaceAll(data, []byte("/usr/bin/vpp"), []byte(bin))
		p := filepath.Join(dir, filepath.Base(f))
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p)
	}
	cmd := exec.Command(sa, append([]string{"verify", "--man=no"}, paths...)...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	var problems []string
	for l := range strings.SplitSeq(string(out), "\n") {
		for _, f := range files {
			if strings.Contains(l, filepath.Base(f)) {
				problems = append(problems, l)
				break
			}
		}
	}
	if len(problems) > 0 {
		t.Errorf("systemd-analyze verify (%v):\n%s", err, strings.Join(problems, "\n"))
	}
}
