/**
 * The seccomp profile a container gets by default: Docker's default policy (an allow-list; any
 * other system call fails with EPERM), written here as data in the OCI runtime spec's form.
 * Our own rendering of that policy: the same rule (what is harmless for any process is allowed,
 * what needs a capability is allowed only with it, namespace creation only with CAP_SYS_ADMIN).
 * Names libseccomp does not know on this architecture are skipped by runc.
 */

/** What any process may call. */
const ALWAYS = `accept accept4 access adjtimex alarm bind brk cachestat capget capset chdir chmod chown
chown32 clock_adjtime clock_adjtime64 clock_getres clock_getres_time64 clock_gettime clock_gettime64
clock_nanosleep clock_nanosleep_time64 close close_range connect copy_file_range creat dup dup2 dup3
epoll_create epoll_create1 epoll_ctl epoll_ctl_old epoll_pwait epoll_pwait2 epoll_wait epoll_wait_old
eventfd eventfd2 execve execveat exit exit_group faccessat faccessat2 fadvise64 fadvise64_64 fallocate
fanotify_mark fchdir fchmod fchmodat fchmodat2 fchown fchown32 fchownat fcntl fcntl64 fdatasync
fgetxattr flistxattr flock fork fremovexattr fsetxattr fstat fstat64 fstatat64 fstatfs fstatfs64 fsync
ftruncate ftruncate64 futex futex_requeue futex_time64 futex_wait futex_waitv futex_wake futimesat
getcpu getcwd getdents getdents64 getegid getegid32 geteuid geteuid32 getgid getgid32 getgroups
getgroups32 getitimer getpeername getpgid getpgrp getpid getppid getpriority getrandom getresgid
getresgid32 getresuid getresuid32 getrlimit get_robust_list getrusage getsid getsockname getsockopt
get_thread_area gettid gettimeofday getuid getuid32 getxattr inotify_add_watch inotify_init
inotify_init1 inotify_rm_watch io_cancel ioctl io_destroy io_getevents io_pgetevents
io_pgetevents_time64 ioprio_get ioprio_set io_setup io_submit ipc kill landlock_add_rule
landlock_create_ruleset landlock_restrict_self lchown lchown32 lgetxattr link linkat listen listxattr
llistxattr _llseek lremovexattr lseek lsetxattr lstat lstat64 madvise map_shadow_stack membarrier
memfd_create memfd_secret mincore mkdir mkdirat mknod mknodat mlock mlock2 mlockall mmap mmap2
mprotect mq_getsetattr mq_notify mq_open mq_timedreceive mq_timedreceive_time64 mq_timedsend
mq_timedsend_time64 mq_unlink mremap msgctl msgget msgrcv msgsnd msync munlock munlockall munmap
name_to_handle_at nanosleep newfstatat _newselect open openat openat2 pause pidfd_open
pidfd_send_signal pipe pipe2 pkey_alloc pkey_free pkey_mprotect poll ppoll ppoll_time64 prctl pread64
preadv preadv2 prlimit64 process_mrelease pselect6 pselect6_time64 pwrite64 pwritev pwritev2 read
readahead readlink readlinkat readv recv recvfrom recvmmsg recvmmsg_time64 recvmsg remap_file_pages
removexattr rename renameat renameat2 restart_syscall rmdir rseq rt_sigaction rt_sigpending
rt_sigprocmask rt_sigqueueinfo rt_sigreturn rt_sigsuspend rt_sigtimedwait rt_sigtimedwait_time64
rt_tgsigqueueinfo sched_getaffinity sched_getattr sched_getparam sched_get_priority_max
sched_get_priority_min sched_getscheduler sched_rr_get_interval sched_rr_get_interval_time64
sched_setaffinity sched_setattr sched_setparam sched_setscheduler sched_yield seccomp select semctl
semget semop semtimedop semtimedop_time64 send sendfile sendfile64 sendmmsg sendmsg sendto setfsgid
setfsgid32 setfsuid setfsuid32 setgid setgid32 setgroups setgroups32 setitimer setpgid setpriority
setregid setregid32 setresgid setresgid32 setresuid setresuid32 setreuid setreuid32 setrlimit
set_robust_list setsid setsockopt set_thread_area set_tid_address setuid setuid32 setxattr shmat
shmctl shmdt shmget shutdown sigaltstack signalfd signalfd4 sigprocmask sigreturn socket socketcall
socketpair splice stat stat64 statfs statfs64 statx symlink symlinkat sync sync_file_range syncfs
sysinfo tee tgkill time timer_create timer_delete timer_getoverrun timer_gettime timer_gettime64
timer_settime timer_settime64 timerfd_create timerfd_gettime timerfd_gettime64 timerfd_settime
timerfd_settime64 times tkill truncate truncate64 ugetrlimit umask uname unlink unlinkat utime
utimensat utimensat_time64 utimes vfork vmsplice wait4 waitid waitpid write writev
ptrace process_vm_readv process_vm_writev`

