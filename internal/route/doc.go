// Package route is the pipeline's route stage: it picks the one route that
// serves a request from its host, path, method and headers.
//
// A [Table] is compiled once from a list of rules by [New], which rejects
// anything ambiguous or malformed, and is immutable afterwards so a config
// snapshot can share it between goroutines and swap it atomically. Match
// takes the normalized host (lower-case, no port) and the canonical path
// (decoded once); it never sees the query string.
//
// # Conditions
//
// A rule matches when all of its conditions hold:
//
//   - Hosts: the host equals one of the listed names, or falls under a
//     wildcard "*.example.com", which matches one or more labels below
//     example.com (a.example.com, a.b.example.com) but not example.com itself.
//     No hosts means any host. Hosts are compared in the form the normalize
//     stage produces: lower-case, without a trailing dot, and IPv6 addresses
//     without brackets.
//   - Path: at most one of an exact path; a path prefix, which matches on a
//     segment boundary ("/api1" and "/api1/" both match "/api1", "/api1/" and
//     "/api1/x" but never "/api10", and "/" matches every path); or a regular
//     expression (RE2 syntax) that must match the whole path. No path
//     condition means any path.
//   - Methods: the method is one of the listed methods, written upper-case.
//     No methods means any method.
//   - Headers: each listed header is present (no value given), has a value
//     equal to the given value, or has a value the given regular expression
//     matches in full. When a header has several values, any one of them
//     may satisfy the condition.
//
// # Precedence
//
// When several rules match, the most specific one serves the request.
// Specificity compares, in order, and the first difference decides:
//
//  1. Host: an exact host beats a wildcard; a wildcard with more labels
//     ("*.a.example.com") beats one with fewer ("*.example.com"); any
//     wildcard beats a rule with no host condition.
//  2. Path: an exact path beats a prefix; a longer prefix beats a shorter
//     one ("/api1/" and "/api1" count as the same prefix); any prefix beats a
//     regular expression; a regular expression beats no path condition.
//  3. Constraints: the rule with more method and header conditions wins,
//     counting a method list as one condition and each header as one.
//  4. Order: the rule that comes first in the configuration wins.
//
// Every condition of the winning rule holds: if the rules for the most
// specific host do not match (say, the method differs), the rules for the
// next most specific host are considered, down to the rules with no host
// condition.
//
// Hosts, exact paths and prefixes are found through maps, so the size of the
// table hardly matters; regular expressions are tried one after another, so
// prefer a prefix where one will do.
//
// Two rules whose conditions are identical for some host (same path
// condition, same methods, same headers) are rejected, since the second
// could never serve a request.
package route
