// SPDX-License-Identifier: GPL-2.0
// ssm-companion exec capture: fork/exec/exit of Session Manager process trees.
//
// Kernel-side filter: `tracked` holds the tgids of every process descending (by fork, as it
// happens) from an exec of `ssm-session-worker`. Only their events are emitted, unless
// config.scope_all is set. One ring buffer, `events`, carries all three kinds, so userspace
// reads them in the order they were reserved: the fork tracepoint runs in the parent before
// the child is first woken, so a child's fork record always precedes its exec and exit.
//
// Records (native endian, 4-byte aligned; every one starts with a u32 kind):
//   FORK (1) 12 B: u32 kind, u32 parent_tgid, u32 child_tgid
//   EXEC (2) 352 B + argv_len: u32 kind, pid (tgid), ppid (real_parent tgid), uid, euid,
//            flags (1 = argv truncated at ARGV_MAX, 2 = argv unreadable), argv_len, pad;
//            char tty[64] at 32 (tty->name, NUL-terminated, "" without a tty; a pty is "ptsN"),
//            char filename[256] at 96 (bprm->filename, NUL-terminated),
//            argv bytes at 352 (mm->arg_start.., NUL-separated, argv_len bytes)
//   EXIT (3) 12 B: u32 kind, u32 tgid, i32 wait status (task->exit_code)
// `drops` slot 0 counts records that could not be emitted (ring full) and children that could
// not be added to a full `tracked` map.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>

typedef __u8 u8;
typedef __u32 u32;
typedef __u64 u64;

#define ARGV_MAX 4096
#define KIND_FORK 1
#define KIND_EXEC 2
#define KIND_EXIT 3
#define ARGV_TRUNCATED 1
#define ARGV_UNREAD 2

// CO-RE stubs: only the fields used; offsets are relocated against the kernel's BTF at load.
typedef struct { int counter; } __attribute__((preserve_access_index)) atomic_t;
typedef struct { unsigned int val; } __attribute__((preserve_access_index)) kuid_t;
struct cred { kuid_t uid; kuid_t euid; } __attribute__((preserve_access_index));
struct tty_struct { char name[64]; } __attribute__((preserve_access_index));
struct signal_struct { atomic_t live; struct tty_struct *tty; } __attribute__((preserve_access_index));
struct mm_struct { unsigned long arg_start; unsigned long arg_end; } __attribute__((preserve_access_index));
struct linux_binprm { const char *filename; } __attribute__((preserve_access_index));
struct task_struct {
	int pid;
	int tgid;
	int exit_code;
	struct task_struct *real_parent;
	struct mm_struct *mm;
	struct signal_struct *signal;
	const struct cred *cred;
} __attribute__((preserve_access_index));

struct fork_rec { u32 kind, parent, child; };
struct exit_rec { u32 kind, pid; int status; };
struct exec_rec {
	u32 kind, pid, ppid, uid, euid, flags, argv_len, pad;
	char tty[64];
	char filename[256];
	char argv[ARGV_MAX];
};
#define EXEC_HEAD (sizeof(struct exec_rec) - ARGV_MAX)

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4 << 20);
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, u32);
	__type(value, u8);
} tracked SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, u32);
	__type(value, u32); // scope_all: 0 = session trees only, 1 = every process
} config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, u32);
	__type(value, u64);
} drops SEC(".maps");

// An exec record is too big for the 512-byte stack: build it here, send argv_len bytes of it.
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, u32);
	__type(value, struct exec_rec);
} scratch SEC(".maps");

static __always_inline void count_drop(void)
{
	u32 zero = 0;
	u64 *n = bpf_map_lookup_elem(&drops, &zero);
	if (n)
		__sync_fetch_and_add(n, 1);
}

static __always_inline int scope_all(void)
{
	u32 zero = 0;
	u32 *v = bpf_map_lookup_elem(&config, &zero);
	return v && *v;
}

static __always_inline void track(u32 tgid)
{
	u8 one = 1;
	if (bpf_map_update_elem(&tracked, &tgid, &one, BPF_ANY))
		count_drop();
}

static __always_inline void emit(void *rec, u64 size)
{
	if (bpf_ringbuf_output(&events, rec, size, 0))
		count_drop();
}

