package masking

import (
	"encoding/base64"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// findAll returns every match of d in s.
func findAll(d Detector, s string) []string {
	var out []string
	b := []byte(s)
	for pos := 0; pos < len(b); {
		i, j, ok := d.Find(b, pos)
		if !ok {
			break
		}
		out = append(out, s[i:j])
		pos = j
	}
	return out
}

func jwtOf(header, payload string) string {
	enc := base64.RawURLEncoding.EncodeToString
	return enc([]byte(header)) + "." + enc([]byte(payload)) + ".SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
}

const samplePEM = "-----BEGIN RSA PRIVATE KEY-----\n" +
	"MIIEowIBAAKCAQEA0Z3VS5JJcds3xfn/ygWyF8PbnGy0AHB7MhgwMbRvI0MBZhpI\n" +
	"Rf4fB5e9qVbN3cT1zTqZ8bH5nI2eXQ==\n" +
	"-----END RSA PRIVATE KEY-----"

func TestDetectors(t *testing.T) {
	jwt := jwtOf(`{"alg":"HS256","typ":"JWT"}`, `{"sub":"1234567890","name":"John Doe","iat":1516239022}`)
	tests := []struct {
		detector string
		in       string
		want     []string // the matches; nil for none
	}{
		// Email.
		{"email", "mail alice@example.com now", []string{"alice@example.com"}},
		{"email", "john.doe+tag@mail.example.co.uk", []string{"john.doe+tag@mail.example.co.uk"}},
		{"email", "Contact a_b@ex-ample.org.", []string{"a_b@ex-ample.org"}},
		{"email", "<x.y@z.io>, q@w.de", []string{"x.y@z.io", "q@w.de"}},
		{"email", "@handle and user@localhost", nil},
		{"email", "npm i pkg@1.2.3", nil},
		{"email", "a@b foo@.com .@x.com", nil},
		{"email", "@Override public", nil},

		// Payment cards (Luhn, issuer prefix and length).
		{"credit_card", "4111111111111111", []string{"4111111111111111"}},
		{"credit_card", "card 4111 1111 1111 1111 exp", []string{"4111 1111 1111 1111"}},
		{"credit_card", "4111-1111-1111-1111", []string{"4111-1111-1111-1111"}},
		{"credit_card", "amex 3782 822463 10005.", []string{"3782 822463 10005"}},
		{"credit_card", "5555555555554444,6011111111111117", []string{"5555555555554444", "6011111111111117"}},
		{"credit_card", "mc2 2223003122003222 diners 30569309025904 jcb 3530111333300000", []string{"2223003122003222", "30569309025904", "3530111333300000"}},
		{"credit_card", "4111111111111111 2024", []string{"4111111111111111"}},
		{"credit_card", "4111111111111112", nil},                                     // Luhn
		{"credit_card", "1234567812345670", nil},                                     // no issuer starts with 1
		{"credit_card", "0.4111111111111111", nil},                                   // a fraction
		{"credit_card", "4111111111111111.25", nil},                                  // a price
		{"credit_card", "41111111111111110000", nil},                                 // too long
		{"credit_card", "4111-1111-1111-1111-2222", nil},                             // a longer dashed id
		{"credit_card", "550e8400-4111-1111-1111-111111111111", nil},                 // UUID-like
		{"credit_card", "1700000000000 1705312200000 20240115", nil},                 // epoch millis, dates
		{"credit_card", "4 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1", nil},                      // single digits
		{"credit_card", "ORD-2024-000123 and 4111 1111", nil},                        // too short
		{"credit_card", "6c49262357122000 x4111111111111111 4111111111111111y", nil}, // inside hex or words
		{"credit_card", "card:4111111111111111;", []string{"4111111111111111"}},

		// US SSN.
		{"ssn", "ssn 123-45-6789.", []string{"123-45-6789"}},
		{"ssn", "078 05 1120", []string{"078 05 1120"}},
		{"ssn", "000-12-3456 666-12-3456 900-12-3456 999-12-3456", nil},
		{"ssn", "123-00-4567 123-45-0000", nil},
		{"ssn", "123-45 6789 1234-45-6789 123-45-67890 9123-45-6789", nil},
		{"ssn", "2024-01-15 415-555-2671", nil},

		// Phone numbers.
		{"phone", "call +14155552671 now", []string{"+14155552671"}},
		{"phone", "+1 415 555 2671", []string{"+1 415 555 2671"}},
		{"phone", "+44 20 7946 0958", []string{"+44 20 7946 0958"}},
		{"phone", "+49 (0)30 1234567", []string{"+49 (0)30 1234567"}},
		{"phone", "+1 (415) 555-2671", []string{"+1 (415) 555-2671"}},
		{"phone", "(415) 555-2671", []string{"(415) 555-2671"}},
		{"phone", "415-555-2671 or 415.555.2671", []string{"415-555-2671", "415.555.2671"}},
		{"phone", "1-415-555-2671", []string{"1-415-555-2671"}},
		{"phone", "UK 020 7946 0958, FR 06 12 34 56 78", []string{"020 7946 0958", "06 12 34 56 78"}},
		{"phone", "4155552671 12345 +12 +1234567", nil},
		{"phone", "2024-01-15T10:30:00Z 1.2.3 192.168.100.200", nil},
		{"phone", "ORD-2024-000123 v1.2.3 $1,234.56 01-02-2024", nil},
		{"phone", "123-456-7890 415-155-2671", nil}, // area and exchange start with 2-9
		{"phone", "1+14155552671 x+14155552671", nil},
		{"phone", "+15147276045 0000000000000000000000006a43", []string{"+15147276045"}},
		{"phone", "BE 02 123 45 67", []string{"02 123 45 67"}},
		{"phone", "ZIP 01639-6697", nil},
		{"phone", "42dc403e-0390-4460-8175-dbfbcad81951 id-415-555-2671 415-555-2671-x", nil},

		// IBAN (mod 97 and country length).
		{"iban", "IBAN GB82WEST12345698765432.", []string{"GB82WEST12345698765432"}},
		{"iban", "GB82 WEST 1234 5698 7654 32", []string{"GB82 WEST 1234 5698 7654 32"}},
		{"iban", "DE89370400440532013000 FR1420041010050500013M02606", []string{"DE89370400440532013000", "FR1420041010050500013M02606"}},
		{"iban", "NL91ABNA0417164300", []string{"NL91ABNA0417164300"}},
		{"iban", "GB82WEST12345698765433", nil},  // check digits
		{"iban", "GB82WEST1234569876543", nil},   // length
		{"iban", "ZZ82WEST12345698765432", nil},  // no such country
		{"iban", "XGB82WEST12345698765432", nil}, // inside a word
		{"iban", "AB12 CD34 and SKU12345", nil},

		// IP addresses.
		{"ip", "from 192.168.1.1 to 10.0.0.255:5432", []string{"192.168.1.1", "10.0.0.255"}},
		{"ip", "net 10.0.0.0/8.", []string{"10.0.0.0"}},
		{"ip", "2001:db8::1 and ::1 and fe80::1ff:fe23:4567:890a%eth0", []string{"2001:db8::1", "::1", "fe80::1ff:fe23:4567:890a"}},
		{"ip", "[2001:0db8:85a3:0000:0000:8a2e:0370:7334]:443", []string{"2001:0db8:85a3:0000:0000:8a2e:0370:7334"}},
		{"ip", "::ffff:192.0.2.128", []string{"::ffff:192.0.2.128"}},
		{"ip", "fe80::1: up", []string{"fe80::1"}},
		{"ip", "1.2.3 256.1.1.1 v1.2.3.4 1.2.3.4.5 10.0.0", nil},
		{"ip", "10:30:00 00:1a:2b:3c:4d:5e std::vector a::b:: x ::= y", nil},
		{"ip", "2024-01-15T10:30:00.123Z", nil},
		// Browser versions in a User-Agent are not addresses; an address
		// after any other word, or in a path, still is.
		{"ip", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36 Edg/120.0.2210.91", nil},
		{"ip", "HeadlessChrome/139.0.7258.5,OPR/106.0.0.0;YaBrowser/24.1.0.0", nil},
		{"ip", "hosts/10.0.0.1 Hosts/10.0.0.2 /Chrome/10.0.0.3 x.Chrome/10.0.0.4 XChrome/10.0.0.5 Chrome:10.0.0.6 chrome/10.0.0.7",
			[]string{"10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5", "10.0.0.6", "10.0.0.7"}},
		{"ip", "Chrome/ 10.0.0.8 Chrome//10.0.0.9", []string{"10.0.0.8", "10.0.0.9"}},

		// AWS access keys.
		{"aws_key", "key=AKIAIOSFODNN7EXAMPLE;", []string{"AKIAIOSFODNN7EXAMPLE"}},
		{"aws_key", "ASIAY34FZKBOKMUTVV7A", []string{"ASIAY34FZKBOKMUTVV7A"}},
		{"aws_key", "AKIAIOSFODNN7EXAMPL XAKIAIOSFODNN7EXAMPLE AKIAIOSFODNN7EXAMPLEX akiaiosfodnn7example", nil},

		// JWTs.
		{"jwt", "Bearer " + jwt + " end", []string{jwt}},
		{"jwt", jwtOf(`{"alg":"none"}`, `{"a":1}`), []string{jwtOf(`{"alg":"none"}`, `{"a":1}`)}},
		{"jwt", jwtOf(`{"alg":`, `{"a":1}`), nil}, // header not JSON
		{"jwt", "eyJhbGciOiJIUzI1NiJ9.only-two", nil},
		{"jwt", "xeyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxIn0.abc", nil},

		// PEM private keys.
		{"private_key", "key:\n" + samplePEM + "\nafter", []string{samplePEM}},
		{"private_key", "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----", []string{"-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----"}},
		{"private_key", "x -----BEGIN PRIVATE KEY-----\nMIIEvQIBADAN (truncated)", []string{"-----BEGIN PRIVATE KEY-----\nMIIEvQIBADAN (truncated)"}},
		{"private_key", "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n-----BEGIN PUBLIC KEY-----\nMIIB\n-----END PUBLIC KEY-----", nil},

		// Generic secrets.
		{"secret", "token ghp_R2d4x9QmWq7LzT1vB8nY5kP3jH6sF0aCxYz1 ok", []string{"ghp_R2d4x9QmWq7LzT1vB8nY5kP3jH6sF0aCxYz1"}},
		{"secret", "aws_secret=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", []string{"wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"}},
		{"secret", "k: xoxb-2342342342-R2d4x9QmWq7LzT1vB8nY5kP3", []string{"xoxb-2342342342-R2d4x9QmWq7LzT1vB8nY5kP3"}},
		{"secret", "pad dGhpcyBpcyBhIHNlY3JldCB2YWx1ZTEyMw==", []string{"dGhpcyBpcyBhIHNlY3JldCB2YWx1ZTEyMw=="}},
		{"secret", "550e8400-e29b-41d4-a716-446655440000 da39a3ee5e6b4b0d3255bfef95601890afd80709", nil},
		{"secret", "ThisIsAVeryLongIdentifierName1 AbstractSingletonProxyFactoryBean2", nil},
		{"secret", "/usr/local/lib/python3/site-packages/Django SELECT_id_FROM_users2024", nil},
		{"secret", "ORD-2024-000123-XYZ-9981-ab getUserAccountBalance2024 Mozilla/5.0", nil},
		{"secret", "short Ab1Cd2Ef3", nil},
	}
	for _, tt := range tests {
		t.Run(tt.detector+"/"+tt.in, func(t *testing.T) {
			d, ok := Builtin(tt.detector)
			require.True(t, ok)
			assert.Equal(t, tt.want, findAll(d, tt.in))
		})
	}
}

func TestDetectorStartRespectsContext(t *testing.T) {
	// A search that starts inside a number does not find the number's
	// tail: Find looks before start for context.
	b := []byte("x 12345678904111111111111111 y")
	_, _, ok := cardDetector{}.Find(b, 14)
	assert.False(t, ok)
	_, _, ok = secretDetector{}.Find([]byte("ghp_R2d4x9QmWq7LzT1vB8nY5kP3jH6sF0aCxYz1"), 3)
	assert.False(t, ok)
}

// TestSecretCalibration checks the entropy detector's thresholds: random
// base62 tokens are found (all but a few percent at 20 characters, nearly
// all from 32), and identifiers, paths and ids are not.
func TestSecretCalibration(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 11))
	const alpha = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
	for _, tc := range []struct {
		n       int
		maxMiss float64
	}{{20, 0.08}, {32, 0.015}, {40, 0.01}, {64, 0.001}} {
		miss := 0
		const trials = 5000
		for range trials {
			b := make([]byte, tc.n)
			for i := range b {
				b[i] = alpha[r.IntN(len(alpha))]
			}
			if _, _, ok := (secretDetector{}).Find(b, 0); !ok {
				miss++
			}
		}
		assert.LessOrEqual(t, float64(miss)/trials, tc.maxMiss, "length %d", tc.n)
	}
	for _, s := range strings.Fields(`
		HTTP/1.1-ServerResponse200OK OrderConfirmationEmail2024v2 src/main/java/com/example/App
		MyBase64EncodedValue12 X-Amz-Security-Token aws4_request/20240115/us-east-1
		api/v2/users/12345/orders/Details Version2Release/Build123/Final
		com.example.MyApp2:v1.2.3 2024-01-15T10:30:00.000000Z
		kubernetes.io/service-account-token github.com/sluicegw/sluice/masking
		node_modules/@babel/core/lib/transformation/file/File.js`) {
		_, _, ok := (secretDetector{}).Find([]byte(s), 0)
		assert.False(t, ok, s)
	}
}

