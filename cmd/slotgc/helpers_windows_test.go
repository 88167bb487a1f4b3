//go:build windows

package main

import "os"

// killedPolitely reports whether the process ended by slotgc.Kill's
// TerminateProcess, which gives exit code 1.
func killedPolitely(ps *os.ProcessState) bool { return ps.ExitCode() == 1 }
