// tsched-spawner, native build: the spawner helper of spawner-script.ts in C, with the same protocol on
// stdin and stdout (see that file for the frames). Why C: a fork of this ~1 MB process and its child's few
// system calls cost a third of what the Perl helper's do (its interpreter touches copy-on-write pages on
// both sides of every fork), and the helper forks once per run. Built by `npm run build` when a C compiler
// is present (scripts/build-spawner.mjs); spawner.ts falls back to the Perl helper, then to Node's spawn.
//
// The child joins the run's cgroups, makes and enters the run's directory, takes /dev/null as stdin and the
// run's pipes as stdout and stderr, and execs the task with only the given environment. It is forked, not
// vforked: joining a cgroup v1 hierarchy waits for an RCU grace period (milliseconds), and children wait in
// parallel only if the helper is not suspended until each one execs.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

typedef struct {
  char *p;
  size_t len, cap;
} buf_t;

enum { FD_OUT, FD_ERR, FD_EXEC };

typedef struct {
  char id[32];
  pid_t pid;
  int fd[3]; // stdout, stderr, exec report; -1 once closed
  int open, exited, failed, done;
  double deadline;
} run_t;

static buf_t out, in;
static run_t **runs;
static size_t nruns, capruns;
static int sigpipe_r = -1, sigpipe_w = -1;

// Emptied run directories, parked under a hidden name for a later run to rename into place. On ext4 a mkdir
// and an rmdir cost 60-800 us of CPU between them (inode and block allocation, the journal), a rename ~15 us.
// Only a directory exactly as the child made it is parked: empty, no subdirectory, its creation mode, our
// owner, no extended attributes (so no default ACL). The worker removes leftovers of a crash at start.
#define POOL_MAX 256
static char *pool[POOL_MAX];
static size_t npool;
static unsigned long poolseq;
static mode_t dir_mode;

static void die(const char *what) {
  fprintf(stderr, "tsched-spawner: %s: %s\n", what, strerror(errno));
  exit(1);
}

static void bput(buf_t *b, const void *d, size_t n) {
  if (b->len + n > b->cap) {
    size_t cap = b->cap ? b->cap : 65536;
    while (cap < b->len + n) cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) die("out of memory");
    b->p = p;
    b->cap = cap;
  }
  memcpy(b->p + b->len, d, n);
  b->len += n;
}

static void bdrop(buf_t *b, size_t n) {
  memmove(b->p, b->p + n, b->len - n);
  b->len -= n;
}

static void ev(char type, const char *id, const void *data, size_t n) {
  char head[64];
  int h = snprintf(head, sizeof head, "%c %s %zu\n", type, id, n);
  bput(&out, head, (size_t)h);
  if (n) bput(&out, data, n);
}

static void evs(char type, const char *id, const char *s) { ev(type, id, s, strlen(s)); }

static const char *errname(int e) {
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 32))
  const char *n = strerrorname_np(e);
  if (n) return n;
#else
  switch (e) {
    case ENOENT: return "ENOENT";
    case EACCES: return "EACCES";
    case EPERM: return "EPERM";
    case ENOTDIR: return "ENOTDIR";
    case ENOEXEC: return "ENOEXEC";
    case E2BIG: return "E2BIG";
    case ENOMEM: return "ENOMEM";
    case EEXIST: return "EEXIST";
    case ENOTEMPTY: return "ENOTEMPTY";
    case EBUSY: return "EBUSY";
    case EROFS: return "EROFS";
    case ELOOP: return "ELOOP";
    case ENAMETOOLONG: return "ENAMETOOLONG";
    case ETXTBSY: return "ETXTBSY";
    case EISDIR: return "EISDIR";
  }
#endif
  return "EUNKNOWN";
}

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void on_chld(int sig) {
  (void)sig;
  int e = errno;
  if (write(sigpipe_w, "x", 1) < 0) { /* full: a wake-up is pending anyway */ }
  errno = e;
}

