// Package slotgc tells which worker slots of a swarm workspace are still
// alive, removes the ones that are not, and ends live workers on request.
// It promises never to call a slot dead while the process its pid file
// names may still be the worker that wrote it, never to remove a slot that
// is not dead at the moment of removal, never to remove anything on another
// mount or outside the swarm directory (but for the recovery entries it
// made, once their retention has passed), never to remove a slot some
// process is still working in (where the system lets that be seen), never
// to remove a worktree it was asked to recover, never to signal a process
// it cannot show to be the slot's leaf (where the system gives process
// handles), and never to signal pid 0, -1, 1 or the caller itself. Where it
// cannot establish a fact, it takes the answer that loses nothing and says
// why in the error. It uses the standard library only.
//
// # Layout
//
// A workspace keeps its state in a directory .bones, with one directory per
// slot under .bones/swarm:
//
//	<workspace>/.bones/swarm/<slot>/leaf.pid
//
// The environment decides where the state lives, as it does for the swarm
// CLI from its 0.11 release: when BONES_DIR is set and not empty, the
// state directory is that path (made absolute) instead of
// <workspace>/.bones, and the slots are under $BONES_DIR/swarm whatever
// workspace a call names. SwarmPath tells which swarm directory a call
// reads.
//
// The worker of a slot (its leaf) writes its own pid into leaf.pid, as
// decimal digits and a newline, after it starts; so the file's modification
// time is later than the leaf's start. Only real directories directly under
// swarm are slots: files and symlinks there are never followed or removed,
// and names starting with TrashPrefix belong to PruneDead.
//
// # Verdicts
//
// A slot without a usable pid file (see Scan) has no verdict: it may be
// half built or half cleaned, so it is neither reported nor removed. A
// usable pid file gets one of three verdicts:
//
//   - Gone (dead): no process has that pid, or it has exited and only its
//     zombie remains (Linux) or only handles to it remain (Windows).
//   - Reused (dead): a process has that pid but started more than 5 seconds
//     after the pid file was last written, so it cannot be the leaf, and
//     it does not use the slot (see below). The 5 seconds absorb coarse
//     file times and small clock slew.
//   - Live: any other process with that pid, including one owned by another
//     user and one whose start time cannot be read.
//
// The time rule compares two clocks' readings, and can be fooled. On Linux
// a process's start time is counted from boot on CLOCK_BOOTTIME and turned
// into wall time with the wall clock of now, so a wall clock stepped
// forward by more than 5 seconds while a leaf runs (an NTP step after
// boot, a VM or WSL2 resumed after its host slept) makes every live leaf
// look started after its pid file was written (psutil had the same fault:
// https://github.com/giampaolo/psutil/issues/2526). So on Linux, before a
// slot is called Reused, slotgc looks for evidence that needs no clock: a
// process whose working or root directory is in the slot, or that holds a
// file of the slot open or mapped (read from /proc without asking the
// slot's file system, for every thread where the main one has exited), is
// the slot's user, and the slot is Live; so is one whose files cannot be
// read for any reason but belonging to another user. That evidence cannot be read for another user's
// process without privilege, or where /proc hides other processes: there
// the time rule stands alone. Windows records a process's creation time in
// wall time when it is created, as it does file times, so a later step
// moves neither: it cannot be fooled so. macOS and the BSDs have no reuse
// rule at all.
//
// Pids name processes on one host and in one pid namespace: a pid file
// written inside a container says nothing about the host's processes, and
// the reverse. Run slotgc in the pid namespace the leaves run in. Where
// /proc was mounted for another pid namespace (unshare -p without a fresh
// /proc), /proc/<pid> describes some other process: on Linux each scan
// checks that /proc/self names the caller, and if it does not, /proc is not
// believed: a pid that kill(2) finds is Live, with no zombie or reuse
// verdict.
//
// # Pruning
//
// PruneDead removes only garbage. It locks each slot before it touches it
// (so concurrent calls never share one; a lock that fails for any reason
// but another holder keeps the slot, since nothing then tells whether
// another call works on it), checks it again, refuses a slot that holds a
// mount point or that a process still uses (keeping it whole at its name,
// with an error that says why), detaches it by an atomic rename to a
// TrashPrefix name, checks it once more, and removes the tree without
// following a symlink or crossing a mount, making the caller's own
// read-only directories usable as it goes. The pid file goes last, and
// only once everything else has gone, so a removal cut short leaves a tree
// that still tells it is garbage.
//
// A TrashPrefix entry that no running call holds is judged by the rules
// for slots, whatever its name says and whoever gave it: it is finished
// when its pid file names a dead process, or when it holds no file at all,
// only empty directories; anything else (a live pid, an unusable pid file,
// files without a pid file, like a half-built slot renamed by hand) stays,
// with an error. The file PruneDead makes to measure the swarm directory's
// clock (a TrashPrefix name too) is held locked while it exists, and one
// whose maker is gone is removed. How much of this each system allows is
// in Systems.
//
// # Grace period and recovery
//
// In the swarm CLI a slot's pid file names `bones swarm join`, which
// exits once the join is done, so after the hub went down every slot
// reads dead, and removing them would take worktrees holding uncommitted
// work. Prune therefore takes PruneOptions, which PruneDead reads from the
// environment (IdleEnv, SLOTGC_IDLE, and KeepEnv, SLOTGC_KEEP, each a Go
// duration string; unset or empty, PruneDead removes at once as it always
// has; a value that does not parse makes it remove nothing):
//
//   - Idle, a grace period: a dead slot holding any entry modified within
//     it is kept, reported as recently changed (ErrRecentlyChanged). The
//     modification times are looked at by a walk that stops at the first
//     recent entry, follows no symlink and crosses no mount; a slot whose
//     walk cannot finish (a directory it may not read) is kept, with an
//     error. Modification times are what it reads, so work copied in
//     with its old times kept (cp -a, rsync -a, tar x) reads as old; the
//     change time would see it, but reads as new on any tree whose times
//     were set back, which is how such trees are made for tests.
//   - Keep, recoverable removal: a dead slot's worktree, its directory
//     WorktreeDir ("wt") when it has one, is moved by a single rename into
//     the recovery directory, "recovery" in the state directory (see
//     RecoveryPath), as <slot>-<unix seconds>, and the rest of the slot is
//     removed. This is the swarm CLI's own convention (from its 0.7.3
//     release), so `bones apply --slot <slot>` finds the entry; its
//     modification time is set to the prune's, as the CLI picks a slot's
//     newest entry by that. Where the rename cannot be done (another file
//     system or mount, no permission) the slot is kept whole with an error
//     wrapping ErrNotRecoverable: a worktree is never copied, and never
//     removed instead. Recoveries lists the entries and Restore moves one
//     back.
//
// Which entries slotgc made is recorded beside them, never in them: a
// small file per entry in <recovery>/.slotgc, holding when the prune made
// the entry and the identity of the worktree directory (device, inode and,
// on Linux where the file system keeps it, birth time), which a rename
// keeps. A later prune with Keep removes an entry once Keep has passed
// since the prune that made it, whatever the age of the files in it, and
// only if the entry is still the directory recorded; an entry without a
// matching record, such as the CLI's own, is never touched. Where no birth
// time tells a directory from one made later under the same inode number
// (a file system that keeps none; Windows, where only the name is known),
// the entry's own modification time must still be the one the prune gave
// it, so an entry whose top directory changed since is not expired; and
// a record whose entry is gone, or is another directory, is dropped by the
// next prune with Keep, however young. Records count only in a records
// directory this user or root made and no one else may write in: in a
// shared recovery directory another user could otherwise vouch for any
// entry (on Windows, which the standard library shows no owner of, the
// records directory inherits the recovery directory's access list). An
// entry is expired by the rules a slot is removed by: one holding a mount
// point, or used by a process, stays, with an error (on Linux; see
// Systems). The records directory's name holds no "-", so no <slot>-*
// lookup matches it.
//
// The steps are ordered so that a crash loses no worktree and leaves
// nothing that cannot be judged. A slot to recover is detached, as any
// slot is, but under a TrashPrefix name that says its worktree is to be
// recovered and names the slot; a later PruneDead, whatever its options,
// recovers such a leftover's worktree before it removes the rest, and
// keeps it where it cannot. The record is written (and held locked) before
// the rename and dropped if the rename fails, so an entry slotgc made is
// never unrecorded; a record left without its entry is dropped by a later
// expiry. An entry to expire is locked, checked against its record and
// renamed into the records directory before it is removed, so a removal
// cut short never leaves half an entry for bones apply or Restore to take,
// and a later expiry finishes it.
//
// # Systems
//
// The package builds for Unix and Windows. What each system lets it see
// and do differs; this is the one place that says how.
//
// Linux:
//
//   - Scans: a pid is asked after with kill(2), then /proc/<pid>/stat. A
//     zombie is Gone, except a thread-group leader that exited while its
//     other threads run. Start times count from boot on CLOCK_BOOTTIME and
//     are made wall times with the wall clock of now, so a clock step can
//     make them look later; that is why the clock-free evidence of use is
//     asked for before a slot is called Reused (see Verdicts). Where
//     /proc/self does not name the caller, /proc is not believed (see
//     Verdicts), and Alive, too, takes any pid kill(2) finds as alive.
//   - PruneDead: every change goes through the descriptor of the swarm
//     directory opened first (renameat2, unlinkat, openat2 relative to
//     it), so a swarm directory swapped for a symlink steers nothing. Mount
//     points come from /proc/self/mountinfo, and the removal walk refuses
//     to cross a mount (openat2's RESOLVE_NO_XDEV; before Linux 5.6, a
//     change of device or of the mount id in /proc/self/fdinfo; without
//     /proc it refuses to descend at all). Mounts made in other mount
//     namespaces (a container's) are found in their own tables, by where
//     they sit on the swarm's file system: removing a directory another
//     namespace mounts on would detach that mount there with all it
//     shows. The processes using a slot come from one pass over /proc per
//     call, and once the slot is detached, from a pass of its own, which
//     puts the slot back if a process began using it meanwhile. That pass
//     is made twice, before and after a walk of the tree that records
//     every inode in it (slots detached one after another share the pass
//     between their walks), and a process either pass saw holding one of
//     them uses the slot: so a process that, while the look is made,
//     moves within the slot (`cd .. && rm -rf build`) or makes a file in
//     it, holds that open and leaves, is found; one that does both, a
//     step on each side of the walk, is not. The walk fails, keeping the
//     slot, for a directory changed while it was read (by its
//     modification time, which Linux sets to the nanosecond once read
//     from 6.13 on and to the clock tick before), since a subdirectory
//     renamed within it meanwhile may be read under neither name; a
//     subdirectory moved, while the walk is on, from a directory not yet
//     read to one already read goes unseen, and so do the files under
//     it, though the process holding one never moves. Another
//     user's processes are seen only by root
//     (https://man7.org/linux/man-pages/man5/proc_pid_fd.5.html). A
//     process that opens a directory of a slot and later works through
//     that descriptor alone is not counted: every pruner holds the trees
//     it walks open so. Nor is a file a process holds only as a file
//     registered with an io_uring, its descriptor closed, or a descriptor
//     in flight, sent over a unix socket and not yet received: /proc
//     lists them in no fd directory.
//     Users answers from the same pass. A process counts as using a slot
//     through its working or root directory, its open files and its
//     mappings; a thread's own working directory or file table counts
//     where the main thread has exited, not where a thread unshared them
//     while the main thread lives. Whatever cannot be told keeps the
//     slot: a directory of it the walk cannot read, a process whose files
//     cannot be read for any reason but belonging to another user (or to
//     a sandbox the caller runs in), a /proc that shows another pid
//     namespace. This user's processes that /proc will not open (not
//     dumpable, as ssh-agent and gpg-agent make themselves, or running a
//     set-user-ID program) are the one exception: keeping every slot
//     while an agent runs would stop collection for good on most
//     desktops, and such daemons work in /, not in slots; PruneDead
//     removes dead slots all the same and names those processes in its
//     error, wrapping ErrUninspected. Root sees them all.
//   - What can block, and for how long: no step of the pass over /proc
//     asks a file system (an open file is told by its fdinfo, a working
//     or root directory by the fdinfo of an O_PATH descriptor of it, a
//     mapping by PROCMAP_QUERY or its maps line, a mount by the mount
//     tables; only where fdinfo has no ino line is a file on the swarm's
//     own file system stat'ed, with AT_STATX_DONT_SYNC), and a pid file
//     or a tree is never opened across a mount, so a FUSE daemon that
//     stopped or an NFS server that is gone hangs no call on a swarm
//     elsewhere, whoever has files there. The pass may still wait on
//     another process's memory-map lock (its maps) or a driver's lock (a
//     device's fdinfo): it is given 10 seconds, past which every slot of
//     the call is kept, with an error naming the pid being read. The
//     swarm directory's own file system is asked throughout: if it stops
//     answering, so does every call on that swarm, unbounded, as with
//     any file tool. The locks that keep PruneDead calls apart are
//     flock(2) locks, which Linux keeps for a directory itself even on
//     NFS and FUSE: they keep apart the calls of one host only, so two
//     hosts must not prune one shared swarm directory at once.
//   - Kill and KillSlot signal through one pidfd opened at the start and
//     wake on it the moment the process exits. KillSlot reads the start
//     time and the owner of the process behind the pidfd from /proc, and
//     signals only a process that started before its pid file was written
//     and runs as the file's owner, or one that uses the slot: a pid file
//     another user planted, naming a process of yours, gets nothing
//     signalled. Where it cannot read them (a foreign /proc, hidepid, a
//     process gone meanwhile) it signals nothing, and its error wraps
//     ErrUnidentified. Out of file descriptors
//     they wait up to 2 seconds for one, then give up rather than signal
//     the bare pid. Where pidfd_open is unavailable (before Linux 5.3, or
//     a sandbox that forbids it) they signal the pid with kill(2) and poll
//     with a backoff starting at 100µs, and a zombie is gone only once
//     reaped.
//   - A pid file is opened with openat2, refusing to cross a mount or
//     follow a symlink on the way, so a slot that is itself a mount point
//     (of a stalled FUSE or NFS file system, say) is never looked into: it
//     reads as an unusable pid file, never collected. Before Linux 5.6 (no
//     openat2) the open crosses the mount.
//   - Before Linux 3.15, or on a file system that refuses
//     RENAME_NOREPLACE, a slot restored after it came back to life could
//     replace an empty directory made under its name in the moment
//     between a check and the rename; so could a worktree moved into the
//     recovery directory, there.
//   - The recovery directory is opened through the state directory's
//     path and then worked on by its descriptor, as the swarm directory
//     is. Bytes are allocated blocks (st_blocks × 512), each file with
//     several links once, as du counts them. A recovery entry's identity
//     includes its birth time where statx gives one (Linux 4.11 and a file
//     system that keeps it); elsewhere its modification time stands in.
//     The walks that measure a tree and look for recent changes describe
//     each entry with statx answered from the kernel's cache
//     (AT_STATX_DONT_SYNC, no automount), so a stalled FUSE or NFS mount
//     inside a slot or an entry is never asked, and never counted. An
//     expiring entry is guarded as a slot is (mount table and the pass
//     over /proc), and only on the swarm directory's file system, the one
//     the pass looks at; an entry elsewhere stays, with an error.
//
// macOS and the BSDs: the standard library offers no cheap view of a
// process's state or start time, nor of the files it uses. A zombie counts
// as alive until reaped, a reused pid goes unnoticed (the slot stays Live),
// there is no guard against processes that use a slot (Users finds none),
// and Kill and KillSlot signal the bare pid with kill(2) and poll, so a pid
// recycled meanwhile could be signalled; with no start time, KillSlot
// cannot refuse a stranger either. Every step of PruneDead below the
// swarm directory resolves its path again, so a swarm directory swapped for
// a symlink in the middle of a call can steer it; a mount point is told by
// a change of device; a restore can replace an empty directory made under
// the slot's name. The recovery directory is worked on by path alike; a
// recovery entry is known by its device, inode and modification time, and
// is expired with no guard against processes that use it.
//
// Windows: liveness is asked of a process handle (OpenProcess, then
// WaitForSingleObject with no wait), since os.Process.Signal supports only
// os.Kill there; a process that has exited is Gone even while handles to
// it remain, and one that cannot even be opened for querying counts as
// alive. Start times are process creation times, recorded by the same wall
// clock as file times, so a later clock step moves neither. Windows has
// no SIGTERM: Kill terminates the process at once through one handle and
// waits on it; KillSlot reads the creation time through that handle and,
// where it cannot, signals nothing (ErrUnidentified). A pid file is opened with FILE_FLAG_OPEN_REPARSE_POINT, so
// a symlink or junction is never followed. A workspace whose .bones is a
// file reads as one without a swarm directory, as Windows reports such a
// path as not found. PruneDead resolves paths below the swarm directory
// again for each step, as on macOS, and a slot in use is told only by its
// rename failing: a directory some process holds open (as its working
// directory, or a file in it opened without FILE_SHARE_DELETE) cannot be
// renamed (tried again for 200ms, as a scan holds a pid file open for a
// moment), so such a slot fails with ErrInUse and stays whole; a refusal
// is called in use only where the rights a rename needs are granted
// (DELETE on the slot, adding a subdirectory to the swarm directory),
// else it is the permission error it is. Junctions
// and symlinks in a tree are removed as links, never followed. PruneDead
// calls on one swarm directory take turns, holding a file there,
// TrashPrefix+"lock", open with no sharing: Windows has no lock on a
// directory that dies with its holder; Restore takes its turn alike. The
// recovery directory is worked on by path; Bytes are file sizes (the
// standard library gives no allocation size), a hard link counted at each
// name; a recovery entry is known by its name and modification time, as
// the standard library keeps a file's volume and index to itself; and an
// entry in use is told only by its removal failing. A recovery directory
// on another volume shows only when the rename fails, after the slot was
// detached; the slot is then renamed back.
package slotgc
