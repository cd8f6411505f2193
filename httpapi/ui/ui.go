// Package ui is the ledger console: a few static files (HTML, CSS and
// JavaScript, no build step, nothing fetched from elsewhere) that the HTTP
// API serves at /ui/ and that read the ledger through the public API only.
//
// The console renders every value with textContent or as an SVG number,
// never as markup, and is served under ContentSecurityPolicy, which allows
// only these files and requests to the same origin: a product id or reason
// that holds markup is shown as text, and an injected script would not run.
// An API token, when access control is on, is kept in a JavaScript variable
// only (never in storage, the URL or the page) and sent as
// Authorization: Bearer on every API call.
package ui

import (
	"embed"
	"path"
)

//go:embed index.html app.js app.css
var files embed.FS

// ContentSecurityPolicy is the policy the console's files are served
// under: scripts, styles and API calls from the same origin only, no inline
// script or style, no frames, no plugins, no form posts.
const ContentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; " +
	"connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// types maps the console's file extensions to their media types.
var types = map[string]string{
	".html": "text/html; charset=utf-8",
	".js":   "text/javascript; charset=utf-8",
	".css":  "text/css; charset=utf-8",
}

// File returns the console file name ("" is the page itself, index.html)
// and its media type; ok is false for any name that is not one of the
// console's files, so nothing else can be read through it.
func File(name string) (body []byte, mediaType string, ok bool) {
	if name == "" {
		name = "index.html"
	}
	mediaType, known := types[path.Ext(name)]
	if !known || name != path.Base(name) {
		return nil, "", false
	}
	b, err := files.ReadFile(name)
	if err != nil {
		return nil, "", false
	}
	return b, mediaType, true
}