// Whether the program is ssm-session-worker: comm (15 chars of the basename) first, then the
// whole basename at the end of the `len`-byte (NUL included) filename.
static __always_inline int is_worker(const char *filename, long len)
{
#define WORKER "ssm-session-worker"
	const int n = sizeof(WORKER) - 1;
	char comm[16];

	if (bpf_get_current_comm(comm, sizeof(comm)))
		return 0;
#pragma unroll
	for (int i = 0; i < 15; i++) // unrolled: the literal's bytes become immediates
		if (comm[i] != WORKER[i])
			return 0;
	if (len < n + 1 || len > 256)
		return 0;
	long start = len - 1 - n;
	if (start > 0 && filename[(start - 1) & 255] != '/')
		return 0;
#pragma unroll
	for (int i = 0; i < n; i++)
		if (filename[(start + i) & 255] != WORKER[i])
			return 0;
	return 1;
}

SEC("tp_btf/sched_process_exec")
int BPF_PROG(handle_exec, struct task_struct *task, int old_pid, struct linux_binprm *bprm)
{
	u32 zero = 0;
	struct exec_rec *r = bpf_map_lookup_elem(&scratch, &zero);
	if (!r)
		return 0;
	u32 tgid = BPF_CORE_READ(task, tgid);
	long len = bpf_probe_read_kernel_str(r->filename, sizeof(r->filename), BPF_CORE_READ(bprm, filename));
	if (len < 0)
		r->filename[0] = 0;
	if (!bpf_map_lookup_elem(&tracked, &tgid)) {
		if (is_worker(r->filename, len))
			track(tgid);
		else if (!scope_all())
			return 0;
	}

	r->kind = KIND_EXEC;
	r->pid = tgid;
	r->ppid = BPF_CORE_READ(task, real_parent, tgid);
	r->uid = BPF_CORE_READ(task, cred, uid.val);
	r->euid = BPF_CORE_READ(task, cred, euid.val);
	r->flags = 0;
	r->pad = 0;
	r->tty[0] = 0;
	struct tty_struct *tty = BPF_CORE_READ(task, signal, tty);
	if (tty && bpf_probe_read_kernel_str(r->tty, sizeof(r->tty), &tty->name) < 0)
		r->tty[0] = 0;

	unsigned long start = BPF_CORE_READ(task, mm, arg_start);
	unsigned long end = BPF_CORE_READ(task, mm, arg_end);
	u64 n = end > start ? end - start : 0;
	if (n > ARGV_MAX) {
		n = ARGV_MAX;
		r->flags |= ARGV_TRUNCATED;
	}
	if (n && bpf_probe_read_user(r->argv, n, (const void *)start)) {
		n = 0;
		r->flags |= ARGV_UNREAD;
	}
	r->argv_len = n;
	emit(r, EXEC_HEAD + n);
	return 0;
}

SEC("tp_btf/sched_process_fork")
int BPF_PROG(handle_fork, struct task_struct *parent, struct task_struct *child)
{
	u32 pid = BPF_CORE_READ(child, pid);
	u32 tgid = BPF_CORE_READ(child, tgid);
	if (pid != tgid) // a new thread, not a process
		return 0;
	struct fork_rec r = { KIND_FORK, BPF_CORE_READ(parent, tgid), tgid };
	if (bpf_map_lookup_elem(&tracked, &r.parent))
		track(tgid);
	else if (!scope_all())
		return 0;
	emit(&r, sizeof(r));
	return 0;
}

SEC("tp_btf/sched_process_exit")
int BPF_PROG(handle_exit, struct task_struct *task)
{
	// The whole process has ended only when the last thread exits: signal->live is already
	// decremented here. (pid == tgid is not enough: a leader may exit before its threads, and
	// an exec in a non-leader thread kills the old leader while the process lives on.)
	if (BPF_CORE_READ(task, signal, live.counter) != 0)
		return 0;
	struct exit_rec r = { KIND_EXIT, BPF_CORE_READ(task, tgid), BPF_CORE_READ(task, exit_code) };
	if (bpf_map_delete_elem(&tracked, &r.pid) && !scope_all())
		return 0;
	emit(&r, sizeof(r));
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