func TestRegexpDetector(t *testing.T) {
	d, err := RegexpDetector("employee_id", `EMP-\d{6}`, func(m []byte) bool { return m[len(m)-1] != '0' })
	require.NoError(t, err)
	assert.Equal(t, "employee_id", d.Name())
	assert.Equal(t, []string{"EMP-123456", "EMP-000001"}, findAll(d, "EMP-123456 EMP-123450 EMP-000001"))

	_, err = RegexpDetector("email", `x`, nil)
	assert.ErrorContains(t, err, "taken")
	_, err = RegexpDetector("bad name", `x`, nil)
	assert.Error(t, err)
	_, err = RegexpDetector("bad_re", `(`, nil)
	assert.Error(t, err)
}

func TestBuiltinNames(t *testing.T) {
	assert.Equal(t, []string{"aws_key", "credit_card", "email", "iban", "ip", "jwt", "phone", "private_key", "secret", "ssn"}, BuiltinNames())
	for _, n := range BuiltinNames() {
		d, ok := Builtin(n)
		require.True(t, ok)
		assert.Equal(t, n, d.Name())
	}
}

// TestRunFormsAgree checks that the masker's pass over digit runs
// (numberPass) finds exactly what the number detectors' Find methods
// find, each detector alone and all together. Its inputs hold bytes that
// are digits but for the high bit, and runs that meet the eight-byte
// words numberPass reads.
func TestRunFormsAgree(t *testing.T) {
	g := newGen(5)
	pieces := []func() string{g.card, g.ssn, g.phone, g.iban, g.harmless, g.harmless,
		func() string { return g.pick("+", "(", ")", "-", ".", " ", "x", "0", "1 ", "+1", "(0)", "-1") },
		g.ip, func() string {
			return g.pick("1.2.3.4", "256.1.1.1", "01.002.3.4", "v1.2.3.4", ".", "1.2.3.4.5", "a", "Chrome/", "/", "Edg")
		},
		func() string { return g.pick("\xb0\xb1\xb2", "\xb9", "é", "7\xb8", "12345678", "1234567") }}
	maskers := []*Masker{mustCompile(t, DetectCard, DetectSSN, DetectPhone, DetectIBAN, DetectIP)}
	for _, n := range []string{DetectCard, DetectSSN, DetectPhone, DetectIBAN, DetectIP} {
		maskers = append(maskers, mustCompile(t, n))
	}
	for range 5000 {
		var b strings.Builder
		for range 1 + g.r.IntN(8) {
			b.WriteString(pieces[g.r.IntN(len(pieces))]())
			b.WriteString(g.pick("", " ", "-", ",", "\n"))
		}
		s := []byte(b.String())
		for _, m := range maskers {
			checkFindSpans(t, m, s)
		}
	}
}

