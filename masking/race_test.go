//go:build race

package masking

const raceEnabled = true
