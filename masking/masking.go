// Package masking hides sensitive values in results as they stream back to
// the caller. Its central type is Masker, compiled from the mask entries of
// a policy Decision (Compile), which a protocol plugin applies to each row
// of a result (RowMasker), to JSON bodies (JSONStream) and to terminal
// output (TextStream).
//
// A Masker finds sensitive values two ways: by name (field rules: column
// names, table.column, globs, JSON keys and paths) and by content
// (Detectors: email, payment cards, SSNs, phone numbers, IBANs, IP
// addresses, AWS keys, JWTs, PEM private keys, high-entropy secrets, and
// detectors users add). Each rule applies a Strategy: redact, partial
// (keep the last N characters), hash (a keyed, deterministic pseudonym) or
// null.
//
// Masking fails closed: a value it cannot process is an error, and the
// caller withholds it.
package masking

// Column describes one result column as a protocol reports it.
type Column struct {
	// Name is the column's name as the client sees it.
	Name string
	// Table is the qualified source table ("schema.table") when the
	// protocol can tell, else empty. A table.column rule matches a column
	// whose Table is empty by its name alone: unknown provenance masks
	// more, never less.
	Table string
	// TypeOID is the protocol's type identifier (PostgreSQL type OID).
	TypeOID uint32
	// Binary reports whether values arrive in a binary encoding.
	Binary bool
}

// RowMasker masks the values of one row in place. values[i] belongs to
// cols[i]; a nil value is SQL NULL. It returns the number of values it
// changed. A masked value still decodes as its column's type in a real
// driver.
//
// An error means the row could not be masked (corrupt JSON in a json
// column, a binary value of the wrong size, ...); values may then be
// partly masked, and the caller must not send the row.
type RowMasker interface {
	MaskRow(cols []Column, values [][]byte) (int, error)
}

// RowCounter is a RowMasker that also reports which mask entries masked
// what: MaskRowCounts adds, for each entry (as written in the policy), the
// number of values it masked to counts. A plugin type-asserts for it to
// record masked counts per rule.
type RowCounter interface {
	RowMasker
	MaskRowCounts(cols []Column, values [][]byte, counts map[string]int) (int, error)
}
