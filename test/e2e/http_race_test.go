//go:build race

package e2e

// httpDownloadSize is smaller under the race detector, which slows the
// copy loops about tenfold: 128 MiB still shows whether memory follows
// the size.
const httpDownloadSize = 128 << 20
