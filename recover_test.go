package slotgc

import (
	"bytes"
	"errors"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

const (
	// longAgo is how far back a test dates a tree that no grace period
	// keeps.
	longAgo = 72 * time.Hour
	// gracePeriod is the grace period the tests prune with.
	gracePeriod = time.Hour
	// retention is the retention the tests prune with when they mean to
	// keep what they recover.
	retention = 24 * time.Hour
)

// worktreeFiles is the content addWorktree puts in a slot's worktree:
// some text, nested directories, and a file large enough that its blocks
// dominate the tree's size.
var worktreeFiles = map[string]string{
	"README":                 "uncommitted notes\n",
	"src/main.go":            "package main\n\nfunc main() {}\n",
	"src/deep/er/still/x.go": "package still\n",
	"big.bin":                strings.Repeat("0123456789abcdef", 64<<10), // 1 MiB
}

// addWorktree fills the worktree of the slot directory slotDir with
// worktreeFiles and an empty directory, and returns the worktree's path.
func addWorktree(t *testing.T, slotDir string) string {
	t.Helper()
	wt := filepath.Join(slotDir, WorktreeDir)
	mkdirs(t, filepath.Join(wt, "empty"))
	for name, content := range worktreeFiles {
		mkdirs(t, filepath.Dir(filepath.Join(wt, name)))
		writeFile(t, filepath.Join(wt, name), content)
	}
	return wt
}

// readTree returns the regular files under dir by slash-separated
// relative path, with their contents.
func readTree(t *testing.T, dir string) map[string]string {
	t.Helper()
	files := make(map[string]string)
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		content, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, path)
		files[filepath.ToSlash(rel)] = string(content)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// backdateTree sets the times of every entry under dir, dir included, to
// age ago, deepest first, so that no directory's time moves after it is
// set. Symlinks are left as they are: os.Chtimes follows them.
func backdateTree(t *testing.T, dir string, age time.Duration) {
	t.Helper()
	var paths []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err == nil && d.Type()&fs.ModeSymlink == 0 {
			paths = append(paths, path)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	then := time.Now().Add(-age)
	for _, p := range slices.Backward(paths) {
		if err := os.Chtimes(p, then, then); err != nil {
			t.Fatal(err)
		}
	}
}

// touch sets the times of path to age ago.
func touch(t *testing.T, path string, age time.Duration) {
	t.Helper()
	then := time.Now().Add(-age)
	if err := os.Chtimes(path, then, then); err != nil {
		t.Fatal(err)
	}
}

// outcomes returns a report's outcomes by slot.
func outcomes(r PruneReport) map[string]SlotOutcome {
	m := make(map[string]SlotOutcome, len(r.Slots))
	for _, o := range r.Slots {
		m[o.Slot] = o
	}
	return m
}

func exists(t *testing.T, path string) bool {
	t.Helper()
	_, err := os.Lstat(path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	return err == nil
}

// failedSlots returns the Slot of every *SlotError err joins.
func failedSlots(err error) []string {
	var slots []string
	if joined, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range joined.Unwrap() {
			if se, ok := errors.AsType[*SlotError](e); ok {
				slots = append(slots, se.Slot)
			}
		}
	}
	return slots
}

// TestPruneRecoverable prunes with recoverable removal: a dead slot's
// worktree goes whole into the recovery directory, named by the CLI's
// convention and newest by its time, the rest of the slot goes, and a
// slot without a worktree is removed. The entry is kept for the retention
// counted from the prune, whatever the age of the files in it, and then
// removed by a later prune, while an entry the CLI made is never touched.
func TestPruneRecoverable(t *testing.T) {
	ws, swarm := workspace(t)
	dead := pidLine(deadPID(t))
	work := addSlot(t, swarm, "work", dead)
	addWorktree(t, work)
	backdateTree(t, work, longAgo)
	addSlot(t, swarm, "bare", dead)
	live := addSlot(t, swarm, "live", pidLine(os.Getpid()))
	addWorktree(t, live)
	recovery := filepath.Join(ws, RecoveryDir)
	// The CLI's own copy of an older close of the same slot.
	cliEntry := filepath.Join(recovery, recoveryEntryName("work", time.Now().Add(-10*24*time.Hour).Unix()))
	mkdirs(t, cliEntry)
	writeFile(t, filepath.Join(cliEntry, "README"), "the CLI's copy\n")
	backdateTree(t, cliEntry, 10*24*time.Hour)

	before := time.Now().Truncate(time.Second)
	report, err := Prune(ws, PruneOptions{Keep: retention})
	after := time.Now()
	if err != nil {
		t.Fatalf("Prune(ws, Keep %v) = %v, want no error", retention, err)
	}
	if got := slices.Collect(maps.Keys(outcomes(report))); len(got) != 2 {
		t.Errorf("Prune(ws, Keep %v) reported %v, want work and bare, the dead slots", retention, got)
	}
	got := outcomes(report)["work"]
	slot, unix, ok := parseRecoveryName(filepath.Base(got.Recovery))
	if got.Action != Recovered || filepath.Dir(got.Recovery) != recovery || !ok || slot != "work" || unix < before.Unix() || unix > after.Unix() {
		t.Fatalf("Prune(ws, Keep %v) work = %+v, want it recovered to %s/work-<unix seconds of the prune>", retention, got, recovery)
	}
	if bare := outcomes(report)["bare"]; bare.Action != Removed || bare.Recovery != "" {
		t.Errorf("Prune(ws, Keep %v) bare = %+v, want removed: it has no worktree", retention, bare)
	}
	if files := readTree(t, got.Recovery); !maps.Equal(files, worktreeFiles) {
		t.Errorf("recovery entry holds %v, want the worktree's files", slices.Sorted(maps.Keys(files)))
	}
	if exists(t, work) || exists(t, filepath.Join(swarm, "bare")) || !exists(t, live) {
		t.Errorf("after Prune(ws, Keep), work there %v, bare there %v, live there %v, want only live", exists(t, work), exists(t, filepath.Join(swarm, "bare")), exists(t, live))
	}
	if leftovers, err := Detached(ws); len(leftovers) != 0 || err != nil {
		t.Errorf("Detached(ws) = %v, %v, want none", leftovers, err)
	}
	info, err := os.Stat(got.Recovery)
	if err != nil || info.ModTime().Before(before) {
		t.Errorf("recovery entry time = %v, %v, want the prune's, %v or later: bones apply picks the newest", info.ModTime(), err, before)
	}

	entries, err := Recoveries(ws)
	if err != nil || len(entries) != 2 {
		t.Fatalf("Recoveries(ws) = %+v, %v, want the CLI's entry and slotgc's", entries, err)
	}
	byName := map[string]Recovery{}
	for _, e := range entries {
		byName[e.Name] = e
	}
	mine, theirs := byName[filepath.Base(got.Recovery)], byName[filepath.Base(cliEntry)]
	if !mine.BySlotgc || mine.Slot != "work" || mine.Made.Before(before) || mine.Made.After(after) {
		t.Errorf("Recoveries(ws) slotgc's entry = %+v, want made by slotgc for work at the prune", mine)
	}
	if theirs.BySlotgc || theirs.Slot != "work" || time.Since(theirs.Made) < 9*24*time.Hour {
		t.Errorf("Recoveries(ws) CLI's entry = %+v, want not slotgc's, made 10 days ago by its name", theirs)
	}

	// The files in the entry are three days old and the retention one
	// day: the entry stays, as the prune that made it was just now.
	report, err = Prune(ws, PruneOptions{Keep: retention})
	if err != nil || len(report.Expired) != 0 || !exists(t, got.Recovery) {
		t.Fatalf("second Prune(ws, Keep %v) = expired %v, %v, entry there %v, want it kept", retention, report.Expired, err, exists(t, got.Recovery))
	}
	// A retention of a nanosecond has passed for slotgc's entry, and ten
	// days for the CLI's, which is still never touched.
	report, err = Prune(ws, PruneOptions{Keep: time.Nanosecond})
	if err != nil || len(report.Expired) != 1 || report.Expired[0].Name != mine.Name || report.Expired[0].Bytes != mine.Bytes {
		t.Fatalf("Prune(ws, Keep 1ns) = expired %+v, %v, want %s, %d bytes", report.Expired, err, mine.Name, mine.Bytes)
	}
	if exists(t, got.Recovery) || !exists(t, cliEntry) {
		t.Errorf("after expiry, slotgc's entry there %v, the CLI's %v, want only the CLI's", exists(t, got.Recovery), exists(t, cliEntry))
	}
	if names, _ := os.ReadDir(filepath.Join(recovery, recordDirName)); len(names) != 0 {
		t.Errorf("records left after expiry: %v", names)
	}
}

// TestExpiryTouchesOnlyItsOwn: an entry whose record names another
// directory (slotgc's entry removed by hand and another made under its
// name) is not slotgc's, and stays.
func TestExpiryTouchesOnlyItsOwn(t *testing.T) {
	if identityOf := (record{}).id; identityOf != (fileIdentity{}) {
		t.Fatal("setup: a zero record has an identity")
	}
	ws, swarm := workspace(t)
	addWorktree(t, addSlot(t, swarm, "work", pidLine(deadPID(t))))
	report, err := Prune(ws, PruneOptions{Keep: retention})
	entry := outcomes(report)["work"].Recovery
	if err != nil || entry == "" {
		t.Fatalf("Prune(ws, Keep) = %+v, %v, want work recovered", report.Slots, err)
	}
	content, err := os.ReadFile(filepath.Join(filepath.Dir(entry), recordDirName, filepath.Base(entry)))
	if err != nil {
		t.Fatal(err)
	}
	if rec, err := parseRecord(content); err != nil || rec.id == (fileIdentity{}) {
		t.Skipf("records here name entries by name alone (%+v, %v): nothing tells a replaced entry", rec, err)
	}
	// The replacement is made while the entry is there, so that it cannot
	// get the entry's inode number again.
	replacement := entry + ".new"
	mkdirs(t, replacement)
	writeFile(t, filepath.Join(replacement, "README"), "made by hand under slotgc's name\n")
	if err := os.RemoveAll(entry); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(replacement, entry); err != nil {
		t.Fatal(err)
	}

	report, err = Prune(ws, PruneOptions{Keep: time.Nanosecond})
	if err != nil || len(report.Expired) != 0 || !exists(t, filepath.Join(entry, "README")) {
		t.Errorf("Prune(ws, Keep 1ns) = expired %+v, %v, README there %v, want the replaced entry kept", report.Expired, err, exists(t, filepath.Join(entry, "README")))
	}
	if entries, err := Recoveries(ws); err != nil || len(entries) != 1 || entries[0].BySlotgc {
		t.Errorf("Recoveries(ws) = %+v, %v, want the entry, no longer slotgc's", entries, err)
	}
}

// TestRestoreRoundTrip recovers a slot's worktree, restores it as a half-built slot
// that no prune takes, refuses to restore over a slot that is there, and
// picks a slot's newest entry by time, as bones apply does.
func TestRestoreRoundTrip(t *testing.T) {
	ws, swarm := workspace(t)
	dead := pidLine(deadPID(t))
	work := addSlot(t, swarm, "work", dead)
	addWorktree(t, work)
	report, err := Prune(ws, PruneOptions{Keep: retention})
	entry := outcomes(report)["work"].Recovery
	if err != nil || entry == "" {
		t.Fatalf("Prune(ws, Keep) = %+v, %v, want work recovered", report.Slots, err)
	}

	got, err := Restore(ws, "work")
	if err != nil || got.Name != filepath.Base(entry) || !got.BySlotgc {
		t.Fatalf("Restore(ws, work) = %+v, %v, want %s", got, err, filepath.Base(entry))
	}
	if files := readTree(t, filepath.Join(work, WorktreeDir)); !maps.Equal(files, worktreeFiles) {
		t.Errorf("restored worktree holds %v, want the worktree's files", slices.Sorted(maps.Keys(files)))
	}
	if exists(t, filepath.Join(work, PIDFile)) || exists(t, entry) || exists(t, filepath.Join(filepath.Dir(entry), recordDirName, got.Name)) {
		t.Errorf("after Restore, pid file there %v, entry there %v, its record there %v, want none",
			exists(t, filepath.Join(work, PIDFile)), exists(t, entry), exists(t, filepath.Join(filepath.Dir(entry), recordDirName, got.Name)))
	}
	if removed, err := PruneDead(ws); len(removed) != 0 || err != nil || !exists(t, work) {
		t.Errorf("PruneDead(ws) = %v, %v, want the restored, half-built slot kept", removed, err)
	}
	if _, err := Restore(ws, "work"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Restore(ws, work) with no entry left = %v, want fs.ErrNotExist", err)
	}

	// Two entries of the CLI's: the one with the smaller number in its
	// name is the newer by time, and bones apply picks by time.
	recovery := RecoveryPath(ws)
	older, newer := filepath.Join(recovery, "a-2000000000"), filepath.Join(recovery, "a-1000000000")
	for path, age := range map[string]time.Duration{older: 48 * time.Hour, newer: time.Hour} {
		mkdirs(t, path)
		writeFile(t, filepath.Join(path, "which"), filepath.Base(path))
		backdateTree(t, path, age)
	}
	// A slot is there: nothing moves.
	addSlot(t, swarm, "a", noPIDFile)
	if _, err := Restore(ws, "a"); !errors.Is(err, fs.ErrExist) || !exists(t, newer) {
		t.Errorf("Restore(ws, a) over a slot = %v, entry there %v, want fs.ErrExist and the entry kept", err, exists(t, newer))
	}
	if err := os.Remove(filepath.Join(swarm, "a")); err != nil {
		t.Fatal(err)
	}
	got, err = Restore(ws, "a")
	if err != nil || got.Name != "a-1000000000" || got.BySlotgc {
		t.Fatalf("Restore(ws, a) = %+v, %v, want a-1000000000, the newer by time", got, err)
	}
	if which, err := os.ReadFile(filepath.Join(swarm, "a", WorktreeDir, "which")); string(which) != "a-1000000000" {
		t.Errorf("restored worktree of a holds %q, %v, want a-1000000000's", which, err)
	}

	for _, bad := range []string{"", ".", "..", "x/y", TrashPrefix + "x"} {
		if _, err := Restore(ws, bad); err == nil {
			t.Errorf("Restore(ws, %q) = nil error, want a refusal", bad)
		}
	}
}

// TestRecoverLeftover: a pruner that crashed after it detached a slot to
// recover, and before it moved the worktree, leaves a tree whose name says
// so; the next PruneDead, with no options at all, recovers the worktree
// before it removes the rest.
func TestRecoverLeftover(t *testing.T) {
	ws, swarm := workspace(t)
	name := recoverTrashName("work")
	leftover := addSlot(t, swarm, name, pidLine(deadPID(t)))
	addWorktree(t, leftover)
	if slot, ok := recoverSlotOf(name); !ok || slot != "work" {
		t.Fatalf("recoverSlotOf(%q) = %q, %v, want work", name, slot, ok)
	}

	report, err := Prune(ws, PruneOptions{})
	if err != nil || len(report.Detached) != 1 || report.Detached[0].Action != Recovered {
		t.Fatalf("Prune(ws) = detached %+v, %v, want the leftover recovered", report.Detached, err)
	}
	entry := report.Detached[0].Recovery
	if slot, _, _ := parseRecoveryName(filepath.Base(entry)); slot != "work" || exists(t, leftover) {
		t.Errorf("Prune(ws) recovered the leftover to %s, leftover there %v, want an entry of work and no leftover", entry, exists(t, leftover))
	}
	if files := readTree(t, entry); !maps.Equal(files, worktreeFiles) {
		t.Errorf("recovered leftover holds %v, want the worktree's files", slices.Sorted(maps.Keys(files)))
	}
}

// TestRecoveryRecord: records read back what was written, and a record
// cut short or of another format is no record.
func TestRecoveryRecord(t *testing.T) {
	rec := record{made: time.Unix(1764700000, 123456789), id: fileIdentity{dev: 2049, ino: 1 << 40, birth: 1764600000987654321}}
	got, err := parseRecord(rec.encode())
	if err != nil || !got.made.Equal(rec.made) || got.id != rec.id {
		t.Errorf("parseRecord(encode(%+v)) = %+v, %v", rec, got, err)
	}
	for _, bad := range []string{"", recordMagic + "\n", "made 1\ndev 2\nino 3\n", string(rec.encode()[:len(rec.encode())-4])} {
		if _, err := parseRecord([]byte(bad)); !errors.Is(err, errBadRecord) {
			t.Errorf("parseRecord(%q) = %v, want errBadRecord", bad, err)
		}
	}
	if !bytes.HasPrefix(rec.encode(), []byte(recordMagic)) {
		t.Errorf("encode() = %q, want it to start with %q", rec.encode(), recordMagic)
	}
}

func TestParseRecoveryName(t *testing.T) {
	tests := []struct {
		name, slot string
		unix       int64
		ok         bool
	}{
		{"work-1764700000", "work", 1764700000, true},
		{"a-b-1764700000", "a-b", 1764700000, true},
		{"work-", "", 0, false},
		{"-1764700000", "", 0, false},
		{"work", "", 0, false},
		{"work-17647x", "", 0, false},
		{"work-+1", "", 0, false},
		{"work-99999999999999999999", "", 0, false},
	}
	for _, tc := range tests {
		slot, unix, ok := parseRecoveryName(tc.name)
		if slot != tc.slot || unix != tc.unix || ok != tc.ok {
			t.Errorf("parseRecoveryName(%q) = %q, %d, %v, want %q, %d, %v", tc.name, slot, unix, ok, tc.slot, tc.unix, tc.ok)
		}
	}
}

// TestPruneRecoversManyAtOnce recovers several slots in one call, whose
// trees may be taken side by side: each worktree arrives whole under its
// own entry, and Progress counts the slots one call at a time.
func TestPruneRecoversManyAtOnce(t *testing.T) {
	const slots = 8
	ws, swarm := workspace(t)
	dead := pidLine(deadPID(t))
	for i := range slots {
		addWorktree(t, addSlot(t, swarm, "s"+strconv.Itoa(i), dead))
	}
	var counted []int
	report, err := Prune(ws, PruneOptions{Keep: retention, Progress: func(done, total int, _ SlotOutcome) {
		if total != slots {
			t.Errorf("Progress total = %d, want %d", total, slots)
		}
		counted = append(counted, done)
	}})
	if err != nil || len(report.Slots) != slots {
		t.Fatalf("Prune(ws, Keep) = %d outcomes, %v, want %d, nil", len(report.Slots), err, slots)
	}
	entries := map[string]bool{}
	for _, o := range report.Slots {
		if o.Action != Recovered || entries[o.Recovery] {
			t.Errorf("Prune(ws, Keep) %s = %+v, want recovered to an entry of its own", o.Slot, o)
			continue
		}
		entries[o.Recovery] = true
		if files := readTree(t, o.Recovery); !maps.Equal(files, worktreeFiles) {
			t.Errorf("entry of %s holds %v, want the worktree's files", o.Slot, slices.Sorted(maps.Keys(files)))
		}
	}
	if want := []int{1, 2, 3, 4, 5, 6, 7, 8}; !slices.Equal(counted, want) {
		t.Errorf("Progress counted %v, want %v", counted, want)
	}
}
