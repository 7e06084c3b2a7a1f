/*
 * bench_common.h -- what the C programs of the benchmarks share: their
 * command line, the host key and ssh_bind, the listening socket and the
 * line that announces it, and password authentication.  Static functions, so
 * each program compiles it in with no extra object file.
 */
#ifndef BENCH_COMMON_H
#define BENCH_COMMON_H

#include <libssh/libssh.h>
#include <libssh/server.h>

#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* Room for "host:port" as open_listener() shows it. */
#define SHOWN_LEN (NI_MAXHOST + NI_MAXSERV + 2)

struct bench_args {
    const char *port;
    const char *hostkey;
    const char *password;
    const char *addr;
};

static void usage(const char *prog)
{
    fprintf(stderr,
            "usage: %s --port P --hostkey FILE [--password PW] [--addr A]\n",
            prog);
    exit(2);
}

/* Exits through usage() on a bad command line. */
static void parse_args(int argc, char **argv, struct bench_args *args)
{
    int i;

    args->port = NULL;
    args->hostkey = NULL;
    args->password = "bench";
    args->addr = "127.0.0.1";
    for (i = 1; i < argc; i++) {
        const char *opt = argv[i];
        const char **slot = strcmp(opt, "--port") == 0       ? &args->port
                            : strcmp(opt, "--hostkey") == 0  ? &args->hostkey
                            : strcmp(opt, "--password") == 0 ? &args->password
                            : strcmp(opt, "--addr") == 0     ? &args->addr
                                                             : NULL;
        if (slot == NULL || i + 1 >= argc) {
            usage(argv[0]);
        }
        *slot = argv[++i];
    }
    if (args->port == NULL || args->hostkey == NULL) {
        usage(argv[0]);
    }
}

/* An ssh_bind holding the host key; NULL, after saying why, if the key
 * does not load.  Call ssh_init() first. */
static ssh_bind bind_with_hostkey(const char *hostkey)
{
    ssh_key key = NULL;
    ssh_bind bind;

    if (ssh_pki_import_privkey_file(hostkey, NULL, NULL, NULL, &key) !=
        SSH_OK) {
        fprintf(stderr, "cannot load host key %s\n", hostkey);
        return NULL;
    }
    bind = ssh_bind_new();
    if (bind == NULL ||
        ssh_bind_options_set(bind, SSH_BIND_OPTIONS_IMPORT_KEY, key) != 0) {
        fprintf(stderr, "cannot set up ssh_bind: %s\n",
                bind != NULL ? ssh_get_error(bind) : "out of memory");
        return NULL;
    }
    return bind;
}

/* The listening socket (sock_flags are ORed into its type), or -1 after
 * saying why.  `shown` gets the address to print, SHOWN_LEN bytes. */
static int open_listener(const struct bench_args *args, int sock_flags,
                         int backlog, char *shown)
{
    struct addrinfo hints, *list = NULL, *ai;
    int fd = -1, one = 1;

    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICHOST | AI_NUMERICSERV;
    if (getaddrinfo(args->addr, args->port, &hints, &list) == 0) {
        for (ai = list; ai != NULL && fd < 0; ai = ai->ai_next) {
            fd = socket(ai->ai_family, ai->ai_socktype | sock_flags,
                        ai->ai_protocol);
            if (fd < 0) {
                continue;
            }
            setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
            if (bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 ||
                listen(fd, backlog) != 0) {
                close(fd);
                fd = -1;
            }
        }
        freeaddrinfo(list);
    }
    if (fd < 0) {
        fprintf(stderr, "cannot listen on %s port %s: %s\n", args->addr,
                args->port, strerror(errno));
        return -1;
    }
    /* report the port actually bound (useful with --port 0) */
    {
        struct sockaddr_storage ss;
        socklen_t sl = sizeof(ss);
        char host[NI_MAXHOST], serv[NI_MAXSERV];

        snprintf(shown, SHOWN_LEN, "%s:%s", args->addr, args->port);
        if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0 &&
            getnameinfo((struct sockaddr *)&ss, sl, host, sizeof(host), serv,
                        sizeof(serv), NI_NUMERICHOST | NI_NUMERICSERV) == 0) {
            snprintf(shown, SHOWN_LEN, "%s:%s", host, serv);
        }
    }
    return fd;
}

static void announce(const char *prog, const char *shown)
{
    printf("%s (libssh %s) listening on %s, pid %d\n", prog, ssh_version(0),
           shown, (int)getpid());
    fflush(stdout);             /* servers.py waits for this line */
}

/* What password authentication needs of a connection.  on_password()
 * takes its userdata as one of these. */
struct login {
    const char *password;   /* the one accepted, for any user name */
    int authenticated;
};

static int on_password(ssh_session session, const char *user,
                       const char *password, void *userdata)
{
    struct login *login = userdata;

    (void)session;
    (void)user;
    if (password != NULL && strcmp(password, login->password) == 0) {
        login->authenticated = 1;
        return SSH_AUTH_SUCCESS;
    }
    return SSH_AUTH_DENIED;
}

#endif
