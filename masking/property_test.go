package masking

import (
	"encoding/base64"
	"fmt"
	"math/big"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// gen makes planted sensitive values and harmless filler, reproducibly.
type gen struct{ r *rand.Rand }

func newGen(seed uint64) *gen { return &gen{rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))} }

func (g *gen) pick(s ...string) string { return s[g.r.IntN(len(s))] }

func (g *gen) digits(n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte('0' + g.r.IntN(10))
	}
	return string(b)
}

func (g *gen) chars(alpha string, n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = alpha[g.r.IntN(len(alpha))]
	}
	return string(b)
}

const (
	upperDigits = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	base62      = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
	lowerAlnum  = "abcdefghijklmnopqrstuvwxyz0123456789"
)

// card returns a Luhn-valid number of a real issuer, bare or grouped.
func (g *gen) card() string {
	var prefix string
	var n int
	switch g.r.IntN(5) {
	case 0:
		prefix, n = "4", 16
	case 1:
		prefix, n = "5"+strconv.Itoa(1+g.r.IntN(5)), 16
	case 2:
		prefix, n = g.pick("34", "37"), 15
	case 3:
		prefix, n = "6011", 16
	default:
		prefix, n = strconv.Itoa(2221+g.r.IntN(500)), 16
	}
	body := prefix + g.digits(n-1-len(prefix))
	for c := '0'; c <= '9'; c++ {
		if luhn([]byte(body + string(c))) {
			body += string(c)
			break
		}
	}
	switch sep := g.pick("", " ", "-"); {
	case sep == "":
		return body
	case n == 15:
		return body[:4] + sep + body[4:10] + sep + body[10:]
	default:
		return body[:4] + sep + body[4:8] + sep + body[8:12] + sep + body[12:]
	}
}

func (g *gen) email() string {
	return g.chars("abcdefghijklmnopqrstuvwxyz", 1+g.r.IntN(8)) + g.pick("", ".", "_", "+") + g.chars(lowerAlnum, 1+g.r.IntN(6)) +
		"@" + g.chars("abcdefghijklmnopqrstuvwxyz", 2+g.r.IntN(8)) + g.pick(".com", ".org", ".co.uk", ".io", ".example")
}

func (g *gen) ssn() string {
	area := 1 + g.r.IntN(899)
	for area == 666 {
		area = 1 + g.r.IntN(899)
	}
	sep := g.pick("-", " ")
	return fmt.Sprintf("%03d%s%02d%s%04d", area, sep, 1+g.r.IntN(99), sep, 1+g.r.IntN(9999))
}

func (g *gen) phone() string {
	nxx := func() string { return strconv.Itoa(2+g.r.IntN(8)) + g.digits(2) }
	switch g.r.IntN(4) {
	case 0:
		return "+1" + nxx() + nxx() + g.digits(4)
	case 1:
		return "+44 20 " + g.digits(4) + " " + g.digits(4)
	case 2:
		return "(" + nxx() + ") " + nxx() + "-" + g.digits(4)
	default:
		sep := g.pick("-", ".", " ")
		return nxx() + sep + nxx() + sep + g.digits(4)
	}
}

// iban returns a valid GB or DE IBAN, bare or grouped in fours.
func (g *gen) iban() string {
	cc, bban := "DE", g.digits(18)
	if g.r.IntN(2) == 0 {
		cc, bban = "GB", g.chars("ABCDEFGHIJKLMNOPQRSTUVWXYZ", 4)+g.digits(14)
	}
	var num strings.Builder
	for _, c := range bban + cc + "00" {
		if c >= 'A' {
			num.WriteString(strconv.Itoa(int(c-'A') + 10))
		} else {
			num.WriteRune(c)
		}
	}
	n, _ := new(big.Int).SetString(num.String(), 10)
	check := 98 - new(big.Int).Mod(n, big.NewInt(97)).Int64()
	s := fmt.Sprintf("%s%02d%s", cc, check, bban)
	if g.r.IntN(2) == 0 {
		var b strings.Builder
		for i := 0; i < len(s); i += 4 {
			if i > 0 {
				b.WriteByte(' ')
			}
			b.WriteString(s[i:min(i+4, len(s))])
		}
		s = b.String()
	}
	return s
}