// ---- the child, between fork and exec: system calls only, and on failure one report, then _exit(127)

static void child_fail(int xw, const char *code, const char *fmt, const char *arg, int err) {
  char msg[4096];
  int n = snprintf(msg, sizeof msg, "%s ", code);
  if (arg) n += snprintf(msg + n, sizeof msg - (size_t)n, fmt, arg, strerror(err));
  else n += snprintf(msg + n, sizeof msg - (size_t)n, "%s", strerror(err));
  if (n > (int)sizeof msg - 1) n = (int)sizeof msg - 1;
  if (write(xw, msg, (size_t)n) < 0) { /* the worker learns of the exit anyway */ }
  _exit(127);
}

static void child(int ow, int ew, int xw, const char *cwd, char **procs, size_t nprocs, char **argv, char **envp) {
  sigset_t none;
  sigemptyset(&none);
  signal(SIGCHLD, SIG_DFL);
  signal(SIGPIPE, SIG_DFL);
  sigprocmask(SIG_SETMASK, &none, NULL);
  setsid();
  char pid[24];
  int pl = snprintf(pid, sizeof pid, "%d\n", (int)getpid());
  for (size_t i = 0; i < nprocs; i++) {
    int fd = open(procs[i], O_WRONLY | O_CLOEXEC);
    if (fd < 0 || write(fd, pid, (size_t)pl) != pl) child_fail(xw, "ECGROUP", "could not join cgroup %s: %s", procs[i], errno);
    close(fd);
  }
  // The run's directory is made here, off the worker's event loop (it may exist already: inline scripts).
  if (mkdir(cwd, 0755) < 0 && errno != EEXIST) child_fail(xw, errname(errno), "mkdir %s: %s", cwd, errno);
  if (chdir(cwd) < 0) child_fail(xw, errname(errno), "chdir %s: %s", cwd, errno);
  int null = open("/dev/null", O_RDONLY);
  if (null >= 0 && null != 0) {
    dup2(null, 0);
    close(null);
  }
  dup2(ow, 1);
  dup2(ew, 2);
  // execvp searches the task's own PATH, as the Perl helper's exec does after it replaced %ENV.
  environ = envp;
  execvp(argv[0], argv);
  child_fail(xw, errname(errno), NULL, NULL, errno);
}

// ---- requests

static size_t split(char *p, size_t len, char ***fields) {
  size_t n = 1;
  for (size_t i = 0; i < len; i++)
    if (p[i] == '\0') n++;
  char **f = malloc(n * sizeof *f);
  if (!f) die("out of memory");
  size_t k = 0;
  f[k++] = p;
  for (size_t i = 0; i < len; i++)
    if (p[i] == '\0') f[k++] = p + i + 1;
  *fields = f;
  return n;
}

/** Takes `count` fields after f[*at] (whose value is the count) into a NULL-terminated array; 0 when malformed. */
static int take(char **f, size_t nf, size_t *at, char ***list, size_t *count) {
  if (*at >= nf) return 0;
  char *end;
  unsigned long c = strtoul(f[*at], &end, 10);
  if (*end || c > nf - *at - 1) return 0;
  (*at)++;
  char **l = malloc((c + 1) * sizeof *l);
  if (!l) die("out of memory");
  for (size_t i = 0; i < c; i++) l[i] = f[*at + i];
  l[c] = NULL;
  *at += c;
  *list = l;
  *count = c;
  return 1;
}

static size_t parent_len(const char *path) {
  const char *slash = strrchr(path, '/');
  return slash ? (size_t)(slash - path) : 0;
}

/** Renames a parked directory into place as `cwd` when one in the same parent is free (never replacing). */
static void unpark(const char *cwd) {
  size_t pl = parent_len(cwd);
  for (size_t i = npool; i-- > 0;) {
    if (parent_len(pool[i]) != pl || strncmp(pool[i], cwd, pl) != 0) continue;
    if (renameat2(AT_FDCWD, pool[i], AT_FDCWD, cwd, RENAME_NOREPLACE) < 0 && errno == EEXIST) return; // made already
    // Renamed, or gone (then the child makes one): either way it leaves the pool.
    free(pool[i]);
    pool[i] = pool[--npool];
    return;
  }
}

