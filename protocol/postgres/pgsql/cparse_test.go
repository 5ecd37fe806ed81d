package pgsql

import "testing"

func TestLink(t *testing.T) {
	t.Log(rawParse(`SELECT 'x\'' ; DROP TABLE t; -- '`, 0))
	t.Log(rawParse(`SELECT 'x\'' ; DROP TABLE t; -- '`, 32))
	t.Log(rawParse(`SELECT 'x\'' ; DROP TABLE t; -- '`, 32|16))
}
