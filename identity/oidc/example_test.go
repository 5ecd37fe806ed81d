package oidc_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/sluicegw/sluice/identity"
	"github.com/sluicegw/sluice/identity/oidc"
	"github.com/sluicegw/sluice/internal/oidctest"
)

// An authenticator trusts one issuer for the "sluice" audience and maps a
// nested roles claim to groups. The issuer here is the in-process test
// issuer; in the gateway it is the organisation's identity provider.
func ExampleAuthenticator() {
	idp, err := oidctest.Start()
	if err != nil {
		panic(err)
	}
	defer idp.Close()

	auth, err := oidc.New(oidc.Config{Issuers: []oidc.IssuerConfig{{
		Issuer:      idp.URL,
		Audiences:   []string{"sluice"},
		GroupsClaim: "realm_access.roles",
	}}}, oidc.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		panic(err)
	}

	claims := idp.Claims("report-agent", "sluice")
	claims["realm_access"] = map[string]any{"roles": []string{"db-readers"}}
	id, err := auth.Authenticate(context.Background(), identity.Credentials{Token: idp.Mint(claims)})
	fmt.Println(id.Subject, id.Groups, id.Method, err)

	claims["aud"] = "billing"
	_, err = auth.Authenticate(context.Background(), identity.Credentials{Token: idp.Mint(claims)})
	fmt.Println(errors.Is(err, identity.ErrUnauthenticated), errors.Is(err, oidc.ErrAudience))
	// Output:
	// report-agent [db-readers] oidc <nil>
	// true true
}
