package nsmcompat

import (
	"os"
	"testing"
)

func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == roleArg {
		os.Exit(runRole(os.Args[2:]))
	}
	os.Exit(runMain(m))
}