// runGates returns the gates the digit run b[s:e] passes, as numberPass
// looks them up.
func runGates(b []byte, s, e int) uint8 {
	prev2, prev, next, next2 := around(b, s, e)
	return gatesAt(b[s], e-s, prev2, prev, next, next2)
}

// refGates is runGates written out over bytes: the gates of the digit
// run b[s:e].
func refGates(b []byte, s, e int) uint8 {
	at := func(i int) byte {
		if i < 0 || i >= len(b) {
			return 0
		}
		return b[i]
	}
	n, first, prev, prev2, next, next2 := e-s, b[s], at(s-1), at(s-2), at(e), at(e+1)
	var g uint8
	if (n <= 2 || n == 3 && first <= '2') && next == '.' && isDigit(next2) {
		g |= gateIPv4
	}
	if (prev == '.' || prev == '-') && isDigit(prev2) {
		return g
	}
	sep := next == ' ' || next == '-'
	if !isAlnum(prev) {
		if first >= '2' && first <= '6' && (n >= 13 && n <= 19 || n >= 3 && n <= 6 && sep && isDigit(next2)) {
			g |= gateCard
		}
		if prev != '+' && (n == 3 && first >= '2' && (sep || next == '.') && next2 >= '2' && next2 <= '9' ||
			n == 1 && first == '1' && (sep || next == '.') ||
			first == '0' && n >= 2 && n <= 8 && sep && isDigit(next2)) {
			g |= gatePhone
		}
	}
	if n == 3 && sep && isDigit(next2) {
		g |= gateSSN
	}
	if prev == '+' && first != '0' || prev == '(' && n == 3 && first >= '2' {
		g |= gatePhoneSign
	}
	if isUpper(prev) && isUpper(prev2) && n >= 2 {
		g |= gateIBAN
	}
	return g
}

