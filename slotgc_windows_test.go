//go:build windows

package slotgc

import (
	"os"
	"syscall"
)

func init() {
	// Wine's ntdll exports wine_get_version; Windows' does not.
	if syscall.NewLazyDLL("ntdll.dll").NewProc("wine_get_version").Find() == nil {
		removalBroken = "os.RemoveAll fails under Wine 8 (no FileDispositionInformationEx: \"Invalid function\")"
	}
}

// ignoreTerm has nothing to do: Windows has no SIGTERM to ignore.
func ignoreTerm() {}

// killedPolitely reports whether the process ended by Kill's
// TerminateProcess, which gives exit code 1.
func killedPolitely(ps *os.ProcessState) bool { return ps.ExitCode() == 1 }
