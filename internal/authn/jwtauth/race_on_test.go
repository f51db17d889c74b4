//go:build race

package jwtauth

// raceEnabled shrinks the tests that verify thousands of tokens: the race
// detector makes each verification several times slower.
const raceEnabled = true
