/*
 * c_libssh_server -- the C reference point of the pylibssh_server benchmarks.
 *
 * A deliberately small SSH server written directly against libssh's server
 * API (ssh_bind_accept_fd, ssh_event, server and channel callbacks).  It
 * shows what the same library costs when no Python is involved.  It is meant
 * for loopback benchmarks only and is not hardened.
 *
 *   c_libssh_server --port P --hostkey FILE [--password PW] [--addr A]
 *
 * What it does:
 *   - password authentication for any user name (default password "bench");
 *   - "exec" requests run /bin/sh -c COMMAND with three pipes; stdout and
 *     stderr (as extended data) go to the client, client data goes to stdin,
 *     client EOF closes stdin, then exit-status (or exit-signal), EOF, close;
 *   - "direct-tcpip" opens to loopback destinations, relayed both ways with
 *     half-close.
 *
 * Process model: the listener only accepts, and forks one process per
 * connection.  It reaps those processes, so their CPU time (and, since each
 * connection process reaps its commands, theirs too) ends up in the
 * listener's cutime/cstime, where the benchmark reads it.
 *
 * Event model, per connection process: one ssh_event holds the SSH socket
 * and every local fd (pipes, forwarded sockets, pidfds).  The fd callbacks
 * and the libssh callbacks only record what happened or move bytes into
 * bounded buffers; all reading and writing of local fds, and every change to
 * the set of fds in the ssh_event, happens in the main loop after
 * ssh_event_dopoll() has returned.  Flow control in both directions:
 *   local fd -> channel: a source fd is polled only while its one-chunk
 *     buffer is empty and the client's window is open, so a slow client
 *     stops us reading the pipe or socket instead of piling data up;
 *   channel -> local fd: the data callback takes at most one chunk; the rest
 *     stays in libssh's channel buffer, which does not reopen our receive
 *     window while it is full, so the client is throttled by the window.
 */
#define _GNU_SOURCE
#include <libssh/libssh.h>
#include <libssh/server.h>
#include <libssh/callbacks.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench_common.h"

extern char **environ;

#define CHUNK           (64 * 1024) /* bytes moved per read/write */
#define LISTEN_BACKLOG  128         /* libssh's own listen() uses only 10 */
#define KEX_TIMEOUT_S   30L         /* bound on the blocking key exchange */
#define AUTH_DEADLINE_S 60          /* drop connections that never log in */
#define LOOP_TICK_MS    1000        /* housekeeping wake-up of the loop */
#define REAP_TICK_MS    10          /* loop tick while a child has no pidfd */
#define PUMP_ROUNDS     8           /* chunks per flow per loop pass */

/* ------------------------------------------------------------------ */
/* Data structures                                                     */

/* One local fd as seen by the ssh_event.  The main loop decides which
 * events it wants; watch_sync() brings the registration in line, and the
 * fd callback only ORs what poll reported into `ready`. */
struct watch {
    int fd;             /* -1 once closed */
    short want;         /* events we would like to be told about */
    short registered;   /* events currently registered (0: not in event) */
    short ready;        /* revents collected during ssh_event_dopoll() */
};

/* Bytes read from a local fd, on their way into the channel. */
struct to_client {
    struct watch *w;
    int ext;            /* send as stderr (extended data) */
    int readable;       /* poll said so and we have not hit EAGAIN since */
    int eof;            /* read() gave 0 or an error */
    size_t off, len;
    char buf[CHUNK];
};

/* Bytes the client sent, on their way into a local fd. */
struct from_client {
    struct watch *w;
    int blocked;        /* the fd said EAGAIN: wait for POLLOUT */
    int pulling;        /* inside ssh_channel_read_nonblocking() */
    int broken;         /* the reader went away: discard from now on */
    int shut;           /* client EOF passed on (stdin closed/SHUT_WR) */
    uint32_t held;      /* bytes still in libssh's channel buffer */
    size_t off, len;
    char buf[CHUNK];
};

enum chan_kind { KIND_SESSION, KIND_FORWARD };

struct conn;

struct chan {
    struct chan *next;
    struct conn *conn;
    enum chan_kind kind;
    ssh_channel ch;
    struct ssh_channel_callbacks_struct cbs;

    /* session: w_out/w_err/w_in are the command's pipes, w_pid its pidfd.
     * forward: w_out is the one socket, used by both flows. */
    struct watch w_out, w_err, w_in, w_pid;
    struct to_client out, err;
    struct from_client in;

