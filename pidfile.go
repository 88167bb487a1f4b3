package slotgc

import (
	"errors"
	"math"
	"time"
)

// Each system reads a pid file its own way (slotgc_unix.go,
// slotgc_windows.go) and leaves the rules to this file:
//
//	readPIDFile(sw *swarmDir, entry string) (pid int, written time.Time, owner int, err error)

// maxPIDFileSize bounds what is read from a pid file. A pid needs at most
// ten digits; the rest leaves room for whitespace around them.
const maxPIDFileSize = 64

var (
	errEmptyPIDFile = errors.New("pid file is empty")
	errNotAPID      = errors.New("pid file does not hold a decimal number")
	errPIDRange     = errors.New("pid file names a pid outside 2..2147483647")
	errNotRegular   = errors.New("pid file is not a regular file")
	errTooLarge     = errors.New("pid file is larger than 64 bytes")
)

// checkPIDFileInfo applies the rules a pid file's metadata must meet.
func checkPIDFileInfo(regular bool, size int64) error {
	switch {
	case !regular:
		return errNotRegular
	case size > maxPIDFileSize:
		return errTooLarge
	}
	return nil
}

// parsePIDContent checks and parses what was read from a pid file.
func parsePIDContent(content []byte) (int, error) {
	if len(content) > maxPIDFileSize {
		return 0, errTooLarge
	}
	return parsePID(content)
}

// parsePID parses a pid file's content: ASCII whitespace around decimal
// digits naming a pid from 2 to 2³¹-1.
func parsePID(content []byte) (int, error) {
	digits := trimASCIISpace(content)
	if len(digits) == 0 {
		return 0, errEmptyPIDFile
	}
	// Counted in 64 bits whatever int's width: the check after each digit
	// keeps the count below 2³¹·10, so it can never wrap around, as a
	// 32-bit int would for 4294967964 (2³² + 668), read as 668.
	var pid uint64
	for _, c := range digits {
		if c < '0' || c > '9' {
			return 0, errNotAPID
		}
		pid = pid*10 + uint64(c-'0')
		if pid > math.MaxInt32 {
			return 0, errPIDRange
		}
	}
	if pid < 2 {
		return 0, errPIDRange
	}
	return int(pid), nil
}

func trimASCIISpace(b []byte) []byte {
	isSpace := func(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r' }
	for len(b) > 0 && isSpace(b[0]) {
		b = b[1:]
	}
	for len(b) > 0 && isSpace(b[len(b)-1]) {
		b = b[:len(b)-1]
	}
	return b
}

// reused reports whether a process that started at start cannot be the
// leaf that wrote its pid file at written. A zero start (unknown) is never
// reused.
func reused(start, written time.Time) bool {
	return !start.IsZero() && start.After(written.Add(startTolerance))
}
