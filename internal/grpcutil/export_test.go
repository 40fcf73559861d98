package grpcutil

// TestSources is testSources for the black-box tests.
var TestSources = testSources
