//go:build linux

package slotgc

import (
	"bufio"
	"bytes"
	"os"
	"strconv"
	"strings"
)

// The mount check reads /proc/self/mountinfo once per PruneDead call, and
// only once something is to be removed, rather than probing every entry of
// a tree while walking it: a file can be a mount point as well as a
// directory, and only the table names both without a system call per file.
// The walk itself refuses to cross a mount as well (openSubdir), so a mount
// made after the table was read still stops the removal there.

// mountsUnder returns the mount points at or below the directory open as
// fd, as this process sees them.
func (g *pruneGuard) mountsUnder(fd int) []string {
	if !g.mountsRead {
		g.mountsRead = true
		g.mounts = readMountPoints()
	}
	dir, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(fd))
	if err != nil || !strings.HasPrefix(dir, "/") {
		return nil
	}
	var under []string
	for _, m := range g.mounts {
		if m == dir || strings.HasPrefix(m, dir+"/") {
			under = append(under, m)
		}
	}
	return under
}

// readMountPoints returns the mount points /proc/self/mountinfo lists, or
// none if it cannot be read; the walk's own refusal to cross a mount then
// stands alone.
func readMountPoints() []string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	defer f.Close()
	var points []string
	lines := bufio.NewScanner(f)
	lines.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for lines.Scan() {
		if m, ok := mountPoint(lines.Bytes()); ok {
			points = append(points, m)
		}
	}
	return points
}

// mountPoint returns the mount point, field 5, of a mountinfo line
// (https://man7.org/linux/man-pages/man5/proc_pid_mountinfo.5.html), with
// the kernel's octal escapes of space, tab, newline and backslash undone.
func mountPoint(line []byte) (string, bool) {
	fields := bytes.Fields(line)
	if len(fields) < 5 {
		return "", false
	}
	return unescapeOctal(fields[4]), true
}

func unescapeOctal(b []byte) string {
	if bytes.IndexByte(b, '\\') < 0 {
		return string(b)
	}
	var out strings.Builder
	for i := 0; i < len(b); i++ {
		if b[i] == '\\' && i+3 < len(b) {
			if n, err := strconv.ParseUint(string(b[i+1:i+4]), 8, 8); err == nil {
				out.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		out.WriteByte(b[i])
	}
	return out.String()
}