/** Parks an emptied run directory; returns 0, or the errno an rmdir would give (then rmdir decides). */
static int park(const char *dir) {
  if (npool == POOL_MAX) return -1;
  int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) return errno == ENOENT ? ENOENT : -1;
  struct stat st;
  int pristine = fstat(fd, &st) == 0 && (st.st_mode & 07777) == dir_mode && st.st_uid == geteuid() &&
                 st.st_nlink <= 2 && flistxattr(fd, NULL, 0) == 0;
  if (pristine) {
    DIR *d = fdopendir(fd);
    if (!d) {
      close(fd);
      return -1;
    }
    struct dirent *e;
    while (pristine && (e = readdir(d)))
      if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) pristine = 0;
    closedir(d);
  } else {
    close(fd);
  }
  if (!pristine) return -1;
  size_t pl = parent_len(dir);
  char *to = malloc(pl + 64);
  if (!to) die("out of memory");
  snprintf(to, pl + 64, "%.*s/.tsched-free-%d-%lu", (int)pl, dir, (int)getpid(), ++poolseq);
  if (rename(dir, to) < 0) {
    free(to);
    return -1;
  }
  pool[npool++] = to;
  return 0;
}

static void start_run(char *req, size_t len) {
  // The payload ends where the next frame begins: terminate it for the string functions.
  char *p = malloc(len + 1);
  if (!p) die("out of memory");
  memcpy(p, req, len);
  p[len] = '\0';
  char **f, **procs = NULL, **argv = NULL, **envp = NULL;
  size_t nf = split(p, len, &f), at = 2, nprocs = 0, nargv = 0, nenv = 0;
  const char *id = f[0];
  if (nf < 3 || !take(f, nf, &at, &procs, &nprocs) || !take(f, nf, &at, &argv, &nargv) ||
      !take(f, nf, &at, &envp, &nenv) || nargv == 0) {
    evs('F', id, "EINVAL malformed start request");
    evs('X', id, "");
    evs('D', id, "");
    goto out;
  }
  unpark(f[1]);
  int po[2], pe[2], px[2];
  if (pipe2(po, O_CLOEXEC) < 0) goto nopipe;
  if (pipe2(pe, O_CLOEXEC) < 0) {
    close(po[0]), close(po[1]);
    goto nopipe;
  }
  if (pipe2(px, O_CLOEXEC) < 0) {
    close(po[0]), close(po[1]), close(pe[0]), close(pe[1]);
    goto nopipe;
  }
  pid_t pid = fork();
  if (pid == 0) child(po[1], pe[1], px[1], f[1], procs, nprocs, argv, envp);
  close(po[1]), close(pe[1]), close(px[1]);
  if (pid < 0) {
    char msg[256];
    snprintf(msg, sizeof msg, "EAGAIN fork: %s", strerror(errno));
    close(po[0]), close(pe[0]), close(px[0]);
    evs('F', id, msg);
    evs('X', id, "");
    evs('D', id, "");
    goto out;
  }
  run_t *r = calloc(1, sizeof *r);
  if (!r) die("out of memory");
  snprintf(r->id, sizeof r->id, "%s", id);
  r->pid = pid;
  r->fd[FD_OUT] = po[0];
  r->fd[FD_ERR] = pe[0];
  r->fd[FD_EXEC] = px[0];
  r->open = 3;
  if (nruns == capruns) {
    capruns = capruns ? capruns * 2 : 64;
    runs = realloc(runs, capruns * sizeof *runs);
    if (!runs) die("out of memory");
  }
  runs[nruns++] = r;
  goto out;
nopipe: {
  char msg[256];
  snprintf(msg, sizeof msg, "EMFILE could not create pipes: %s", strerror(errno));
  evs('F', id, msg);
  evs('X', id, "");
  evs('D', id, "");
}
out:
  free(procs);
  free(argv);
  free(envp);
  free(f);
  free(p);
}

