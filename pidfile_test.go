package slotgc

import (
	"errors"
	"io/fs"
	"math"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

func TestParsePID(t *testing.T) {
	tests := []struct {
		name    string
		content string
		want    int
		wantErr error
	}{
		{"plain", "1234\n", 1234, nil},
		{"no newline", "1234", 1234, nil},
		{"ascii whitespace around", " \t\r\v\f42 \n\n", 42, nil},
		{"leading zeros", "0042\n", 42, nil},
		{"lowest pid", "2", 2, nil},
		{"highest pid", "2147483647", math.MaxInt32, nil},
		{"empty", "", 0, errEmptyPIDFile},
		{"only whitespace", " \n\t", 0, errEmptyPIDFile},
		{"zero", "0\n", 0, errPIDRange},
		{"init", "1\n", 0, errPIDRange},
		{"just past 2^31-1", "2147483648", 0, errPIDRange},
		{"far past 2^63", "99999999999999999999999", 0, errPIDRange},
		{"2^32 + 668, which a 32-bit int wraps to 668", "4294967964", 0, errPIDRange},
		{"2^32 + 2", "4294967298", 0, errPIDRange},
		{"2^64 + 668", "18446744073709552284", 0, errPIDRange},
		{"negative", "-1\n", 0, errNotAPID},
		{"plus sign", "+42\n", 0, errNotAPID},
		{"hex", "0x2a\n", 0, errNotAPID},
		{"two numbers", "42 43\n", 0, errNotAPID},
		{"trailing NUL", "42\x00", 0, errNotAPID},
		{"non-ASCII space", "\u00a042", 0, errNotAPID},
		{"next line", "42\u0085", 0, errNotAPID},
		{"full-width digits", "４２", 0, errNotAPID},
		{"float", "42.0", 0, errNotAPID},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parsePID([]byte(tc.content))
			if got != tc.want || !errors.Is(err, tc.wantErr) || (err == nil) != (tc.wantErr == nil) {
				t.Errorf("parsePID(%q) = %d, %v, want %d, %v", tc.content, got, err, tc.want, tc.wantErr)
			}
		})
	}
}

func FuzzParsePID(f *testing.F) {
	for _, seed := range []string{"1234\n", " 2 ", "2147483647", "2147483648", "0", "", "-1", "\u00a042", "00000000000000000000042", "4294967964", "18446744073709552284"} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, content []byte) {
		pid, err := parsePID(content)
		if err != nil {
			if pid != 0 {
				t.Fatalf("parsePID(%q) = %d, %v: a pid with an error", content, pid, err)
			}
			return
		}
		if pid < 2 || pid > math.MaxInt32 {
			t.Fatalf("parsePID(%q) = %d, outside 2..2^31-1", content, pid)
		}
		// An accepted file is digits in ASCII whitespace naming that pid.
		text := strings.Trim(string(content), " \t\n\v\f\r")
		if n, err := strconv.ParseUint(text, 10, 64); err != nil || n != uint64(pid) {
			t.Fatalf("parsePID(%q) = %d, but the digits read %d, %v", content, pid, n, err)
		}
	})
}

// TestPIDFileNamesSelf scans pid files naming this very process, as it
// is and wrapped around 2³² and 2⁶⁴, which a parser counting in a 32-bit
// int would read as this process again. It starts no process, so it runs
// under user-mode emulation of 32-bit systems too.
func TestPIDFileNamesSelf(t *testing.T) {
	ws, swarm := workspace(t)
	self := uint64(os.Getpid())
	tests := []struct {
		name    string
		content string
		want    State
	}{
		{"self", pidLine(os.Getpid()), Live},
		{"self-plus-2^32", strconv.FormatUint(1<<32+self, 10), BadPIDFile},
		{"self-plus-2^33", strconv.FormatUint(1<<33+self, 10), BadPIDFile},
		{"self-plus-2^64", new(big.Int).Add(new(big.Int).Lsh(big.NewInt(1), 64), new(big.Int).SetUint64(self)).String(), BadPIDFile},
	}
	for _, tc := range tests {
		addSlot(t, swarm, tc.name, tc.content)
	}
	got := states(mustScan(t, ws))
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got[tc.name] != tc.want {
				t.Errorf("Scan(ws) says %s for a pid file holding %q, want %s", got[tc.name], tc.content, tc.want)
			}
		})
	}
	if live, err := LiveSlots(ws); !slices.Equal(live, []Slot{{"self", os.Getpid()}}) || err != nil {
		t.Errorf("LiveSlots(ws) = %v, %v, want [{self %d}], nil", live, err, os.Getpid())
	}
}

func TestSymlinkedPIDFile(t *testing.T) {
	ws, swarm := workspace(t)
	live := startChild(t, "sleep").Process.Pid
	real := filepath.Join(tempDir(t), "pid")
	if err := os.WriteFile(real, []byte(pidLine(live)), 0o644); err != nil {
		t.Fatal(err)
	}
	dir := addSlot(t, swarm, "link", noPIDFile)
	link := filepath.Join(dir, PIDFile)
	if err := os.Symlink(real, link); err != nil {
		t.Skipf("cannot make a symlink here: %v", err)
	}
	if info, err := os.Lstat(link); err != nil || info.Mode()&fs.ModeSymlink == 0 {
		// Wine makes a Unix symlink to the Windows path, which its own
		// Lstat then cannot find.
		t.Skipf("symlinks here do not show as symlinks: Lstat = %v, %v", info, err)
	}
	statuses, err := Scan(ws)
	if err != nil || len(statuses) != 1 || statuses[0].State != BadPIDFile {
		t.Errorf("Scan(ws) = %+v, %v, want one slot in state %s", statuses, err, BadPIDFile)
	}
}
