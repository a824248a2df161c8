// Package oracle holds only tests: the differential test of
// internal/syslog against github.com/leodido/go-syslog/v4 (TestOracle over
// the corpus, FuzzOracle for new inputs). It lives apart from the parser
// so that go-syslog, which fuzzing instrumentation takes minutes to
// compile, stays out of FuzzParse's test binary.
package oracle
