// Package e2e holds end-to-end tests that drive a real headless Chromium
// against a real gateway started in-process, so that what a person sees in
// a browser — redirects, cookies, forms, pages — is tested as a whole and
// not only piece by piece with Go's HTTP client.
//
// The tests need Debian's chromium package (scripts/test.sh installs it)
// and skip with a message when it is missing. Set SEKISHO_SCREENSHOTS=1 to
// write the sign-in page's screenshot to docs/screenshots/.
package e2e