    pid_t pid;          /* 0: no command started */
    int status;
    int reaped;
    int hup_sent;

    int got_eof;        /* client sent EOF */
    int got_close;      /* client sent CLOSE */
    int failed;         /* writing to the channel failed */
    int sent_eof;
    int sent_close;
};

struct conn {
    struct login login; /* first: on_password() gets the conn as userdata */
    ssh_session session;
    ssh_event event;
    struct chan *chans;
    int need_reap_tick; /* a child without pidfd must be polled for */
    int kick;           /* a libssh callback ran since the last pass */
};

/* ------------------------------------------------------------------ */
/* Small fd helpers                                                    */

static void set_nonblocking(int fd)
{
    int flags = fcntl(fd, F_GETFL);
    if (flags >= 0) {
        fcntl(fd, F_SETFL, flags | O_NONBLOCK);
    }
}

static void close_if_open(int *fd)
{
    if (*fd >= 0) {
        close(*fd);
        *fd = -1;
    }
}

/* The commands get pipes dup2'ed onto 0, 1 and 2.  If the server itself
 * was started with one of those closed, a pipe could land there and the
 * dup2 would be a no-op that keeps FD_CLOEXEC; make sure they are taken. */
static void keep_std_fds_taken(void)
{
    int fd;
    while ((fd = open("/dev/null", O_RDWR)) >= 0 && fd <= 2) {
    }
    if (fd > 2) {
        close(fd);
    }
}

/* Forwarding is for loopback benchmarks: refuse anything else. */
static int is_loopback(const char *host)
{
    struct in_addr v4;
    struct in6_addr v6;

    if (host == NULL) {
        return 0;
    }
    if (strcmp(host, "localhost") == 0) {
        return 1;
    }
    if (inet_pton(AF_INET, host, &v4) == 1) {
        return (ntohl(v4.s_addr) & 0xff000000u) == 0x7f000000u;
    }
    if (inet_pton(AF_INET6, host, &v6) == 1) {
        if (IN6_IS_ADDR_LOOPBACK(&v6)) {
            return 1;
        }
        return IN6_IS_ADDR_V4MAPPED(&v6) && v6.s6_addr[12] == 127;
    }
    return 0;
}