func (g *gen) ip() string {
	if g.r.IntN(2) == 0 {
		return fmt.Sprintf("%d.%d.%d.%d", 1+g.r.IntN(254), g.r.IntN(256), g.r.IntN(256), 1+g.r.IntN(254))
	}
	return fmt.Sprintf("2001:db8:%x::%x", g.r.IntN(0xffff), 1+g.r.IntN(0xfffe))
}

func (g *gen) awsKey() string { return g.pick("AKIA", "ASIA") + g.chars(upperDigits, 16) }

func (g *gen) jwt() string {
	enc := base64.RawURLEncoding.EncodeToString
	return enc([]byte(`{"alg":"RS256","kid":"`+g.chars(lowerAlnum, 8)+`"}`)) + "." +
		enc([]byte(`{"sub":"`+g.chars(lowerAlnum, 12)+`","exp":`+g.digits(10)+`}`)) + "." + g.chars(base62+"-_", 43)
}

func (g *gen) secret() string {
	return g.pick("ghp_", "glpat-", "sk_live_", "xoxb-", "") + g.chars(base62, 40)
}

func (g *gen) privateKey() string {
	return "-----BEGIN EC PRIVATE KEY-----\n" + g.chars(base62+"+/", 64) + "\n" + g.chars(base62+"+/", 32) + "==\n-----END EC PRIVATE KEY-----"
}

// planted returns one sensitive value of a random kind.
func (g *gen) planted() string {
	switch g.r.IntN(11) {
	case 0:
		return g.card()
	case 1:
		return g.email()
	case 2:
		return g.ssn()
	case 3:
		return g.phone()
	case 4:
		return g.iban()
	case 5:
		return g.ip()
	case 6:
		return g.awsKey()
	case 7:
		return g.jwt()
	case 8:
		return g.secret()
	case 9:
		return g.privateKey()
	default:
		return g.email()
	}
}

// harmless returns a value no detector should match: order ids,
// timestamps, versions, UUIDs, integers, dates, prices and prose.
func (g *gen) harmless() string {
	switch g.r.IntN(22) {
	case 0:
		return fmt.Sprintf("ORD-%d-%06d", 2000+g.r.IntN(30), g.r.IntN(1000000))
	case 1:
		return fmt.Sprintf("2024-%02d-%02dT%02d:%02d:%02dZ", 1+g.r.IntN(12), 1+g.r.IntN(28), g.r.IntN(24), g.r.IntN(60), g.r.IntN(60))
	case 2:
		return fmt.Sprintf("2024-%02d-%02d %02d:%02d:%02d.%06d+00", 1+g.r.IntN(12), 1+g.r.IntN(28), g.r.IntN(24), g.r.IntN(60), g.r.IntN(60), g.r.IntN(1000000))
	case 3:
		return fmt.Sprintf("%d.%d.%d", g.r.IntN(20), g.r.IntN(50), g.r.IntN(200))
	case 4:
		return fmt.Sprintf("v%d.%d.%d-rc.%d", g.r.IntN(5), g.r.IntN(30), g.r.IntN(30), g.r.IntN(9))
	case 5:
		return fmt.Sprintf("%08x-%04x-4%03x-%04x-%012x", g.r.Uint32(), g.r.IntN(0x10000), g.r.IntN(0x1000), 0x8000|g.r.IntN(0x4000), g.r.Uint64()&0xffffffffffff)
	case 6:
		return strconv.Itoa(g.r.IntN(2_000_000_000))
	case 7:
		return fmt.Sprintf("%02d/%02d/%d", 1+g.r.IntN(28), 1+g.r.IntN(12), 1990+g.r.IntN(40))
	case 8:
		return fmt.Sprintf("$%d,%03d.%02d", 1+g.r.IntN(999), g.r.IntN(1000), g.r.IntN(100))
	case 9:
		return fmt.Sprintf("%d.%02d EUR", g.r.IntN(100000), g.r.IntN(100))
	case 10:
		return strconv.FormatInt(1_600_000_000+g.r.Int64N(200_000_000), 10) // epoch seconds
	case 11:
		return strconv.FormatInt(1_600_000_000_000+g.r.Int64N(200_000_000_000), 10) // epoch millis
	case 12:
		return fmt.Sprintf("%040x", g.r.Uint64()) // a git-like hash
	case 13:
		return fmt.Sprintf("%d%%", g.r.IntN(101))
	case 14:
		return fmt.Sprintf("INV/%d/%05d", 2020+g.r.IntN(6), g.r.IntN(100000))
	case 15:
		return fmt.Sprintf("SKU-%s-%05d", g.chars("ABCDEFGHIJKLMNOPQRSTUVWXYZ", 3), g.r.IntN(100000))
	case 16:
		return fmt.Sprintf("%02d:%02d:%02d", g.r.IntN(24), g.r.IntN(60), g.r.IntN(60))
	case 17:
		return fmt.Sprintf("%05d-%04d", g.r.IntN(100000), g.r.IntN(10000)) // ZIP+4
	case 18:
		return g.pick("HTTP/1.1", "x86_64", "/var/lib/postgresql/16/main", "en_US.UTF-8", "#ff00aa", "PT15M", "user_id=12345", "https://example.com/docs/getting-started?page=2")
	default:
		return g.pick("the", "quick", "brown", "fox", "shipped", "order", "pending", "refund", "approved", "Customer", "note:", "see", "ticket", "#4521", "Lorem ipsum dolor sit amet")
	}
}

