//go:build !unix

package main

// idleClosed cannot peek at a socket here: an idle connection the service
// closed fails the request sent on it.
func idleClosed(*conn) bool { return false }
