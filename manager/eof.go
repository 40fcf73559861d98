package manager

import "io"

var errEOF = io.EOF
