/*
 * c_libssh_floor -- what libssh itself needs per idle server session.
 *
 * The floor of the benchmark's idle workload: one process, one thread and
 * one ssh_event that holds every session.  It accepts, runs the key
 * exchange and password authentication (any user name), and then only
 * keeps the authenticated sessions until their client leaves.  It serves no
 * channel: every channel open and global request gets libssh's default
 * refusal.  So its private memory per connection is libssh's own per-session
 * state plus one small struct, with no per-connection process or thread.
 * Loopback benchmarks only; not hardened.
 *
 *   c_libssh_floor --port P --hostkey FILE [--password PW] [--addr A]
 *
 * Everything is non-blocking.  The listening socket sits in the ssh_event
 * next to the sessions; its callback only notes that it is readable, and the
 * main loop accepts after ssh_event_dopoll() has returned.  A new session's
 * first ssh_handle_key_exchange() call (non-blocking: it sends the banner,
 * sets up the key exchange and returns SSH_AGAIN) creates its poll handle,
 * which ssh_event_add_session() then moves into the shared event.  From
 * there the key exchange and the authentication run in libssh's packet
 * callbacks during ssh_event_dopoll().  After every poll the main loop drops
 * the sessions whose socket closed, and those not logged in within
 * AUTH_DEADLINE_S seconds.  Once every session is logged in, the poll has no
 * timeout: an idle server does not wake up at all.
 */
#define _GNU_SOURCE
#include <libssh/libssh.h>
#include <libssh/server.h>
#include <libssh/callbacks.h>

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "bench_common.h"

#define LISTEN_BACKLOG  512
#define ACCEPT_BATCH    64      /* accepts per loop pass */
#define AUTH_DEADLINE_S 60      /* drop connections that never log in */
#define LOOP_TICK_MS    1000    /* wake-up while a client is not logged in */

struct client {
    struct client *next;
    ssh_session session;
    struct ssh_server_callbacks_struct cbs;     /* libssh keeps a pointer */
    struct login login;
    time_t started;
};

static int on_listen_ready(socket_t fd, int revents, void *userdata)
{
    (void)fd;
    (void)revents;
    *(int *)userdata = 1;
    return 0;
}

static void client_free(ssh_event ev, struct client *c, int in_event)
{
    if (in_event) {
        ssh_event_remove_session(ev, c->session);
    }
    ssh_disconnect(c->session);
    ssh_free(c->session);
    free(c);
}

/* A new connection up to the point where libssh waits for the client's
 * banner; NULL if it failed (the fd is closed either way). */
static struct client *client_new(ssh_bind bind, ssh_event ev, int fd,
                                 const char *password)
{
    struct client *c = calloc(1, sizeof(*c));
    int rc;

    if (c == NULL || (c->session = ssh_new()) == NULL) {
        free(c);
        close(fd);
        return NULL;
    }
    c->login.password = password;
    c->started = time(NULL);
    if (ssh_bind_accept_fd(bind, c->session, fd) != SSH_OK) {
        if (ssh_get_fd(c->session) != fd) {
            close(fd);          /* libssh did not take it over */
        }
        client_free(ev, c, 0);
        return NULL;
    }
    ssh_callbacks_init(&c->cbs);
    c->cbs.userdata = &c->login;
    c->cbs.auth_password_function = on_password;
    ssh_set_server_callbacks(c->session, &c->cbs);
    ssh_set_auth_methods(c->session, SSH_AUTH_METHOD_PASSWORD);
    ssh_set_blocking(c->session, 0);

    rc = ssh_handle_key_exchange(c->session);
    if (rc == SSH_ERROR) {
        client_free(ev, c, 0);
        return NULL;
    }
    if (ssh_event_add_session(ev, c->session) != SSH_OK) {
        client_free(ev, c, 0);
        return NULL;
    }
    return c;
}

static void accept_some(int lfd, ssh_bind bind, ssh_event ev,
                        struct client **list, const char *password)
{
    int i;

    for (i = 0; i < ACCEPT_BATCH; i++) {
        int one = 1;
        struct client *c;
        int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);

        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED) {
                continue;
            }
            if (errno != EAGAIN && errno != EWOULDBLOCK) {
                perror("accept");   /* e.g. out of fds: retried next pass */
            }
            return;
        }
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        c = client_new(bind, ev, fd, password);
        if (c != NULL) {
            c->next = *list;
            *list = c;
        }
    }
}

int main(int argc, char **argv)
{
    struct bench_args args;
    char shown[SHOWN_LEN];
    struct client *clients = NULL;
    ssh_bind bind;
    ssh_event ev;
    int lfd, listen_ready = 0;

    parse_args(argc, argv, &args);
    signal(SIGPIPE, SIG_IGN);

    ssh_init();
    bind = bind_with_hostkey(args.hostkey);
    if (bind == NULL) {
        return 1;
    }
    lfd = open_listener(&args, SOCK_CLOEXEC | SOCK_NONBLOCK, LISTEN_BACKLOG,
                        shown);
    if (lfd < 0) {
        return 1;
    }
    ev = ssh_event_new();
    if (ev == NULL ||
        ssh_event_add_fd(ev, lfd, POLLIN, on_listen_ready, &listen_ready) !=
            SSH_OK) {
        fprintf(stderr, "cannot set up the ssh_event\n");
        return 1;
    }
    announce("c_libssh_floor", shown);

    for (;;) {                  /* runs until a signal ends the process */
        struct client **link, *c;
        int waiting = 0;        /* clients not logged in yet */
        time_t now;

        for (c = clients; c != NULL && !waiting; c = c->next) {
            waiting = !c->login.authenticated;
        }
        /* Its return value only says that some handle went away (a closed
         * socket); which sessions ended is checked below, one by one. */
        ssh_event_dopoll(ev, waiting ? LOOP_TICK_MS : -1);
        if (listen_ready) {
            listen_ready = 0;
            accept_some(lfd, bind, ev, &clients, args.password);
        }
        now = time(NULL);
        link = &clients;
        while ((c = *link) != NULL) {
            int gone = !ssh_is_connected(c->session) ||
                       (ssh_get_status(c->session) &
                        (SSH_CLOSED | SSH_CLOSED_ERROR));

            if (gone || (!c->login.authenticated &&
                         now - c->started > AUTH_DEADLINE_S)) {
                *link = c->next;
                client_free(ev, c, 1);
            } else {
                link = &c->next;
            }
        }
    }
}