/** x86 only: what its C library and threads need. */
const X86 = 'arch_prctl modify_ldt'

/** Allowed only to a process that holds the capability (lower-case name, without cap_). */
const BY_CAP: Record<string, string> = {
  sys_admin: `bpf clone clone3 fanotify_init fsconfig fsmount fsopen fspick lookup_dcookie mount mount_setattr
move_mount open_tree perf_event_open quotactl quotactl_fd setdomainname sethostname setns syslog umount
umount2 unshare`,
  sys_boot: 'reboot',
  sys_chroot: 'chroot',
  sys_module: 'delete_module init_module finit_module',
  sys_pacct: 'acct',
  sys_ptrace: 'kcmp pidfd_getfd process_madvise',
  sys_rawio: 'iopl ioperm',
  sys_time: 'settimeofday stime clock_settime clock_settime64',
  sys_tty_config: 'vhangup',
  sys_nice: 'get_mempolicy mbind set_mempolicy set_mempolicy_home_node',
  syslog: 'syslog',
  bpf: 'bpf',
  perfmon: 'perf_event_open',
}

/** clone's flags that create namespaces: without CAP_SYS_ADMIN clone must not carry any of them. */
const CLONE_NS_FLAGS = 0x7e020000

/** personality(2) values that change nothing harmful: Linux, its 32-bit flavour, and the query. */
const PERSONALITIES = [0x0, 0x8, 0x20000, 0x20008, 0xffffffff]

const ERRNO_EPERM = 1
const ERRNO_ENOSYS = 38

export interface SeccompSyscall {
  names: string[]
  action: 'SCMP_ACT_ALLOW' | 'SCMP_ACT_ERRNO'
  errnoRet?: number
  args?: {index: number; value: number; valueTwo?: number; op: string}[]
}

export interface SeccompProfile {
  defaultAction: 'SCMP_ACT_ERRNO'
  defaultErrnoRet: number
  architectures: string[]
  syscalls: SeccompSyscall[]
}

const words = (s: string) => s.split(/\s+/).filter(Boolean)

const ARCHES: Record<string, string[]> = {
  x64: ['SCMP_ARCH_X86_64', 'SCMP_ARCH_X86', 'SCMP_ARCH_X32'],
  arm64: ['SCMP_ARCH_AARCH64', 'SCMP_ARCH_ARM'],
}

/** Docker's default profile for a process with these capabilities (lower-case, without cap_). */
export function defaultSeccomp(caps: readonly string[], arch: string = process.arch): SeccompProfile {
  const has = new Set(caps)
  const syscalls: SeccompSyscall[] = [{names: words(ALWAYS), action: 'SCMP_ACT_ALLOW'}]
  if (arch === 'x64' || arch === 'ia32') syscalls.push({names: words(X86), action: 'SCMP_ACT_ALLOW'})
  syscalls.push(
    ...PERSONALITIES.map((value) => ({
      names: ['personality'],
      action: 'SCMP_ACT_ALLOW' as const,
      args: [{index: 0, value, op: 'SCMP_CMP_EQ'}],
    })),
  )
  for (const [cap, names] of Object.entries(BY_CAP))
    if (has.has(cap)) syscalls.push({names: words(names), action: 'SCMP_ACT_ALLOW'})
  if (!has.has('sys_admin')) {
    // clone's flags are its first argument, except on s390 (not supported here).
    syscalls.push({
      names: ['clone'],
      action: 'SCMP_ACT_ALLOW',
      args: [{index: 0, value: CLONE_NS_FLAGS, valueTwo: 0, op: 'SCMP_CMP_MASKED_EQ'}],
    })
    // clone3's flags are in memory seccomp cannot read: ENOSYS makes the C library fall back to clone.
    syscalls.push({names: ['clone3'], action: 'SCMP_ACT_ERRNO', errnoRet: ERRNO_ENOSYS})
  }
  return {
    defaultAction: 'SCMP_ACT_ERRNO',
    defaultErrnoRet: ERRNO_EPERM,
    architectures: ARCHES[arch] ?? [],
    syscalls,
  }
}
