package mtls_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"

	"github.com/sluicegw/sluice/identity"
	"github.com/sluicegw/sluice/identity/mtls"
)

// Workloads present X.509-SVIDs; only the prod.example trust domain is
// accepted. In the gateway the TLS state comes from the client connection
// (tls.Conn.ConnectionState) on a listener built with ServerTLSConfig.
func ExampleAuthenticator() {
	ca := newCA("workload-ca") // test helper: an in-process CA
	auth, err := mtls.New(mtls.Config{
		SubjectFrom:  mtls.SubjectSPIFFE,
		TrustDomains: []string{"prod.example"},
	}, mtls.WithRoots(ca.pool()))
	if err != nil {
		panic(err)
	}

	svid := ca.issue(leafOpts{uris: []string{"spiffe://prod.example/ns/reporting/sa/agent"}}).cert
	id, err := auth.Authenticate(context.Background(), identity.Credentials{
		TLS: &tls.ConnectionState{PeerCertificates: []*x509.Certificate{svid}},
	})
	fmt.Println(id.Subject, id.Method, err)

	_, err = auth.Authenticate(context.Background(), identity.Credentials{TLS: &tls.ConnectionState{}})
	fmt.Println(errors.Is(err, identity.ErrUnauthenticated), err)
	// Output:
	// spiffe://prod.example/ns/reporting/sa/agent mtls <nil>
	// true mtls: no client certificate presented: authentication failed
}