static void remove_dir(char *req, size_t len) {
  // "seq\0dir" -> R seq <errno name, or empty when removed (or parked: gone from its path all the same)>
  char *p = malloc(len + 1);
  if (!p) die("out of memory");
  memcpy(p, req, len);
  p[len] = '\0';
  char *dir = memchr(p, '\0', len);
  if (!dir) evs('R', p, "EINVAL");
  else {
    int parked = park(dir + 1);
    if (parked >= 0) evs('R', p, parked == 0 ? "" : errname(parked));
    else evs('R', p, rmdir(dir + 1) == 0 ? "" : errname(errno));
  }
  free(p);
}

static void parse_requests(void) {
  size_t off = 0;
  while (in.len - off >= 3) {
    char *s = in.p + off;
    char kind = s[0];
    if ((kind != 'S' && kind != 'R') || s[1] != ' ') die("bad request frame");
    char *nl = memchr(s, '\n', in.len - off);
    if (!nl) break;
    size_t len = strtoul(s + 2, NULL, 10), hl = (size_t)(nl - s) + 1;
    if (in.len - off < hl + len) break;
    if (kind == 'S') start_run(s + hl, len);
    else remove_dir(s + hl, len);
    off += hl + len;
  }
  if (off) bdrop(&in, off);
}

// ---- runs

static void finish(run_t *r) {
  r->done = 1;
  evs('D', r->id, "");
}

static void close_fd(run_t *r, int which) {
  if (r->fd[which] < 0) return;
  if (which == FD_EXEC && !r->failed) {
    char pid[24];
    snprintf(pid, sizeof pid, "%d", (int)r->pid);
    evs('P', r->id, pid);
  }
  close(r->fd[which]);
  r->fd[which] = -1;
  r->open--;
  if (r->open == 0 && r->exited) finish(r);
}

static void read_fd(run_t *r, int which) {
  static char buf[65536];
  if (r->fd[which] < 0) return;
  ssize_t n = read(r->fd[which], buf, sizeof buf);
  if (n < 0) {
    if (errno == EAGAIN || errno == EINTR) return;
    close_fd(r, which);
    return;
  }
  if (n == 0) {
    close_fd(r, which);
    return;
  }
  if (which == FD_EXEC) {
    // exec failed: "ERRNO message"
    r->failed = 1;
    ev('F', r->id, buf, (size_t)n);
    return;
  }
  ev(which == FD_OUT ? 'O' : 'E', r->id, buf, (size_t)n);
}

static void reap(void) {
  int status;
  pid_t pid;
  while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
    run_t *r = NULL;
    for (size_t i = 0; i < nruns; i++)
      if (runs[i]->pid == pid && !runs[i]->exited && !runs[i]->done) r = runs[i];
    if (!r) continue;
    // Settle the exec report first, so that P or F always comes before X (the child is gone: no read blocks).
    while (r->fd[FD_EXEC] >= 0) read_fd(r, FD_EXEC);
    char x[32];
    if (WIFEXITED(status)) snprintf(x, sizeof x, "%d ", WEXITSTATUS(status));
    else if (WIFSIGNALED(status)) snprintf(x, sizeof x, " %d", WTERMSIG(status));
    else snprintf(x, sizeof x, " ");
    evs('X', r->id, x);
    r->exited = 1;
    // A process that escaped with the pipes open must not hold its run forever: drop them 1.5 s after exit.
    r->deadline = now() + 1.5;
    if (r->open == 0) finish(r);
  }
}

