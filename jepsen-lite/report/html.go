package report

import (
	"os"

	"github.com/cairndb/cairn/jepsen-lite/checker"
)

func writeHTML(path string, res Results, rep *checker.Report) error {
	return os.WriteFile(path, []byte("<html><body><pre>"+Summary(res, rep)+"</pre></body></html>"), 0o644)
}
