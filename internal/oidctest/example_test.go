package oidctest_test

import (
	"fmt"
	"net/http"

	"github.com/sluicegw/sluice/internal/oidctest"
)

// A test starts an issuer, mints tokens with whatever claims it needs, and
// simulates rotation and outages. In a test, oidctest.New(t) also closes
// the issuer when the test ends.
func ExampleIssuer() {
	is, err := oidctest.Start()
	if err != nil {
		panic(err)
	}
	defer is.Close()

	claims := is.Claims("report-agent", "sluice") // iss, sub, aud, iat, exp = now+1h
	claims["groups"] = []string{"agents"}
	token := is.Mint(claims) // RS256, kid of the current key
	_ = token

	is.Rotate("RS256", true) // new kid; the old key stays published

	is.Down(oidctest.Unavailable)
	resp, err := http.Get(is.JWKSURL())
	if err != nil {
		panic(err)
	}
	resp.Body.Close()
	fmt.Println(resp.StatusCode, is.JWKSFetches())
	// Output:
	// 503 1
}