// TestRunGates checks the table lookup of runGates against refGates on
// every digit run of random text.
func TestRunGates(t *testing.T) {
	g := newGen(11)
	for range 20000 {
		b := []byte(g.chars("0123456789012345 .-+(AZaz/", 1+g.r.IntN(40)))
		for s := 0; s < len(b); s++ {
			if !isDigit(b[s]) || s > 0 && isDigit(b[s-1]) {
				continue
			}
			e := skipDigits(b, s)
			if got, want := runGates(b, s, e), refGates(b, s, e); got != want {
				t.Fatalf("%q run %d:%d: gates %06b, want %06b", b, s, e, got, want)
			}
		}
	}
}

// TestDigitRuns checks the chunked run collector against a byte-by-byte
// scan: runs across 64-byte chunks, chunks of digits only, and more runs
// than one call collects.
func TestDigitRuns(t *testing.T) {
	g := newGen(13)
	naive := func(b []byte) []digitRun {
		var out []digitRun
		for p := 0; p < len(b); {
			if !isDigit(b[p]) {
				p++
				continue
			}
			e := skipDigits(b, p)
			out = append(out, digitRun{int32(p), int32(e)})
			p = e
		}
		return out
	}
	for range 5000 {
		var b []byte
		for range g.r.IntN(12) {
			switch g.r.IntN(4) {
			case 0:
				b = append(b, g.digits(1+g.r.IntN(150))...)
			case 1:
				b = append(b, g.chars("0123456789 a.\xb0\xb9\xff", 1+g.r.IntN(70))...)
			default:
				b = append(b, g.chars("ab /.-", 1+g.r.IntN(64))...)
			}
		}
		var got []digitRun
		var runs [maxRuns]digitRun
		for p := 0; p < len(b); {
			var n int
			n, p = digitRuns(b, p, &runs)
			got = append(got, runs[:n]...)
		}
		if want := naive(b); !slices.Equal(got, want) {
			t.Fatalf("in %q:\ngot  %v\nwant %v", b, got, want)
		}
	}
}