// sep returns a separator between values in a cell.
func (g *gen) sep() string { return g.pick(" ", ", ", "; ", "\n", " | ", ": ", "\t") }

// TestPropertyNothingLeaks plants sensitive values of every kind in
// generated rows and checks that after masking none of them is left and no
// detector matches anything in what remains.
func TestPropertyNothingLeaks(t *testing.T) {
	m := allDetectors(t)
	seed := uint64(20240115)
	if s, err := strconv.ParseUint(os.Getenv("MASKING_SEED"), 10, 64); err == nil {
		seed = s // explore: MASKING_SEED=n go test -run Property
	}
	g := newGen(seed)
	cols := make([]Column, 10)
	for i := range cols {
		cols[i] = Column{Name: "c" + strconv.Itoa(i), TypeOID: oidText, Binary: i%3 == 0}
	}
	leaks := 0
	for row := range 2000 {
		vals := make([][]byte, len(cols))
		var planted []string
		for i := range vals {
			var b strings.Builder
			for k := range 1 + g.r.IntN(6) {
				if k > 0 {
					b.WriteString(g.sep())
				}
				if g.r.IntN(3) == 0 {
					p := g.planted()
					planted = append(planted, p)
					b.WriteString(p)
				} else {
					b.WriteString(g.harmless())
				}
			}
			vals[i] = []byte(b.String())
		}
		_, err := m.MaskRow(cols, vals)
		require.NoError(t, err)
		for i, v := range vals {
			for _, p := range planted {
				if strings.Contains(string(v), p) {
					leaks++
					t.Errorf("row %d col %d: %q left in %q", row, i, p, v)
				}
			}
			for _, r := range m.dets {
				if _, _, ok := r.d.Find(v, 0); ok {
					t.Errorf("row %d col %d: %s still matches in %q", row, i, r.d.Name(), v)
				}
			}
		}
		if leaks > 5 {
			t.FailNow()
		}
	}
}

// TestFalsePositives checks that harmless values pass untouched with every
// detector on.
func TestFalsePositives(t *testing.T) {
	m := allDetectors(t)
	seed := uint64(42)
	if s, err := strconv.ParseUint(os.Getenv("MASKING_SEED"), 10, 64); err == nil {
		seed = s
	}
	g := newGen(seed)
	col := []Column{{Name: "v", TypeOID: oidText}}
	for range 20000 {
		v := g.harmless()
		vals := [][]byte{[]byte(v)}
		n, err := m.MaskRow(col, vals)
		require.NoError(t, err)
		if !assert.Zero(t, n, "%q was masked to %q", v, vals[0]) {
			return
		}
	}
	for _, v := range []string{
		"ORD-2024-000123", "2024-01-15T10:30:00Z", "2024-01-15T10:30:00.123456+05:30", "1.2.3", "v10.20.30",
		"550e8400-e29b-41d4-a716-446655440000", "550E8400-E29B-41D4-A716-446655440000", "42", "-17", "1234567890",
		"2024-01-15", "15.01.2024", "01/15/2024", "$1,234.56", "1234.5678", "0.4111111111111111",
		"Version 2.3.4.5678 (build 20240115)", "Order 4521 shipped to Berlin on 2024-03-02; total 199.99 EUR",
		"lat 52.520008, lon 13.404954", "192.168", "10.0", "std::map<int, int>", "a::b::c",
	} {
		vals := [][]byte{[]byte(v)}
		n, err := m.MaskRow(col, vals)
		require.NoError(t, err)
		assert.Zero(t, n, "%q was masked to %q", v, vals[0])
	}
}