/* Blocking connect: a loopback destination answers at once, either way. */
static int dial(const char *host, int port)
{
    struct addrinfo hints, *list = NULL, *ai;
    char service[16];
    int fd = -1;

    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    snprintf(service, sizeof(service), "%d", port);
    if (getaddrinfo(host, service, &hints, &list) != 0) {
        return -1;
    }
    for (ai = list; ai != NULL && fd < 0; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC,
                    ai->ai_protocol);
        if (fd >= 0 && connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(list);
    return fd;
}

/* A pidfd turns "the command exited" into an ordinary poll event, so the
 * connection process needs neither a SIGCHLD handler nor a periodic
 * waitpid().  Called through syscall() so older glibc builds it too. */
static int open_pidfd(pid_t pid)
{
#ifdef SYS_pidfd_open
    return (int)syscall(SYS_pidfd_open, pid, 0);
#else
    (void)pid;
    errno = ENOSYS;
    return -1;
#endif
}

/* ------------------------------------------------------------------ */
/* Watches: the only code that adds fds to or removes them from the    */
/* ssh_event.  Called from the main loop only.                         */

static int on_fd_ready(socket_t fd, int revents, void *userdata)
{
    struct watch *w = userdata;
    (void)fd;
    w->ready |= (short)revents;
    return 0;
}

static void watch_init(struct watch *w)
{
    w->fd = -1;
    w->want = w->registered = w->ready = 0;
}

static void watch_sync(ssh_event ev, struct watch *w)
{
    if (w->fd < 0 || w->want == w->registered) {
        return;
    }
    /* libssh cannot change the events of a registered fd: re-add it. */
    if (w->registered) {
        ssh_event_remove_fd(ev, w->fd);
        w->registered = 0;
    }
    if (w->want &&
        ssh_event_add_fd(ev, w->fd, w->want, on_fd_ready, w) == SSH_OK) {
        w->registered = w->want;
    }
}

/* Unregister before closing: a closed fd number can be reused at once. */
static void watch_close(ssh_event ev, struct watch *w)
{
    if (w->fd < 0) {
        return;
    }
    if (w->registered) {
        ssh_event_remove_fd(ev, w->fd);
    }
    close(w->fd);
    watch_init(w);
}

/* ------------------------------------------------------------------ */
/* Moving bytes (main loop only)                                       */

/* Local fd -> channel, never more than the client's window allows, so
 * libssh never has to wait for a window adjust inside the write. */
static void pump_to_client(struct chan *c, struct to_client *f)
{
    int round;

    if (f->w->ready & (POLLIN | POLLHUP | POLLERR)) {
        f->readable = 1;
    }
    for (round = 0; round < PUMP_ROUNDS && !c->failed && !c->got_close;
         round++) {
        uint32_t room, take;
        int n;

        if (f->len == 0) {
            ssize_t got;

            if (f->eof || !f->readable || f->w->fd < 0) {
                return;
            }
            got = read(f->w->fd, f->buf, sizeof(f->buf));
            if (got < 0 && errno == EINTR) {
                continue;
            }
            if (got < 0 && errno == EAGAIN) {
                f->readable = 0;
                return;
            }
            if (got <= 0) {
                f->eof = 1;     /* end of output, or a reset socket */
                return;
            }
            if ((size_t)got < sizeof(f->buf)) {
                f->readable = 0; /* drained for now; poll will tell us */
            }
            f->off = 0;
            f->len = (size_t)got;
        }
        room = ssh_channel_window_size(c->ch);
        if (room == 0) {
            return;             /* resumed when a window adjust arrives */
        }
        take = f->len < room ? (uint32_t)f->len : room;
        n = f->ext ? ssh_channel_write_stderr(c->ch, f->buf + f->off, take)
                   : ssh_channel_write(c->ch, f->buf + f->off, take);
        if (n < 0) {
            c->failed = 1;
            return;
        }
        f->off += (size_t)n;
        f->len -= (size_t)n;
        if ((uint32_t)n < take) {
            return;             /* e.g. a key re-exchange: retry later */
        }
    }
}

/* Take bytes that libssh kept for us when our buffer was full. */
static void pull_held(struct chan *c, struct from_client *f)
{
    uint32_t want = f->held < sizeof(f->buf) ? f->held
                                              : (uint32_t)sizeof(f->buf);
    int n;

    /* libssh may dispatch packets in here; make the data callback leave
     * our buffer alone meanwhile (it only updates `held`). */
    f->pulling = 1;
    n = ssh_channel_read_nonblocking(c->ch, f->buf, want, 0);
    f->pulling = 0;
    if (n <= 0) {
        f->held = 0;            /* nothing there after all, or EOF/error */
        return;
    }
    f->held = f->held > (uint32_t)n ? f->held - (uint32_t)n : 0;
    f->off = 0;
    f->len = (size_t)n;
}

/* Channel -> local fd.  The fd is non-blocking; on EAGAIN we wait for
 * POLLOUT while the client is held back by the window. */
static void pump_from_client(struct chan *c, struct from_client *f)
{
    int round;

    if (f->w->fd < 0 || f->shut || f->broken) {
        return;
    }
    if (f->blocked) {
        if (!(f->w->ready & (POLLOUT | POLLERR | POLLHUP))) {
            return;
        }
        f->blocked = 0;
    }
    for (round = 0; round < PUMP_ROUNDS; round++) {
        ssize_t n;

        if (f->len == 0 && f->held > 0 && !c->got_close) {
            pull_held(c, f);
        }
        if (f->len == 0) {
            return;
        }
        n = write(f->w->fd, f->buf + f->off, f->len);
        if (n > 0) {
            f->off += (size_t)n;
            f->len -= (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0 && errno == EAGAIN) {
            f->blocked = 1;
            return;
        }
        /* EPIPE (the command closed stdin) or a reset socket */
        f->broken = 1;
        f->len = f->off = 0;
        return;
    }
}

/* ------------------------------------------------------------------ */
/* Channel callbacks (inside ssh_event_dopoll: record, never poll)     */

static int on_data(ssh_session session, ssh_channel channel, void *data,
                   uint32_t len, int is_stderr, void *userdata)
{
    struct chan *c = userdata;
    struct from_client *f = &c->in;
    size_t space, take;

    (void)session;
    (void)channel;
    c->conn->kick = 1;
    if (is_stderr || f->broken || f->shut) {
        return (int)len;        /* nothing will read it: drop */
    }
    if (f->pulling) {
        f->held = len;          /* the pull in progress takes from these */
        return 0;
    }
    if (f->len == 0) {
        f->off = 0;
    } else if (f->off > 0) {
        memmove(f->buf, f->buf + f->off, f->len);
        f->off = 0;
    }
    space = sizeof(f->buf) - f->len;
    take = len < space ? len : space;
    memcpy(f->buf + f->len, data, take);
    f->len += take;
    /* Whatever we did not take stays in libssh's buffer; libssh will not
     * reopen our window past it, which is what bounds the client. */
    f->held = len - (uint32_t)take;
    return (int)take;
}

static void on_eof(ssh_session session, ssh_channel channel, void *userdata)
{
    struct chan *c = userdata;
    (void)session;
    (void)channel;
    c->got_eof = 1;
    c->conn->kick = 1;
}

static void on_close(ssh_session session, ssh_channel channel,
                     void *userdata)
{
    struct chan *c = userdata;
    (void)session;
    (void)channel;
    c->got_close = 1;
    c->conn->kick = 1;
}

/* Start /bin/sh -c COMMAND.  posix_spawn (vfork-like in glibc) keeps the
 * per-command cost low; all our own fds are close-on-exec, so the command
 * sees only the three pipe ends placed on 0, 1 and 2.  The pipe fds are
 * registered in the ssh_event later, by the main loop. */
static int on_exec(ssh_session session, ssh_channel channel,
                   const char *command, void *userdata)
{
    struct chan *c = userdata;
    int pin[2] = {-1, -1}, pout[2] = {-1, -1}, perr[2] = {-1, -1};
    posix_spawn_file_actions_t acts;
    posix_spawnattr_t attr;
    sigset_t defaults, empty;
    char *argv[] = {"sh", "-c", (char *)command, NULL};
    pid_t pid;
    int rc;

    (void)session;
    (void)channel;
    if (c->kind != KIND_SESSION || c->pid != 0) {
        return SSH_ERROR;       /* one command per channel */
    }
    if (pipe2(pin, O_CLOEXEC) != 0 || pipe2(pout, O_CLOEXEC) != 0 ||
        pipe2(perr, O_CLOEXEC) != 0) {
        rc = -1;
        goto out;
    }

    posix_spawn_file_actions_init(&acts);
    posix_spawn_file_actions_adddup2(&acts, pin[0], 0);
    posix_spawn_file_actions_adddup2(&acts, pout[1], 1);
    posix_spawn_file_actions_adddup2(&acts, perr[1], 2);
    /* We ignore SIGPIPE, and an ignored signal stays ignored across exec;
     * the command must get the default back (`yes | head` relies on it). */
    posix_spawnattr_init(&attr);
    sigemptyset(&defaults);
    sigaddset(&defaults, SIGPIPE);
    sigemptyset(&empty);
    posix_spawnattr_setsigdefault(&attr, &defaults);
    posix_spawnattr_setsigmask(&attr, &empty);
    /* Its own process group, so that a hang-up reaches the whole command
     * (sh -c 'a; b' forks), not just the shell. */
    posix_spawnattr_setpgroup(&attr, 0);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGDEF |
                                        POSIX_SPAWN_SETSIGMASK |
                                        POSIX_SPAWN_SETPGROUP);
    rc = posix_spawn(&pid, "/bin/sh", &acts, &attr, argv, environ);
    posix_spawnattr_destroy(&attr);
    posix_spawn_file_actions_destroy(&acts);
    if (rc != 0) {
        rc = -1;
        goto out;
    }

    c->pid = pid;
    c->conn->kick = 1;          /* its pipes want registering */
    c->w_in.fd = pin[1];
    c->w_out.fd = pout[0];
    c->w_err.fd = perr[0];
    pin[1] = pout[0] = perr[0] = -1;
    set_nonblocking(c->w_in.fd);
    set_nonblocking(c->w_out.fd);
    set_nonblocking(c->w_err.fd);
    c->w_pid.fd = open_pidfd(pid);
    if (c->w_pid.fd < 0) {
        c->conn->need_reap_tick = 1;
    }
    rc = 0;
out:
    close_if_open(&pin[0]);
    close_if_open(&pin[1]);
    close_if_open(&pout[0]);
    close_if_open(&pout[1]);
    close_if_open(&perr[0]);
    close_if_open(&perr[1]);
    return rc == 0 ? SSH_OK : SSH_ERROR;
}

static struct chan *chan_add(struct conn *conn, enum chan_kind kind,
                             ssh_channel ch)
{
    struct chan *c = calloc(1, sizeof(*c)), **link;

    if (c == NULL) {
        return NULL;
    }
    c->conn = conn;
    c->kind = kind;
    c->ch = ch;
    watch_init(&c->w_out);
    watch_init(&c->w_err);
    watch_init(&c->w_in);
    watch_init(&c->w_pid);
    c->out.w = &c->w_out;
    c->err.w = &c->w_err;
    c->err.ext = 1;
    /* a forward reads and writes the same socket */
    c->in.w = kind == KIND_FORWARD ? &c->w_out : &c->w_in;
    if (kind == KIND_FORWARD) {
        c->err.eof = 1;         /* no second output stream */
    }

    ssh_callbacks_init(&c->cbs);
    c->cbs.userdata = c;
    c->cbs.channel_data_function = on_data;
    c->cbs.channel_eof_function = on_eof;
    c->cbs.channel_close_function = on_close;
    if (kind == KIND_SESSION) {
        c->cbs.channel_exec_request_function = on_exec;
    }
    ssh_set_channel_callbacks(ch, &c->cbs);

    /* Append: this may run nested inside the main loop's walk over the
     * list, which unlinks through a pointer to the previous `next`. */
    for (link = &conn->chans; *link != NULL; link = &(*link)->next) {
    }
    *link = c;
    conn->kick = 1;
    return c;
}

/* ------------------------------------------------------------------ */
/* Server callbacks                                                    */

static ssh_channel on_session_open(ssh_session session, void *userdata)
{
    struct conn *conn = userdata;
    ssh_channel ch;

    if (!conn->login.authenticated ||
        (ch = ssh_channel_new(session)) == NULL) {
        return NULL;
    }
    if (chan_add(conn, KIND_SESSION, ch) == NULL) {
        ssh_channel_free(ch);
        return NULL;
    }
    return ch;
}

/* libssh 0.10 has no server callback for direct-tcpip opens; they reach
 * the generic message callback.  Returning 1 makes libssh send its
 * default (refusing) reply, which also covers pty-req, env, shell, ... */
static int on_message(ssh_session session, ssh_message msg, void *userdata)
{
    struct conn *conn = userdata;
    const char *host;
    struct chan *c;
    ssh_channel ch;
    int fd;

    (void)session;
    if (!conn->login.authenticated ||
        ssh_message_type(msg) != SSH_REQUEST_CHANNEL_OPEN ||
        ssh_message_subtype(msg) != SSH_CHANNEL_DIRECT_TCPIP) {
        return 1;
    }
    host = ssh_message_channel_request_open_destination(msg);
    if (!is_loopback(host)) {
        return 1;
    }
    fd = dial(host, ssh_message_channel_request_open_destination_port(msg));
    if (fd < 0) {
        return 1;
    }
    ch = ssh_message_channel_request_open_reply_accept(msg);
    if (ch == NULL) {
        close(fd);
        return 0;
    }
    c = chan_add(conn, KIND_FORWARD, ch);
    if (c == NULL) {
        close(fd);
        ssh_channel_close(ch);
        ssh_channel_free(ch);
        return 0;
    }
    set_nonblocking(fd);
    c->w_out.fd = fd;           /* registered by the main loop */
    return 0;
}

/* ------------------------------------------------------------------ */
/* Per-channel progress (main loop)                                    */

static const struct {
    int no;
    const char *name;
} signal_names[] = {   /* the names RFC 4254 section 6.10 defines */
    {SIGABRT, "ABRT"}, {SIGALRM, "ALRM"}, {SIGFPE, "FPE"},
    {SIGHUP, "HUP"},   {SIGILL, "ILL"},   {SIGINT, "INT"},
    {SIGKILL, "KILL"}, {SIGPIPE, "PIPE"}, {SIGQUIT, "QUIT"},
    {SIGSEGV, "SEGV"}, {SIGTERM, "TERM"}, {SIGUSR1, "USR1"},
    {SIGUSR2, "USR2"},
};

static void send_exit(struct chan *c)
{
    if (WIFSIGNALED(c->status)) {
        int sig = WTERMSIG(c->status);
        size_t i;

        for (i = 0; i < sizeof(signal_names) / sizeof(signal_names[0]); i++) {
            if (signal_names[i].no == sig) {
                ssh_channel_request_send_exit_signal(
                    c->ch, signal_names[i].name, WCOREDUMP(c->status) ? 1 : 0,
                    "", "");
                return;
            }
        }
        /* no protocol name for it: report it the way a shell would */
        ssh_channel_request_send_exit_status(c->ch, 128 + sig);
        return;
    }
    ssh_channel_request_send_exit_status(c->ch, WEXITSTATUS(c->status));
}

/* Signal a command's process group.  Only used while its leader is not yet
 * reaped, so the group id cannot have been reused. */
static void hang_up(pid_t pid, int sig)
{
    if (kill(-pid, sig) != 0) {
        kill(pid, sig);
    }
}

static void try_reap(struct chan *c)
{
    if (c->pid <= 0 || c->reaped) {
        return;
    }
    if (c->w_pid.fd >= 0 && !(c->w_pid.ready & (POLLIN | POLLHUP | POLLERR))) {
        return;
    }
    if (waitpid(c->pid, &c->status, WNOHANG) == c->pid) {
        c->reaped = 1;
        watch_close(c->conn->event, &c->w_pid);
    }
}

static void close_channel_once(struct chan *c)
{
    if (!c->sent_close) {
        ssh_channel_close(c->ch);
        c->sent_close = 1;
    }
}

/* The client is gone (or the session broke): stop the command, drop the
 * local side, answer the CLOSE.  A running command is still waited for,
 * so that its CPU time is accounted.  Returns 1 once nothing is left. */
static int chan_abandon(struct chan *c)
{
    ssh_event ev = c->conn->event;

    if (c->pid > 0 && !c->reaped && !c->hup_sent) {
        hang_up(c->pid, SIGHUP);
        c->hup_sent = 1;
    }
    watch_close(ev, &c->w_out);
    watch_close(ev, &c->w_err);
    watch_close(ev, &c->w_in);
    close_channel_once(c);
    try_reap(c);
    return c->pid == 0 || c->reaped;
}

/* Moves one channel's bytes and advances its state; returns 1 when it is
 * finished and can be freed.  May call into libssh, which may dispatch
 * packets (and so our callbacks) while it flushes. */
static int chan_step(struct chan *c)
{
    ssh_event ev = c->conn->event;

    if (c->got_close || c->failed) {
        return chan_abandon(c);
    }
    pump_from_client(c, &c->in);
    pump_to_client(c, &c->out);
    if (c->kind == KIND_SESSION) {
        pump_to_client(c, &c->err);
    }
    if (c->got_close || c->failed) {
        return chan_abandon(c);
    }

    /* client EOF, once everything before it is delivered */
    if (c->got_eof && !c->in.shut && c->in.len == 0 && c->in.held == 0 &&
        c->in.w->fd >= 0) {
        if (c->kind == KIND_SESSION) {
            watch_close(ev, &c->w_in);
        } else {
            shutdown(c->w_out.fd, SHUT_WR);
        }
        c->in.shut = 1;
    }

    if (c->kind == KIND_SESSION) {
        if (c->in.broken) {
            watch_close(ev, &c->w_in);  /* the command stopped reading */
        }
        if (c->pid == 0) {
            return 0;           /* no exec yet (or never: wait for CLOSE) */
        }
        if (c->out.eof && c->out.len == 0) {
            watch_close(ev, &c->w_out);
        }
        if (c->err.eof && c->err.len == 0) {
            watch_close(ev, &c->w_err);
        }
        try_reap(c);
        if (c->reaped && c->w_out.fd < 0 && c->w_err.fd < 0) {
            /* all output delivered and the command gone */
            send_exit(c);
            ssh_channel_send_eof(c->ch);
            close_channel_once(c);
            return 1;
        }
        return 0;
    }

    if (c->out.eof && c->out.len == 0 && !c->sent_eof) {
        ssh_channel_send_eof(c->ch);    /* destination half-closed */
        c->sent_eof = 1;
    }
    if ((c->sent_eof && c->in.shut) || c->in.broken) {
        close_channel_once(c);
        return 1;
    }
    return 0;
}

/* Decides what each fd of a channel is polled for and updates the
 * ssh_event.  Makes no libssh call that could dispatch packets, so what it
 * sees stays true until the next poll.  Returns 1 if there is work that no
 * poll event would announce (bytes waiting for a window that is open again,
 * an unhandled CLOSE): then the loop must not sleep. */
static int chan_plan(struct chan *c)
{
    ssh_event ev = c->conn->event;
    int window_open, usable;
    struct from_client *in = &c->in;

    usable = !c->got_close && !c->failed;
    window_open = usable && ssh_channel_window_size(c->ch) > 0;

    /* a source is read only into an empty buffer, and only while the
     * client can take more */
    c->w_out.want = (!c->out.eof && c->out.len == 0 && window_open)
                        ? POLLIN : 0;
    c->w_err.want = (!c->err.eof && c->err.len == 0 && window_open)
                        ? POLLIN : 0;
    if (c->kind == KIND_SESSION) {
        c->w_in.want = 0;
    }
    /* bytes for the local side: wait until it can take them */
    if (usable && !in->shut && !in->broken && (in->len > 0 || in->held > 0)) {
        in->w->want |= POLLOUT;
    }
    c->w_pid.want = (c->pid > 0 && !c->reaped) ? POLLIN : 0;
    watch_sync(ev, &c->w_out);
    watch_sync(ev, &c->w_err);
    watch_sync(ev, &c->w_in);
    watch_sync(ev, &c->w_pid);

    if (!usable) {
        return !c->sent_close;
    }
    return window_open && (c->out.len > 0 || c->err.len > 0);
}

static void chan_free(struct chan *c)
{
    ssh_event ev = c->conn->event;

    watch_close(ev, &c->w_out);
    watch_close(ev, &c->w_err);
    watch_close(ev, &c->w_in);
    watch_close(ev, &c->w_pid);
    /* libssh keeps the channel until the peer's CLOSE arrives; it must
     * not call back into this struct after we free it. */
    ssh_remove_channel_callbacks(c->ch, &c->cbs);
    ssh_channel_free(c->ch);
    free(c);
}

/* Session over: hang up on what still runs and wait for it, boundedly, so
 * that no command outlives the accounting. */
static void stop_commands(struct conn *conn)
{
    struct chan *c;
    int waited_ms = 0, pending;

    for (c = conn->chans; c != NULL; c = c->next) {
        if (c->pid > 0 && !c->reaped) {
            hang_up(c->pid, SIGHUP);
        }
    }
    do {
        pending = 0;
        for (c = conn->chans; c != NULL; c = c->next) {
            if (c->pid > 0 && !c->reaped) {
                if (waitpid(c->pid, &c->status, WNOHANG) == c->pid) {
                    c->reaped = 1;
                } else if (waited_ms >= 2000) {
                    hang_up(c->pid, SIGKILL);
                    waitpid(c->pid, &c->status, 0);
                    c->reaped = 1;
                } else {
                    pending = 1;
                }
            }
        }
        if (pending) {
            poll(NULL, 0, 20);
            waited_ms += 20;
        }
    } while (pending);
}

/* ------------------------------------------------------------------ */
/* One connection, in its own process                                  */

static void serve(ssh_bind bind, int fd, const char *password)
{
    struct conn conn;
    struct ssh_server_callbacks_struct scb;
    long kex_timeout = KEX_TIMEOUT_S;
    time_t started = time(NULL);

    memset(&conn, 0, sizeof(conn));
    conn.login.password = password;
    conn.session = ssh_new();
    if (conn.session == NULL) {
        close(fd);
        return;
    }
    ssh_options_set(conn.session, SSH_OPTIONS_TIMEOUT, &kex_timeout);
    if (ssh_bind_accept_fd(bind, conn.session, fd) != SSH_OK) {
        ssh_free(conn.session); /* the process exits next, closing fd */
        return;
    }

    memset(&scb, 0, sizeof(scb));
    ssh_callbacks_init(&scb);
    scb.userdata = &conn;
    scb.auth_password_function = on_password;
    scb.channel_open_request_session_function = on_session_open;
    ssh_set_server_callbacks(conn.session, &scb);
    ssh_set_message_callback(conn.session, on_message, &conn);

    if (ssh_handle_key_exchange(conn.session) != SSH_OK) {
        ssh_free(conn.session);
        return;
    }
    ssh_set_auth_methods(conn.session, SSH_AUTH_METHOD_PASSWORD);
    /* From here on libssh must never wait: with a blocking session a
     * channel write would sit in a nested poll until the socket drained. */
    ssh_set_blocking(conn.session, 0);

    conn.event = ssh_event_new();
    if (conn.event == NULL ||
        ssh_event_add_session(conn.event, conn.session) != SSH_OK) {
        ssh_free(conn.session);
        return;
    }

    for (;;) {
        struct chan **link, *c;
        int timeout = conn.kick ? 0
                      : conn.need_reap_tick ? REAP_TICK_MS : LOOP_TICK_MS;
        int rc = ssh_event_dopoll(conn.event, timeout);

        /* Only now, outside any callback, touch fds and the event.  A
         * callback run from within this pass (libssh dispatches packets
         * while it flushes) sets `kick` again, and the next poll then does
         * not sleep. */
        conn.kick = 0;
        link = &conn.chans;
        while ((c = *link) != NULL) {
            if (chan_step(c)) {
                *link = c->next;
                chan_free(c);
            } else {
                link = &c->next;
            }
        }
        for (c = conn.chans; c != NULL; c = c->next) {
            c->w_out.ready = c->w_err.ready = 0;
            c->w_in.ready = c->w_pid.ready = 0;
            if (chan_plan(c)) {
                conn.kick = 1;
            }
        }
        if (rc == SSH_ERROR || !ssh_is_connected(conn.session)) {
            break;
        }
        if (!conn.login.authenticated &&
            time(NULL) - started > AUTH_DEADLINE_S) {
            break;
        }
    }

    stop_commands(&conn);
    while (conn.chans != NULL) {
        struct chan *c = conn.chans;
        conn.chans = c->next;
        chan_free(c);
    }
    ssh_event_remove_session(conn.event, conn.session);
    ssh_event_free(conn.event);
    ssh_disconnect(conn.session);
    ssh_free(conn.session);
}

/* ------------------------------------------------------------------ */
/* Listener                                                            */

/* Reaping here is what moves the connection processes' CPU time into our
 * own cutime/cstime. */
static void on_sigchld(int sig)
{
    int saved = errno;
    (void)sig;
    while (waitpid(-1, NULL, WNOHANG) > 0) {
    }
    errno = saved;
}

int main(int argc, char **argv)
{
    struct bench_args args;
    char shown[SHOWN_LEN];
    struct sigaction sa;
    ssh_bind bind;
    int lfd;

    parse_args(argc, argv, &args);
    keep_std_fds_taken();

    /* Broken pipes and reset sockets are handled where write() fails. */
    memset(&sa, 0, sizeof(sa));
    sigemptyset(&sa.sa_mask);
    sa.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &sa, NULL);
    sa.sa_handler = on_sigchld;
    sa.sa_flags = SA_RESTART | SA_NOCLDSTOP;
    sigaction(SIGCHLD, &sa, NULL);

    ssh_init();
    /* Load the host key once, here, so that a bad file fails at start-up
     * and every connection process inherits the parsed key. */
    bind = bind_with_hostkey(args.hostkey);
    if (bind == NULL) {
        return 1;
    }

    lfd = open_listener(&args, SOCK_CLOEXEC, LISTEN_BACKLOG, shown);
    if (lfd < 0) {
        return 1;
    }
    announce("c_libssh_server", shown);

    for (;;) {
        int one = 1;
        pid_t pid;
        int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);

        if (fd < 0) {
            if (errno != EINTR && errno != ECONNABORTED) {
                perror("accept");
                poll(NULL, 0, 100); /* e.g. out of fds: do not spin */
            }
            continue;
        }
        /* libssh leaves Nagle on; the small packets that end every
         * exchange (exit-status, EOF, CLOSE) would then wait for a
         * delayed ACK. */
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));

        pid = fork();
        if (pid == 0) {
            /* The connection process waits for its own commands through
             * pidfds; the listener's reaping handler must not steal them. */
            sa.sa_handler = SIG_DFL;
            sa.sa_flags = 0;
            sigaction(SIGCHLD, &sa, NULL);
            close(lfd);
            serve(bind, fd, args.password);
            _exit(0);
        }
        if (pid < 0) {
            perror("fork");
        }
        close(fd);
    }
}