static void flush_out(int block) {
  while (out.len) {
    ssize_t w = write(1, out.p, out.len);
    if (w > 0) {
      bdrop(&out, (size_t)w);
      continue;
    }
    if (w < 0 && errno == EINTR) continue;
    if (w < 0 && errno == EAGAIN) {
      if (!block) return;
      struct pollfd p = {.fd = 1, .events = POLLOUT};
      poll(&p, 1, -1);
      continue;
    }
    exit(0); // the worker is gone
  }
}

int main(void) {
  int sp[2];
  if (pipe2(sp, O_CLOEXEC | O_NONBLOCK) < 0) die("pipe");
  sigpipe_r = sp[0];
  sigpipe_w = sp[1];
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_chld;
  sa.sa_flags = SA_RESTART | SA_NOCLDSTOP;
  sigaction(SIGCHLD, &sa, NULL);
  signal(SIGPIPE, SIG_IGN);
  fcntl(1, F_SETFL, fcntl(1, F_GETFL) | O_NONBLOCK);
  fcntl(0, F_SETFD, FD_CLOEXEC);
  fcntl(1, F_SETFD, FD_CLOEXEC);
  mode_t um = umask(0);
  umask(um);
  dir_mode = 0755 & ~um;

  int stdin_open = 1;
  struct pollfd *pfd = NULL;
  run_t **who = NULL;
  int *which = NULL;
  size_t cap = 0;
  while (stdin_open || nruns) {
    size_t need = 3 + nruns * 3, n = 0;
    if (need > cap) {
      cap = need * 2;
      pfd = realloc(pfd, cap * sizeof *pfd);
      who = realloc(who, cap * sizeof *who);
      which = realloc(which, cap * sizeof *which);
      if (!pfd || !who || !which) die("out of memory");
    }
    pfd[n++] = (struct pollfd){.fd = sigpipe_r, .events = POLLIN};
    pfd[n++] = (struct pollfd){.fd = stdin_open ? 0 : -1, .events = POLLIN};
    pfd[n++] = (struct pollfd){.fd = out.len ? 1 : -1, .events = POLLOUT};
    int waiting = 0;
    for (size_t i = 0; i < nruns; i++) {
      run_t *r = runs[i];
      if (r->exited) waiting = 1;
      for (int k = 0; k < 3; k++)
        if (r->fd[k] >= 0) {
          who[n] = r;
          which[n] = k;
          pfd[n++] = (struct pollfd){.fd = r->fd[k], .events = POLLIN};
        }
    }
    int got = poll(pfd, n, waiting ? 250 : -1);
    if (got < 0) {
      if (errno == EINTR) continue;
      die("poll");
    }
    if (pfd[0].revents) {
      char junk[256];
      while (read(sigpipe_r, junk, sizeof junk) > 0) {}
    }
    if (pfd[1].revents) {
      char chunk[65536];
      ssize_t r = read(0, chunk, sizeof chunk);
      if (r > 0) {
        bput(&in, chunk, (size_t)r);
        parse_requests();
      } else if (r == 0 || (errno != EINTR && errno != EAGAIN)) {
        stdin_open = 0;
      }
    }
    for (size_t i = 3; i < n; i++)
      if (pfd[i].revents) read_fd(who[i], which[i]);
    reap();
    double t = now();
    for (size_t i = 0; i < nruns; i++) {
      run_t *r = runs[i];
      if (r->done || !r->exited || t < r->deadline) continue;
      for (int k = 0; k < 3; k++)
        if (r->fd[k] >= 0) {
          close(r->fd[k]);
          r->fd[k] = -1;
        }
      finish(r);
    }
    size_t k = 0;
    for (size_t i = 0; i < nruns; i++) {
      if (runs[i]->done) free(runs[i]);
      else runs[k++] = runs[i];
    }
    nruns = k;
    flush_out(0);
  }
  // Flush what is left, remove the parked directories, then go.
  flush_out(1);
  for (size_t i = 0; i < npool; i++) rmdir(pool[i]);
  return 0;
}
