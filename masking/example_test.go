package masking_test

import (
	"fmt"
	"os"

	"github.com/sluicegw/sluice/masking"
)

func ExampleCompile() {
	// The accumulated mask entries of a decision's matching rules.
	entries := []string{"email", "credit_card=partial:4", "column:users.ssn=null", "json:password"}
	m, err := masking.Compile(entries, masking.Options{})
	if err != nil {
		fmt.Println(err)
		return
	}
	cols := []masking.Column{
		{Name: "note", TypeOID: 25}, // text
		{Name: "ssn", Table: "public.users", TypeOID: 25},
		{Name: "prefs", TypeOID: 3802}, // jsonb
		{Name: "id", TypeOID: 23},      // int4
	}
	row := [][]byte{
		[]byte("mail bob@example.com, card 4111 1111 1111 1111"),
		[]byte("123-45-6789"),
		[]byte(`{"password": "hunter2", "theme": "dark"}`),
		[]byte("42"),
	}
	counts := map[string]int{}
	n, err := m.MaskRowCounts(cols, row, counts)
	if err != nil {
		fmt.Println("withhold the row:", err)
		return
	}
	fmt.Println(n, "values masked")
	for _, v := range row {
		if v == nil {
			fmt.Println("NULL")
			continue
		}
		fmt.Printf("%q\n", v)
	}
	fmt.Println(counts["email"], counts["credit_card=partial:4"], counts["column:users.ssn=null"], counts["json:password"])

	// Terminal output: matches across writes are found.
	s := m.NewTextStream(os.Stdout)
	s.Write([]byte("reach me at alice@exa"))
	s.Write([]byte("mple.com\n"))
	s.Close()
	// Output:
	// 3 values masked
	// "mail [REDACTED], card ***************1111"
	// NULL
	// "{\"password\": \"[REDACTED]\", \"theme\": \"dark\"}"
	// "42"
	// 1 1 1 1
	// reach me at [REDACTED]
}
