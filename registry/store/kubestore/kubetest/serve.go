package kubetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/spf13/pflag"
	apidiscoveryv2 "k8s.io/api/apidiscovery/v2"
	extensionsapiserver "k8s.io/apiextensions-apiserver/pkg/apiserver"
	"k8s.io/apiextensions-apiserver/pkg/cmd/server/options"
	generatedopenapi "k8s.io/apiextensions-apiserver/pkg/generated/openapi"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apiserver/pkg/endpoints/discovery/aggregated"
	openapinamer "k8s.io/apiserver/pkg/endpoints/openapi"
	genericapiserver "k8s.io/apiserver/pkg/server"
	"k8s.io/apiserver/pkg/util/compatibility"
	utilfeature "k8s.io/apiserver/pkg/util/feature"
	"k8s.io/apiserver/pkg/util/openapi"
	"k8s.io/client-go/rest"
	basecompatibility "k8s.io/component-base/compatibility"
)

// aggregatedAccept asks the discovery handler for the aggregated form.
const aggregatedAccept = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"

// serve starts an extensions server on a loopback port with its state in
// dir and returns a client configuration once it answers /healthz; done
// receives the server's end once ctx is cancelled.
func serve(ctx context.Context, dir string, done chan error, flags []string) (*rest.Config, error) {
	opts := options.NewCustomResourceDefinitionsServerOptions(io.Discard, io.Discard)
	// A registry of its own: two servers in one test binary would
	// otherwise share (and fight over) the process-wide one.
	gates := utilfeature.DefaultMutableFeatureGate.DeepCopy()
	version := compatibility.DefaultKubeEffectiveVersionForTest()
	version.SetEmulationVersion(gates.EmulationVersion())
	globals := basecompatibility.NewComponentGlobalsRegistry()
	if err := globals.Register(basecompatibility.DefaultKubeComponent, version, gates); err != nil {
		return nil, err
	}
	opts.ServerRunOptions.ComponentGlobalsRegistry = globals
	fs := pflag.NewFlagSet("kubetest", pflag.ContinueOnError)
	opts.AddFlags(fs)
	if err := fs.Parse(flags); err != nil {
		return nil, err
	}
	if err := globals.Set(); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	serving := opts.RecommendedOptions.SecureServing
	serving.Listener, serving.BindPort = ln, ln.Addr().(*net.TCPAddr).Port
	serving.ExternalAddress = ln.Addr().(*net.TCPAddr).IP
	serving.ServerCert.CertDirectory = dir
	if err := opts.APIEnablement.RuntimeConfig.Set("api/all=true"); err != nil {
		ln.Close()
		return nil, err
	}
	if err := opts.Complete(); err != nil {
		ln.Close()
		return nil, err
	}
	if err := opts.Validate(); err != nil {
		ln.Close()
		return nil, err
	}
	config, err := opts.Config()
	if err != nil {
		ln.Close()
		return nil, err
	}
	config.GenericConfig.OpenAPIConfig = genericapiserver.DefaultOpenAPIConfig(
		openapi.GetOpenAPIDefinitionsWithoutDisabledFeatures(generatedopenapi.GetOpenAPIDefinitions),
		openapinamer.NewDefinitionNamer(extensionsapiserver.Scheme))
	server, err := config.Complete().New(genericapiserver.NewEmptyDelegate())
	if err != nil {
		ln.Close()
		return nil, err
	}
	serveGroupList(server.GenericAPIServer)

	go func() {
		done <- server.GenericAPIServer.PrepareRun().RunWithContext(ctx)
	}()
	client, err := rest.UnversionedRESTClientFor(withCodec(server.GenericAPIServer.LoopbackClientConfig))
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(time.Minute)
	for {
		status := 0
		client.Get().AbsPath("/healthz").Do(ctx).StatusCode(&status)
		if status == http.StatusOK {
			return rest.CopyConfig(server.GenericAPIServer.LoopbackClientConfig), nil
		}
		select {
		case err := <-done:
			done <- err // the caller's cleanup waits for it too
			return nil, fmt.Errorf("API server stopped before it was healthy: %w", err)
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return nil, errors.New("API server not healthy after a minute")
		}
	}
}

// serveGroupList serves /apis, the list of API groups that clients such
// as kubectl read first. The extensions server leaves it to the server in
// front of it (kube-apiserver's aggregator builds it from every server's
// groups) and answers 404 alone. The list served here is the one the
// extensions server keeps itself, for its own group and every established
// CRD's: as is in the aggregated form (kubectl 1.26 and later), and as an
// APIGroupList for older clients (Debian's kubectl is 1.20).
func serveGroupList(s *genericapiserver.GenericAPIServer) {
	groups := s.AggregatedDiscoveryGroupManager
	legacy := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		list, err := groupList(r, groups)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(list)
	})
	wrapped := aggregated.WrapAggregatedDiscoveryToHandler(legacy, groups, nil)
	// A go-restful route for /apis is served before the CRD handler's.
	s.Handler.GoRestfulContainer.Add(wrapped.GenerateWebService("/apis", metav1.APIGroupList{}))
}

// groupList turns the aggregated discovery document into the older
// APIGroupList: its groups and versions in the same order, the first
// version preferred.
func groupList(r *http.Request, groups http.Handler) (*metav1.APIGroupList, error) {
	req := r.Clone(r.Context())
	req.Header = http.Header{"Accept": {aggregatedAccept}}
	rec := httptest.NewRecorder()
	groups.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		return nil, fmt.Errorf("aggregated discovery: %d %s", rec.Code, rec.Body)
	}
	var doc apidiscoveryv2.APIGroupDiscoveryList
	if err := json.Unmarshal(rec.Body.Bytes(), &doc); err != nil {
		return nil, fmt.Errorf("aggregated discovery: %w", err)
	}
	list := &metav1.APIGroupList{TypeMeta: metav1.TypeMeta{Kind: "APIGroupList", APIVersion: "v1"}}
	for _, g := range doc.Items {
		group := metav1.APIGroup{Name: g.Name}
		for _, v := range g.Versions {
			group.Versions = append(group.Versions, metav1.GroupVersionForDiscovery{GroupVersion: g.Name + "/" + v.Version, Version: v.Version})
		}
		if len(group.Versions) == 0 {
			continue
		}
		group.PreferredVersion = group.Versions[0]
		list.Groups = append(list.Groups, group)
	}
	return list, nil
}

// withCodec gives a copy of c the codec an unversioned client needs.
func withCodec(c *rest.Config) *rest.Config {
	c = rest.CopyConfig(c)
	c.GroupVersion = &metav1.SchemeGroupVersion
	c.NegotiatedSerializer = extensionsapiserver.Codecs.WithoutConversion()
	return c
}
