// Package masking hides sensitive values in results as they stream back to
// the caller. Its central type is RowMasker, which a protocol plugin applies
// to each row of a result using the masking a policy Decision carried.
package masking

// Column describes one result column as a protocol reports it.
type Column struct {
	// Name is the column's name as the client sees it.
	Name string
	// Table is the qualified source table ("schema.table") when the
	// protocol can tell, else empty.
	Table string
	// TypeOID is the protocol's type identifier (PostgreSQL type OID).
	TypeOID uint32
	// Binary reports whether values arrive in a binary encoding.
	Binary bool
}

// RowMasker masks the values of one row in place. values[i] belongs to
// cols[i]; a nil value is SQL NULL. It returns the number of values it
// changed. A masked value must still decode as its column's type in a real
// driver.
type RowMasker interface {
	MaskRow(cols []Column, values [][]byte) int
}
