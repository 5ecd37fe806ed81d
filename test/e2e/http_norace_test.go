//go:build !race

package e2e

// httpDownloadSize is the size of TestHTTPLargeDownloadBoundedMemory's
// download: 1 GiB, a few seconds without the race detector.
const httpDownloadSize = 1 << 30
