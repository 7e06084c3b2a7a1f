# SPDX-License-Identifier: MIT
"""cffi builder for ``pylibssh_server._libssh`` (out-of-line API mode).

Declarations are grouped per libssh header (libssh.h, server.h, callbacks.h), then the
version shims, then every ``extern "Python"`` trampoline.  Only what the package calls is
declared; API mode makes the compiler check each prototype against the real headers.

The libssh used is the system one found with ``pkg-config libssh``, or a vendored build when
``PYLIBSSH_LIBSSH_PREFIX`` names its install prefix (see ``vendor/README.md``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig

from cffi import FFI

MISSING_HEADERS = """
pylibssh_server: the libssh development headers were not found (libssh/libssh.h).
Install them, then build again:
    Debian/Ubuntu:  apt-get install libssh-dev pkg-config
    Fedora/RHEL:    dnf install libssh-devel pkgconf-pkg-config
or point PYLIBSSH_LIBSSH_PREFIX at a libssh install prefix (see vendor/README.md).
"""

CDEF_LIBSSH = """
/* ---- libssh.h ---- */
typedef int socket_t;
typedef struct ssh_session_struct *ssh_session;
typedef struct ssh_channel_struct *ssh_channel;
typedef struct ssh_message_struct *ssh_message;
typedef struct ssh_key_struct *ssh_key;
typedef struct ssh_string_struct *ssh_string;
typedef struct ssh_event_struct *ssh_event;

#define SSH_OK ...
#define SSH_ERROR ...
#define SSH_AGAIN ...
#define SSH_EOF ...
#define SSH_CLOSED ...
#define SSH_READ_PENDING ...
#define SSH_CLOSED_ERROR ...
#define SSH_WRITE_PENDING ...
#define SSH_AUTH_METHOD_UNKNOWN ...
#define SSH_AUTH_METHOD_NONE ...
#define SSH_AUTH_METHOD_PASSWORD ...
#define SSH_AUTH_METHOD_PUBLICKEY ...
#define SSH_AUTH_METHOD_HOSTBASED ...
#define SSH_AUTH_METHOD_INTERACTIVE ...
#define SSH_AUTH_METHOD_GSSAPI_MIC ...
#define SSH_LOG_NONE ...
#define SSH_LOG_WARN ...
#define SSH_LOG_INFO ...
#define SSH_LOG_DEBUG ...
#define SSH_LOG_TRACE ...
#define POLLIN ...
#define POLLOUT ...
#define POLLERR ...
#define POLLHUP ...
#define POLLNVAL ...

enum ssh_auth_e { SSH_AUTH_SUCCESS, SSH_AUTH_DENIED, SSH_AUTH_PARTIAL, SSH_AUTH_INFO,
                  SSH_AUTH_AGAIN, SSH_AUTH_ERROR, ... };
enum ssh_requests_e { SSH_REQUEST_AUTH, SSH_REQUEST_CHANNEL_OPEN, SSH_REQUEST_CHANNEL,
                      SSH_REQUEST_SERVICE, SSH_REQUEST_GLOBAL, ... };
enum ssh_channel_type_e { SSH_CHANNEL_UNKNOWN, SSH_CHANNEL_SESSION, SSH_CHANNEL_DIRECT_TCPIP,
                          SSH_CHANNEL_FORWARDED_TCPIP, SSH_CHANNEL_X11,
                          SSH_CHANNEL_AUTH_AGENT, ... };
enum ssh_channel_requests_e { SSH_CHANNEL_REQUEST_UNKNOWN, SSH_CHANNEL_REQUEST_PTY,
                              SSH_CHANNEL_REQUEST_EXEC, SSH_CHANNEL_REQUEST_SHELL,
                              SSH_CHANNEL_REQUEST_ENV, SSH_CHANNEL_REQUEST_SUBSYSTEM,
                              SSH_CHANNEL_REQUEST_WINDOW_CHANGE, SSH_CHANNEL_REQUEST_X11, ... };
enum ssh_global_requests_e { SSH_GLOBAL_REQUEST_UNKNOWN, SSH_GLOBAL_REQUEST_TCPIP_FORWARD,
                             SSH_GLOBAL_REQUEST_CANCEL_TCPIP_FORWARD,
                             SSH_GLOBAL_REQUEST_KEEPALIVE, ... };
enum ssh_publickey_state_e { SSH_PUBLICKEY_STATE_ERROR, SSH_PUBLICKEY_STATE_NONE,
                             SSH_PUBLICKEY_STATE_VALID, SSH_PUBLICKEY_STATE_WRONG, ... };
enum ssh_keytypes_e { SSH_KEYTYPE_UNKNOWN, SSH_KEYTYPE_DSS, SSH_KEYTYPE_RSA, SSH_KEYTYPE_RSA1,
                      SSH_KEYTYPE_ECDSA, SSH_KEYTYPE_ED25519, SSH_KEYTYPE_DSS_CERT01,
                      SSH_KEYTYPE_RSA_CERT01, SSH_KEYTYPE_ECDSA_P256, SSH_KEYTYPE_ECDSA_P384,
                      SSH_KEYTYPE_ECDSA_P521, SSH_KEYTYPE_ECDSA_P256_CERT01,
                      SSH_KEYTYPE_ECDSA_P384_CERT01, SSH_KEYTYPE_ECDSA_P521_CERT01,
                      SSH_KEYTYPE_ED25519_CERT01, SSH_KEYTYPE_SK_ECDSA, SSH_KEYTYPE_SK_ED25519,
                      ... };
enum ssh_keycmp_e { SSH_KEY_CMP_PUBLIC, SSH_KEY_CMP_PRIVATE, ... };
enum ssh_publickey_hash_type { SSH_PUBLICKEY_HASH_SHA1, SSH_PUBLICKEY_HASH_MD5,
                               SSH_PUBLICKEY_HASH_SHA256, ... };
enum ssh_error_types_e { SSH_NO_ERROR, SSH_REQUEST_DENIED, SSH_FATAL, SSH_EINTR, ... };
enum ssh_options_e { SSH_OPTIONS_TIMEOUT, SSH_OPTIONS_TIMEOUT_USEC, SSH_OPTIONS_LOG_VERBOSITY,
                     SSH_OPTIONS_PROCESS_CONFIG, SSH_OPTIONS_NODELAY, ... };

typedef int (*ssh_auth_callback)(const char *prompt, char *buf, size_t len, int echo,
                                 int verify, void *userdata);
typedef int (*ssh_event_callback)(socket_t fd, int revents, void *userdata);

int ssh_init(void);
const char *ssh_version(int req_version);
const char *ssh_get_error(void *error);
int ssh_get_error_code(void *error);

ssh_session ssh_new(void);
void ssh_free(ssh_session session);
void ssh_disconnect(ssh_session session);
void ssh_silent_disconnect(ssh_session session);
int ssh_options_set(ssh_session session, enum ssh_options_e type, const void *value);
void ssh_set_blocking(ssh_session session, int blocking);
int ssh_is_blocking(ssh_session session);
socket_t ssh_get_fd(ssh_session session);
int ssh_get_status(ssh_session session);
int ssh_get_poll_flags(ssh_session session);
int ssh_is_connected(ssh_session session);
int ssh_blocking_flush(ssh_session session, int timeout);
const char *ssh_get_clientbanner(ssh_session session);
int ssh_get_openssh_version(ssh_session session);
const char *ssh_get_kex_algo(ssh_session session);
const char *ssh_get_cipher_in(ssh_session session);
const char *ssh_get_cipher_out(ssh_session session);
int ssh_session_set_disconnect_message(ssh_session session, const char *message);
int ssh_userauth_kbdint_getnanswers(ssh_session session);
const char *ssh_userauth_kbdint_getanswer(ssh_session session, unsigned int i);

ssh_channel ssh_channel_new(ssh_session session);
void ssh_channel_free(ssh_channel channel);
int ssh_channel_close(ssh_channel channel);
int ssh_channel_send_eof(ssh_channel channel);
int ssh_channel_write(ssh_channel channel, const void *data, uint32_t len);
int ssh_channel_write_stderr(ssh_channel channel, const void *data, uint32_t len);
int ssh_channel_read_nonblocking(ssh_channel channel, void *dest, uint32_t count,
                                 int is_stderr);
int ssh_channel_poll(ssh_channel channel, int is_stderr);
uint32_t ssh_channel_window_size(ssh_channel channel);
int ssh_channel_is_open(ssh_channel channel);
int ssh_channel_open_auth_agent(ssh_channel channel);
int ssh_channel_is_closed(ssh_channel channel);
int ssh_channel_is_eof(ssh_channel channel);
int ssh_channel_request_send_exit_status(ssh_channel channel, int exit_status);
int ssh_channel_request_send_exit_signal(ssh_channel channel, const char *signum, int core,
                                         const char *errmsg, const char *lang);
int ssh_channel_open_forward(ssh_channel channel, const char *remotehost, int remoteport,
                             const char *sourcehost, int localport);
ssh_session ssh_channel_get_session(ssh_channel channel);

ssh_event ssh_event_new(void);
int ssh_event_add_fd(ssh_event event, socket_t fd, short events, ssh_event_callback cb,
                     void *userdata);
int ssh_event_add_session(ssh_event event, ssh_session session);
int ssh_event_dopoll(ssh_event event, int timeout);
int ssh_event_remove_fd(ssh_event event, socket_t fd);
int ssh_event_remove_session(ssh_event event, ssh_session session);
void ssh_event_free(ssh_event event);

ssh_key ssh_key_new(void);
void ssh_key_free(ssh_key key);
enum ssh_keytypes_e ssh_key_type(const ssh_key key);
const char *ssh_key_type_to_char(enum ssh_keytypes_e type);
enum ssh_keytypes_e ssh_key_type_from_name(const char *name);
int ssh_key_is_public(const ssh_key k);
int ssh_key_is_private(const ssh_key k);
int ssh_key_cmp(const ssh_key k1, const ssh_key k2, enum ssh_keycmp_e what);
ssh_key ssh_key_dup(const ssh_key key);
int ssh_pki_generate(enum ssh_keytypes_e type, int parameter, ssh_key *pkey);
int ssh_pki_import_privkey_base64(const char *b64_key, const char *passphrase,
                                  ssh_auth_callback auth_fn, void *auth_data, ssh_key *pkey);
int ssh_pki_export_privkey_base64(const ssh_key privkey, const char *passphrase,
                                  ssh_auth_callback auth_fn, void *auth_data, char **b64_key);
int ssh_pki_import_privkey_file(const char *filename, const char *passphrase,
                                ssh_auth_callback auth_fn, void *auth_data, ssh_key *pkey);
int ssh_pki_export_privkey_file(const ssh_key privkey, const char *passphrase,
                                ssh_auth_callback auth_fn, void *auth_data,
                                const char *filename);
int ssh_pki_import_pubkey_base64(const char *b64_key, enum ssh_keytypes_e type,
                                 ssh_key *pkey);
int ssh_pki_import_pubkey_file(const char *filename, ssh_key *pkey);
int ssh_pki_export_pubkey_base64(const ssh_key key, char **b64_key);
int ssh_pki_export_pubkey_file(const ssh_key key, const char *filename);
int ssh_pki_export_privkey_to_pubkey(const ssh_key privkey, ssh_key *pkey);
int ssh_get_publickey_hash(const ssh_key key, enum ssh_publickey_hash_type type,
                           unsigned char **hash, size_t *hlen);
void ssh_clean_pubkey_hash(unsigned char **hash);
char *ssh_get_fingerprint_hash(enum ssh_publickey_hash_type type, unsigned char *hash,
                               size_t len);
void ssh_string_free_char(char *s);

/* ---- server.h ---- */
typedef struct ssh_bind_struct *ssh_bind;
enum ssh_bind_options_e { SSH_BIND_OPTIONS_BINDADDR, SSH_BIND_OPTIONS_BINDPORT,
                          SSH_BIND_OPTIONS_BINDPORT_STR, SSH_BIND_OPTIONS_HOSTKEY,
                          SSH_BIND_OPTIONS_BANNER, SSH_BIND_OPTIONS_LOG_VERBOSITY,
                          SSH_BIND_OPTIONS_IMPORT_KEY, SSH_BIND_OPTIONS_KEY_EXCHANGE,
                          SSH_BIND_OPTIONS_CIPHERS_C_S, SSH_BIND_OPTIONS_CIPHERS_S_C,
                          SSH_BIND_OPTIONS_HMAC_C_S, SSH_BIND_OPTIONS_HMAC_S_C,
                          SSH_BIND_OPTIONS_PUBKEY_ACCEPTED_KEY_TYPES,
                          SSH_BIND_OPTIONS_HOSTKEY_ALGORITHMS, SSH_BIND_OPTIONS_PROCESS_CONFIG,
                          SSH_BIND_OPTIONS_RSA_MIN_SIZE, ... };

ssh_bind ssh_bind_new(void);
int ssh_bind_options_set(ssh_bind sshbind, enum ssh_bind_options_e type, const void *value);
int ssh_bind_listen(ssh_bind ssh_bind_o);
void ssh_bind_set_blocking(ssh_bind ssh_bind_o, int blocking);
socket_t ssh_bind_get_fd(ssh_bind ssh_bind_o);
int ssh_bind_accept(ssh_bind ssh_bind_o, ssh_session session);
int ssh_bind_accept_fd(ssh_bind ssh_bind_o, ssh_session session, socket_t fd);
void ssh_bind_free(ssh_bind ssh_bind_o);
int ssh_handle_key_exchange(ssh_session session);
int ssh_server_init_kex(ssh_session session);
void ssh_set_auth_methods(ssh_session session, int auth_methods);
int ssh_send_issue_banner(ssh_session session, const ssh_string banner);
ssh_string ssh_string_from_char(const char *what);
void ssh_string_free(ssh_string str);
int ssh_send_keepalive(ssh_session session);

int ssh_message_type(ssh_message msg);
int ssh_message_subtype(ssh_message msg);
int ssh_message_reply_default(ssh_message msg);
const char *ssh_message_auth_user(ssh_message msg);
const char *ssh_message_auth_password(ssh_message msg);
ssh_key ssh_message_auth_pubkey(ssh_message msg);
enum ssh_publickey_state_e ssh_message_auth_publickey_state(ssh_message msg);
int ssh_message_auth_kbdint_is_response(ssh_message msg);
int ssh_message_auth_reply_success(ssh_message msg, int partial);
int ssh_message_auth_reply_pk_ok_simple(ssh_message msg);
int ssh_message_auth_set_methods(ssh_message msg, int methods);
int ssh_message_auth_interactive_request(ssh_message msg, const char *name,
                                         const char *instruction, unsigned int num_prompts,
                                         const char **prompts, char *echo);
const char *ssh_message_service_service(ssh_message msg);
int ssh_message_service_reply_success(ssh_message msg);
const char *ssh_message_channel_request_open_originator(ssh_message msg);
int ssh_message_channel_request_open_originator_port(ssh_message msg);
const char *ssh_message_channel_request_open_destination(ssh_message msg);
int ssh_message_channel_request_open_destination_port(ssh_message msg);
ssh_channel ssh_message_channel_request_open_reply_accept(ssh_message msg);
int ssh_message_channel_request_open_reply_accept_channel(ssh_message msg, ssh_channel chan);
ssh_channel ssh_message_channel_request_channel(ssh_message msg);
int ssh_message_channel_request_reply_success(ssh_message msg);
const char *ssh_message_global_request_address(ssh_message msg);
int ssh_message_global_request_port(ssh_message msg);
int ssh_message_global_request_reply_success(ssh_message msg, uint16_t bound_port);
int ssh_channel_open_reverse_forward(ssh_channel channel, const char *remotehost,
                                     int remoteport, const char *sourcehost, int localport);
int ssh_channel_open_x11(ssh_channel channel, const char *orig_addr, int orig_port);

/* ---- callbacks.h ---- */
typedef int (*ssh_message_callback)(ssh_session, ssh_message message, void *user);
typedef void (*ssh_logging_callback)(int priority, const char *function, const char *buffer,
                                     void *userdata);
typedef void (*ssh_global_request_callback)(ssh_session session, ssh_message message,
                                            void *userdata);

struct ssh_callbacks_struct {
    size_t size;
    void *userdata;
    ssh_global_request_callback global_request_function;
    ...;
};
typedef struct ssh_callbacks_struct *ssh_callbacks;

struct ssh_server_callbacks_struct {
    size_t size;
    void *userdata;
    int (*auth_password_function)(ssh_session, const char *, const char *, void *);
    int (*auth_none_function)(ssh_session, const char *, void *);
    int (*auth_gssapi_mic_function)(ssh_session, const char *, const char *, void *);
    int (*auth_pubkey_function)(ssh_session, const char *, struct ssh_key_struct *, char,
                                void *);
    int (*service_request_function)(ssh_session, const char *, void *);
    ssh_channel (*channel_open_request_session_function)(ssh_session, void *);
    ...;
};
typedef struct ssh_server_callbacks_struct *ssh_server_callbacks;

struct ssh_channel_callbacks_struct {
    size_t size;
    void *userdata;
    int (*channel_data_function)(ssh_session, ssh_channel, void *, uint32_t, int, void *);
    void (*channel_eof_function)(ssh_session, ssh_channel, void *);
    void (*channel_close_function)(ssh_session, ssh_channel, void *);
    void (*channel_signal_function)(ssh_session, ssh_channel, const char *, void *);
    void (*channel_exit_status_function)(ssh_session, ssh_channel, int, void *);
    void (*channel_exit_signal_function)(ssh_session, ssh_channel, const char *, int,
                                         const char *, const char *, void *);
    int (*channel_pty_request_function)(ssh_session, ssh_channel, const char *, int, int, int,
                                        int, void *);
    int (*channel_shell_request_function)(ssh_session, ssh_channel, void *);
    void (*channel_auth_agent_req_function)(ssh_session, ssh_channel, void *);
    void (*channel_x11_req_function)(ssh_session, ssh_channel, int, const char *, const char *,
                                     uint32_t, void *);
    int (*channel_pty_window_change_function)(ssh_session, ssh_channel, int, int, int, int,
                                              void *);
    int (*channel_exec_request_function)(ssh_session, ssh_channel, const char *, void *);
    int (*channel_env_request_function)(ssh_session, ssh_channel, const char *, const char *,
                                        void *);
    int (*channel_subsystem_request_function)(ssh_session, ssh_channel, const char *, void *);
    int (*channel_write_wontblock_function)(ssh_session, ssh_channel, uint32_t, void *);
    ...;
};
typedef struct ssh_channel_callbacks_struct *ssh_channel_callbacks;

int ssh_set_server_callbacks(ssh_session session, ssh_server_callbacks cb);
int ssh_set_callbacks(ssh_session session, ssh_callbacks cb);
int ssh_set_channel_callbacks(ssh_channel channel, ssh_channel_callbacks cb);
int ssh_add_channel_callbacks(ssh_channel channel, ssh_channel_callbacks cb);
int ssh_remove_channel_callbacks(ssh_channel channel, ssh_channel_callbacks cb);
void ssh_set_message_callback(ssh_session session, ssh_message_callback ssh_bind_message_callback,
                              void *data);
int ssh_set_log_callback(ssh_logging_callback cb);
int ssh_set_log_level(int level);
"""

# Version-dependent pieces: integer flags and setters implemented in the C preamble, so one cdef
# serves every libssh version (a field missing from older headers would fail the build).
CDEF_SHIMS = """
/* ---- version shims ---- */
#define PYLIBSSH_HEADER_VERSION_INT ...
#define PYLIBSSH_HAS_CHANNEL_OPEN_RESPONSE ...
#define PYLIBSSH_HAS_SERVER_KBDINT_CB ...
#define PYLIBSSH_HAS_SERVER_DIRECT_TCPIP_CB ...
#define PYLIBSSH_HAS_IMPORT_KEY_STR ...
#define PYLIBSSH_HAS_NO_MORE_SESSIONS ...
#define PYLIBSSH_HAS_SFTP_SERVER_CALLBACKS ...
int pylibssh_server_cb_set_kbdint(struct ssh_server_callbacks_struct *cb, int on);
int pylibssh_server_cb_set_direct_tcpip(struct ssh_server_callbacks_struct *cb, int on);
int pylibssh_channel_cb_set_open_response(struct ssh_channel_callbacks_struct *cb, int on);
/* ---- poll batching (pylibssh_server/event.py) ---- */
#define PYLIBSSH_SESSION_CONNECTED ...
#define PYLIBSSH_SESSION_FATAL ...
struct pylibssh_batch {
    int stop[2];
    long long unflushed;
    ...;
};
int pylibssh_event_dopoll_batch(ssh_event event, int timeout, int max_rounds, int *stop,
                                int linger_fd);
int pylibssh_session_state(ssh_session session);
int pylibssh_message_x11(ssh_message msg, int *single_connection, const char **protocol,
                         int *screen);
/* ---- fd pipes: channel data to an fd, an fd into a channel (pylibssh_server/pipe.py) ---- */
#define PYLIBSSH_PIPE_BLOCKED ...
#define PYLIBSSH_PIPE_BACKLOG ...
#define PYLIBSSH_PIPE_ERROR ...
#define PYLIBSSH_PIPE_EOF ...
#define PYLIBSSH_PIPE_STALLED ...
#define PYLIBSSH_PIPE_OVERFLOW ...
#define PYLIBSSH_PIPE_PAUSED ...
#define PYLIBSSH_PIPE_DEAD ...
struct pylibssh_sink {
    struct ssh_channel_callbacks_struct cb;
    int fd;
    int flags;
    int err;
    size_t len;
    size_t limit;
    uint32_t overflow;
    unsigned long long bytes;
    int *stop;
    ...;
};
struct pylibssh_pump {
    int fd;
    int flags;
    int err;
    int is_stderr;
    ssh_channel channel;
    unsigned long long bytes;
    long long *unflushed;
    long long out_limit;
    int *stop;
    ...;
};
void pylibssh_sink_init(struct pylibssh_sink *p, int fd, int is_socket);
int pylibssh_sink_attach(struct pylibssh_sink *p, ssh_channel channel);
int pylibssh_sink_detach(struct pylibssh_sink *p, ssh_channel channel);
int pylibssh_sink_drain(struct pylibssh_sink *p, ssh_channel channel);
int pylibssh_sink_writable(socket_t fd, int revents, void *userdata);
int pylibssh_sink_shutdown(struct pylibssh_sink *p);
void pylibssh_sink_release(struct pylibssh_sink *p);
int pylibssh_pump_ready(socket_t fd, int revents, void *userdata);
int pylibssh_pump_unstall(struct pylibssh_pump *p);
void pylibssh_pump_release(struct pylibssh_pump *p);
"""

CDEF_TRAMPOLINES = """
/* ---- extern "Python" trampolines (pylibssh_server/callbacks.py) ---- */
extern "Python" {
    void _log_function_cb(int, const char *, const char *, void *);
    int _event_fd_cb(socket_t, int, void *);
    int _message_function_cb(ssh_session, ssh_message, void *);
    void _global_request_function_cb(ssh_session, ssh_message, void *);

    int _auth_password_function_cb(ssh_session, const char *, const char *, void *);
    int _auth_none_function_cb(ssh_session, const char *, void *);
    int _auth_gssapi_mic_function_cb(ssh_session, const char *, const char *, void *);
    int _auth_pubkey_function_cb(ssh_session, const char *, struct ssh_key_struct *, char,
                                 void *);
    int _service_request_function_cb(ssh_session, const char *, void *);
    ssh_channel _channel_open_request_session_function_cb(ssh_session, void *);
    int _auth_kbdint_function_cb(ssh_message, ssh_session, void *);
    ssh_channel _channel_open_request_direct_tcpip_function_cb(ssh_session, const char *, int,
                                                               const char *, int, void *);

    int _channel_data_function_cb(ssh_session, ssh_channel, void *, uint32_t, int, void *);
    void _channel_eof_function_cb(ssh_session, ssh_channel, void *);
    void _channel_close_function_cb(ssh_session, ssh_channel, void *);
    void _channel_signal_function_cb(ssh_session, ssh_channel, const char *, void *);
    void _channel_exit_status_function_cb(ssh_session, ssh_channel, int, void *);
    void _channel_exit_signal_function_cb(ssh_session, ssh_channel, const char *, int,
                                          const char *, const char *, void *);
    int _channel_pty_request_function_cb(ssh_session, ssh_channel, const char *, int, int, int,
                                         int, void *);
    int _channel_shell_request_function_cb(ssh_session, ssh_channel, void *);
    void _channel_auth_agent_req_function_cb(ssh_session, ssh_channel, void *);
    void _channel_x11_req_function_cb(ssh_session, ssh_channel, int, const char *, const char *,
                                      uint32_t, void *);
    int _channel_pty_window_change_function_cb(ssh_session, ssh_channel, int, int, int, int,
                                               void *);
    int _channel_exec_request_function_cb(ssh_session, ssh_channel, const char *, void *);
    int _channel_env_request_function_cb(ssh_session, ssh_channel, const char *, const char *,
                                         void *);
    int _channel_subsystem_request_function_cb(ssh_session, ssh_channel, const char *, void *);
    int _channel_write_wontblock_function_cb(ssh_session, ssh_channel, uint32_t, void *);
    void _channel_open_response_function_cb(ssh_session, ssh_channel, _Bool, void *);
}
"""

C_SOURCE = r"""
#define WITH_SERVER 1
#include <poll.h>
#include <stdbool.h>
#include <time.h>
#include <libssh/libssh.h>
#include <libssh/server.h>
#include <libssh/callbacks.h>

#define PYLIBSSH_HEADER_VERSION_INT LIBSSH_VERSION_INT
#define PYLIBSSH_AT_LEAST(a, b, c) (LIBSSH_VERSION_INT >= SSH_VERSION_INT(a, b, c))
#define PYLIBSSH_HAS_CHANNEL_OPEN_RESPONSE PYLIBSSH_AT_LEAST(0, 11, 0)
#define PYLIBSSH_HAS_IMPORT_KEY_STR PYLIBSSH_AT_LEAST(0, 11, 0)
#define PYLIBSSH_HAS_NO_MORE_SESSIONS PYLIBSSH_AT_LEAST(0, 11, 0)
#define PYLIBSSH_HAS_SFTP_SERVER_CALLBACKS PYLIBSSH_AT_LEAST(0, 11, 0)
#define PYLIBSSH_HAS_SERVER_KBDINT_CB PYLIBSSH_AT_LEAST(0, 12, 0)
#define PYLIBSSH_HAS_SERVER_DIRECT_TCPIP_CB PYLIBSSH_AT_LEAST(0, 12, 0)

/* The extern "Python" trampolines are static functions defined by cffi further down. */
static int _auth_kbdint_function_cb(ssh_message, ssh_session, void *);
static ssh_channel _channel_open_request_direct_tcpip_function_cb(ssh_session, const char *,
                                                                  int, const char *, int,
                                                                  void *);
static void _channel_open_response_function_cb(ssh_session, ssh_channel, _Bool, void *);

static int pylibssh_server_cb_set_kbdint(struct ssh_server_callbacks_struct *cb, int on)
{
#if PYLIBSSH_HAS_SERVER_KBDINT_CB
    cb->auth_kbdint_function = on ? _auth_kbdint_function_cb : NULL;
    return 0;
#else
    (void)cb; (void)on; (void)_auth_kbdint_function_cb;
    return -1;
#endif
}

static int pylibssh_server_cb_set_direct_tcpip(struct ssh_server_callbacks_struct *cb, int on)
{
#if PYLIBSSH_HAS_SERVER_DIRECT_TCPIP_CB
    cb->channel_open_request_direct_tcpip_function =
        on ? _channel_open_request_direct_tcpip_function_cb : NULL;
    return 0;
#else
    (void)cb; (void)on; (void)_channel_open_request_direct_tcpip_function_cb;
    return -1;
#endif
}

static int pylibssh_channel_cb_set_open_response(struct ssh_channel_callbacks_struct *cb, int on)
{
#if PYLIBSSH_HAS_CHANNEL_OPEN_RESPONSE
    cb->channel_open_response_function = on ? _channel_open_response_function_cb : NULL;
    return 0;
#else
    (void)cb; (void)on; (void)_channel_open_response_function_cb;
    return -1;
#endif
}

#define PYLIBSSH_SESSION_CONNECTED 1
#define PYLIBSSH_SESSION_FATAL 2

/* One ssh_event_dopoll() waiting up to `timeout` ms, then more rounds without waiting while
 * events are ready, at most `max_rounds` in all, until a callback sets stop[0].  libssh reads
 * the socket 4 KiB per round: running the rounds here, in one call, saves a Python call and a
 * GIL release per round (a release costs a thread switch when many sessions' threads are busy).
 * stop[1] is set by the C fd pipes (pipe.py) when they moved bytes.  From then on the batch
 * is a stream's: while the pipes keep moving bytes (some in every max_rounds rounds) it goes
 * on past max_rounds, and when nothing is ready it waits up to PYLIBSSH_LINGER_MS for the
 * stream's next bytes instead of returning to Python, both only up to PYLIBSSH_STREAM_MS
 * after the first round.  Returning to Python (30-50 us with the owner's service()) at every
 * pause of a fast stream, 3.5 times per MiB, was most of what a piped stream cost over a C
 * server.  Python's own work waits PYLIBSSH_STREAM_MS at most; anything that must not wait
 * ends the batch through stop[0].
 * The linger waits in the event itself (its wake-up pipe included) when the caller was
 * willing to wait at all.  A caller that must not wait (timeout 0: a reactor's step) lingers
 * only if it gives `linger_fd`, an fd readable whenever its other work is ready (the reactor's
 * epoll, which holds this session's fds too): the batch waits on that fd alone, and ends when
 * what woke it was not this session's (the next round finds nothing).  Returns the first
 * round's rc. */
#define PYLIBSSH_LINGER_MS 1
#define PYLIBSSH_STREAM_MS 5

/* A session's C state (the Driver's): the end-of-batch flags every C pipe points at, first,
 * so that a pipe's `stop` is also the address of the whole. */
struct pylibssh_pump;
struct pylibssh_batch {
    int stop[2];               /* [0] ends the batch; [1] the C pipes moved bytes in it */
    long long unflushed;       /* bytes handed to libssh's output since it drained (pumps) */
    ssh_event event;           /* the event a batch is polling, NULL between batches */
    struct pylibssh_pump *parked;  /* stalled pumps this batch took out of the event */
};
#define PYLIBSSH_BATCH_OF(stop) ((struct pylibssh_batch *)(void *)(stop))
static void pylibssh_batch_tend(struct pylibssh_batch *b);
static void pylibssh_batch_restore(struct pylibssh_batch *b);
static long long pylibssh_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int pylibssh_event_dopoll_batch(ssh_event event, int timeout, int max_rounds, int *stop,
                                       int linger_fd)
{
    struct pylibssh_batch *b = PYLIBSSH_BATCH_OF(stop);
    int rc, next, rounds = 1, limit = max_rounds, moved = 0, streaming = 0;
    int may_linger = timeout != 0 || linger_fd >= 0;
    long long start;

    stop[1] = 0;
    b->event = event;
    rc = ssh_event_dopoll(event, timeout);
    start = pylibssh_now_ms();
    while (rc == SSH_OK && !stop[0]) {
        if (b->parked != NULL) {
            pylibssh_batch_tend(b);
        }
        if (stop[1]) {
            stop[1] = 0;
            moved = streaming = 1;
        }
        if (rounds >= limit) {
            if (!moved || pylibssh_now_ms() - start >= PYLIBSSH_STREAM_MS) {
                break;
            }
            moved = 0;
            limit += max_rounds;
        }
        next = ssh_event_dopoll(event, 0);
        if (next == SSH_AGAIN && streaming && may_linger && !stop[0] &&
            pylibssh_now_ms() - start < PYLIBSSH_STREAM_MS) {
            if (timeout != 0 || b->parked != NULL) {
                /* With a pump parked, on the event itself even for a reactor: that pump's fd
                 * stays in the reactor's epoll, readable, and would end the wait at once.
                 * The loop's other work then waits this long, within the same 5 ms. */
                next = ssh_event_dopoll(event, PYLIBSSH_LINGER_MS);
            } else {
                struct pollfd others = {linger_fd, POLLIN, 0};

                /* Readable: this session's fds or another job's; the round tells which. */
                if (poll(&others, 1, PYLIBSSH_LINGER_MS) > 0 && !stop[0]) {
                    next = ssh_event_dopoll(event, 0);
                }
            }
        }
        if (next != SSH_OK) {
            break;
        }
        rounds++;
    }
    pylibssh_batch_restore(b);
    b->event = NULL;
    return rc;
}

/* An x11-req's fields.  libssh marks these accessors deprecated (its x11 callback answers
 * success itself), but the message API is the only way to see the request and refuse it. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
static int pylibssh_message_x11(ssh_message msg, int *single_connection,
                                const char **protocol, int *screen)
{
    *single_connection = ssh_message_channel_request_x11_single_connection(msg);
    *protocol = ssh_message_channel_request_x11_auth_protocol(msg);
    *screen = ssh_message_channel_request_x11_screen_number(msg);
    return 0;
}
#pragma GCC diagnostic pop

/* ssh_is_connected(), ssh_get_status() and ssh_get_error_code() in one call (PYLIBSSH_SESSION_*
 * bits), for a loop that checks them after every poll. */
static int pylibssh_session_state(ssh_session session)
{
    int state = 0;

    if (ssh_is_connected(session) == 1 &&
        !(ssh_get_status(session) & (SSH_CLOSED | SSH_CLOSED_ERROR))) {
        state |= PYLIBSSH_SESSION_CONNECTED;
    }
    if (ssh_get_error_code(session) == SSH_FATAL) {
        state |= PYLIBSSH_SESSION_FATAL;
    }
    return state;
}

/* ---- fd pipes (pylibssh_server/pipe.py) ----
 * A sink writes a channel's data to an fd from libssh's data callback; a pump reads an fd into
 * a channel from an ssh_event fd callback.  Both run inside ssh_event_dopoll on the thread that
 * holds the session's lock, and never change the event or free anything: what needs Python (a
 * blocked fd to poll for POLLOUT, a stalled window, EOF, an error) is a flag that the owner's
 * service() reads after the poll; *stop ends the poll batch early where waiting for its end
 * would spin (an fd that stays ready) or lose time (EOF, errors).  PYLIBSSH_PIPE_DEAD (set
 * by Python under the lock) means: never touch the fd or the channel again. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>

#define PYLIBSSH_PIPE_BLOCKED 1    /* sink: bytes wait in its buffer for the fd */
#define PYLIBSSH_PIPE_BACKLOG 2    /* sink: libssh holds channel data the sink had no room for */
#define PYLIBSSH_PIPE_ERROR 4      /* the fd failed (errno in err); a sink then discards */
#define PYLIBSSH_PIPE_EOF 8        /* pump: end of file on the fd */
#define PYLIBSSH_PIPE_STALLED 16   /* pump: the peer's window or the session's output is full */
#define PYLIBSSH_PIPE_OVERFLOW 32  /* sink: the peer sent far beyond its window */
#define PYLIBSSH_PIPE_PAUSED 64    /* set by Python: take nothing (sink), read nothing (pump) */
#define PYLIBSSH_PIPE_DEAD 128     /* set by Python: detached */
#define PYLIBSSH_PUMP_CHUNK (256 * 1024)

struct pylibssh_sink {
    struct ssh_channel_callbacks_struct cb;  /* cb.userdata points back here */
    int fd;
    int flags;
    int err;
    int is_socket;
    int draining;              /* inside pylibssh_sink_drain's read (which polls on 0.11+, so
                                * our callbacks can run): take nothing, write nothing */
    char *buf;                 /* what the fd did not take yet, in order */
    size_t len;
    size_t cap;
    size_t limit;              /* the buffer takes packets while it holds less than this */
    uint32_t overflow;         /* libssh holding more than this: the peer ignores the window */
    unsigned long long bytes;  /* channel bytes taken (written, buffered or discarded) */
    int *stop;                 /* the SessionEvent's end-of-batch flags (see dopoll_batch) */
};

struct pylibssh_pump {
    int fd;
    int flags;
    int err;
    int is_stderr;
    ssh_channel channel;
    unsigned long long bytes;  /* bytes written to the channel */
    long long *unflushed;      /* the session's bytes handed to libssh since its output drained */
    long long out_limit;
    int *stop;
    int busy;                  /* inside ssh_channel_write, whose nested poll may call us */
    size_t off;                /* buf[off, off + len) was read but not taken by libssh yet */
    size_t len;
    char *buf;                 /* PYLIBSSH_PUMP_CHUNK bytes, allocated at the first read */
    int parked;                /* 0; 1: stalled, to leave the event; 2: out of the event */
    struct pylibssh_pump *next_parked;
};

/* Write what the fd takes now: the count, or -1 once it failed (flags and err set). */
static ssize_t pylibssh_sink_write(struct pylibssh_sink *p, const char *data, size_t len)
{
    size_t done = 0;

    while (done < len) {
        ssize_t n = p->is_socket ? send(p->fd, data + done, len - done, MSG_NOSIGNAL)
                                 : write(p->fd, data + done, len - done);
        if (n > 0) {
            done += (size_t)n;
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            break;
        } else {
            p->err = n < 0 ? errno : EPIPE;
            p->flags |= PYLIBSSH_PIPE_ERROR;
            p->len = 0;
            return -1;
        }
    }
    return (ssize_t)done;
}

static int pylibssh_sink_reserve(struct pylibssh_sink *p, size_t need)
{
    size_t cap = p->cap ? p->cap : 65536;
    char *buf;

    if (need <= p->cap) {
        return 0;
    }
    while (cap < need) {
        cap *= 2;
    }
    buf = realloc(p->buf, cap);
    if (buf == NULL) {
        return -1;
    }
    p->buf = buf;
    p->cap = cap;
    return 0;
}

/* Write buffered bytes: 0 once the buffer is empty, 1 while bytes remain, -1 on an error. */
static int pylibssh_sink_flush(struct pylibssh_sink *p)
{
    ssize_t n;

    if (p->draining) {
        return p->len > 0;  /* libssh is copying into buf + len: leave the buffer alone */
    }
    if (p->len > 0 && p->fd >= 0 && !(p->flags & PYLIBSSH_PIPE_ERROR)) {
        n = pylibssh_sink_write(p, p->buf, p->len);
        if (n < 0) {
            p->flags &= ~PYLIBSSH_PIPE_BLOCKED;
            return -1;
        }
        memmove(p->buf, p->buf + n, p->len - (size_t)n);
        p->len -= (size_t)n;
    } else if (p->fd < 0 || (p->flags & PYLIBSSH_PIPE_ERROR)) {
        p->len = 0;
    }
    if (p->len > 0) {
        p->flags |= PYLIBSSH_PIPE_BLOCKED;
        return 1;
    }
    p->flags &= ~PYLIBSSH_PIPE_BLOCKED;
    return 0;
}

/* libssh's data callback: the count it returns is consumed; the rest stays in libssh, whose
 * window then grows no further. */
static int pylibssh_sink_data(ssh_session session, ssh_channel channel, void *data,
                              uint32_t len, int is_stderr, void *userdata)
{
    struct pylibssh_sink *p = userdata;
    int before = p->flags;
    size_t taken = 0, room;

    (void)session; (void)channel; (void)is_stderr;
    if (p->flags & (PYLIBSSH_PIPE_DEAD | PYLIBSSH_PIPE_PAUSED)) {
        return 0;
    }
    if (p->draining) {
        p->flags |= PYLIBSSH_PIPE_BACKLOG;
        return 0;
    }
    if (len > p->overflow) {
        p->flags |= PYLIBSSH_PIPE_OVERFLOW;
        *p->stop = 1;
        return 0;
    }
    if (p->fd < 0 || (p->flags & PYLIBSSH_PIPE_ERROR) ||
        (p->len > 0 && pylibssh_sink_flush(p) < 0)) {
        p->bytes += len;  /* the reader is gone: discard, as a closed pipe would */
        if (!(before & PYLIBSSH_PIPE_ERROR) && (p->flags & PYLIBSSH_PIPE_ERROR)) {
            *p->stop = 1;
        }
        return (int)len;
    }
    if (p->len == 0) {
        ssize_t n = pylibssh_sink_write(p, data, len);
        if (n < 0) {
            *p->stop = 1;
            p->bytes += len;
            return (int)len;
        }
        taken = (size_t)n;
        if (taken == len) {
            p->bytes += len;
            p->stop[1] = 1;  /* bytes moved: see pylibssh_event_dopoll_batch */
            return (int)len;
        }
    }
    room = p->len < p->limit ? p->limit - p->len : 0;
    if (room > len - taken) {
        room = len - taken;
    }
    if (room > 0 && pylibssh_sink_reserve(p, p->len + room) == 0) {
        memcpy(p->buf + p->len, (const char *)data + taken, room);
        p->len += room;
        taken += room;
    }
    if (p->len > 0) {
        p->flags |= PYLIBSSH_PIPE_BLOCKED;
    }
    if (taken < len) {
        p->flags |= PYLIBSSH_PIPE_BACKLOG;
    }
    /* No stop[0] here: the next packets flush first, and service() after the batch polls the
     * fd for POLLOUT (ending batches at each such edge costs more than it saves). */
    p->bytes += taken;
    p->stop[1] = 1;
    return (int)taken;
}

static void pylibssh_sink_init(struct pylibssh_sink *p, int fd, int is_socket)
{
    p->cb.size = sizeof(struct ssh_channel_callbacks_struct);
    p->cb.userdata = p;
    p->cb.channel_data_function = pylibssh_sink_data;
    p->fd = fd;
    p->is_socket = is_socket;
}

static int pylibssh_sink_attach(struct pylibssh_sink *p, ssh_channel channel)
{
    return ssh_add_channel_callbacks(channel, &p->cb);
}

static int pylibssh_sink_detach(struct pylibssh_sink *p, ssh_channel channel)
{
    return ssh_remove_channel_callbacks(channel, &p->cb);
}

/* The event's fd callback while the sink is blocked: write what the fd takes now. */
static int pylibssh_sink_writable(socket_t fd, int revents, void *userdata)
{
    struct pylibssh_sink *p = userdata;

    (void)fd; (void)revents;
    if ((p->flags & PYLIBSSH_PIPE_DEAD) || pylibssh_sink_flush(p) <= 0) {
        *p->stop = 1;  /* drained or failed: Python stops polling, drains libssh's backlog */
    }
    return 0;
}

/* After a poll (not inside one): read everything libssh holds for the channel into the buffer
 * once there is room, then write what the fd takes.  All of it: libssh 0.10 tops the window up
 * after every read, whatever it still holds.  Returns the bytes read or libssh's error. */
static int pylibssh_sink_drain(struct pylibssh_sink *p, ssh_channel channel)
{
    int held, n;

    if ((p->flags & (PYLIBSSH_PIPE_DEAD | PYLIBSSH_PIPE_PAUSED)) || p->len >= p->limit) {
        return 0;
    }
    p->flags &= ~PYLIBSSH_PIPE_BACKLOG;
    held = ssh_channel_poll(channel, 0);
    if (held <= 0 || (p->flags & PYLIBSSH_PIPE_DEAD)) {
        return held;
    }
    if (pylibssh_sink_reserve(p, p->len + (size_t)held) < 0) {
        p->flags |= PYLIBSSH_PIPE_BACKLOG;
        return 0;
    }
    p->draining = 1;
    n = ssh_channel_read_nonblocking(channel, p->buf + p->len, (uint32_t)held, 0);
    p->draining = 0;
    if (n > 0) {
        p->bytes += (unsigned long long)n;
        p->len += (size_t)n;
        pylibssh_sink_flush(p);
    }
    return n;
}

/* Shut down the write side of a socket (the peer reads EOF; the fd stays open). */
static int pylibssh_sink_shutdown(struct pylibssh_sink *p)
{
    if (!p->is_socket || p->fd < 0) {
        return -1;
    }
    return shutdown(p->fd, SHUT_WR);
}

static void pylibssh_sink_release(struct pylibssh_sink *p)
{
    free(p->buf);
    p->buf = NULL;
    p->len = p->cap = 0;
}

static int pylibssh_pump_congested(struct pylibssh_pump *p)
{
    if (ssh_get_poll_flags(ssh_channel_get_session(p->channel)) & SSH_WRITE_PENDING) {
        return *p->unflushed >= p->out_limit;
    }
    *p->unflushed = 0;
    return 0;
}

static int pylibssh_pump_ready(socket_t fd, int revents, void *userdata);

/* Ended, paused or detached: a pump only Python may take further. */
static int pylibssh_pump_out(const struct pylibssh_pump *p)
{
    return (p->flags & (PYLIBSSH_PIPE_DEAD | PYLIBSSH_PIPE_PAUSED | PYLIBSSH_PIPE_EOF |
                        PYLIBSSH_PIPE_ERROR)) || p->channel == NULL;
}

/* Room again for a stalled pump: the window and the session's output. */
static int pylibssh_pump_may_resume(struct pylibssh_pump *p)
{
    return !pylibssh_pump_out(p) && ssh_channel_window_size(p->channel) > 0 &&
           !pylibssh_pump_congested(p);
}

/* A parked pump's fd back in the batch's event (outside libssh's dispatch). */
static int pylibssh_pump_rejoin(struct pylibssh_batch *b, struct pylibssh_pump *p)
{
    return ssh_event_add_fd(b->event, p->fd, POLLIN, pylibssh_pump_ready, p);
}

/* A pump that only stalled (the peer's window or the session's output is full), during a
 * batch: rather than end the batch for Python to take its fd out of the poll and put it
 * back once the peer's window adjust came (two returns to Python per stall, about one per
 * window of a fast stream), the batch itself takes the fd out between two rounds and puts
 * it back when there is room (pylibssh_batch_tend), and before it returns, so that the
 * event holds what Python believes (its service() then does what it always did).  Only
 * marked here: libssh is walking its fd array.  1: parked (the batch goes on). */
static int pylibssh_pump_park(struct pylibssh_pump *p)
{
    struct pylibssh_batch *b = PYLIBSSH_BATCH_OF(p->stop);

    if (b->event == NULL || pylibssh_pump_out(p) || !(p->flags & PYLIBSSH_PIPE_STALLED)) {
        return 0;
    }
    if (!p->parked) {
        p->parked = 1;
        p->next_parked = b->parked;
        b->parked = p;
    }
    return 1;
}

/* Between two rounds of a batch (outside libssh's dispatch): parked pumps leave the event,
 * and come back once they may resume; one that ended or was paused meanwhile goes back to
 * Python (in the event, unless it is detached: Python removes it). */
static void pylibssh_batch_tend(struct pylibssh_batch *b)
{
    struct pylibssh_pump **link = &b->parked, *p;

    while ((p = *link) != NULL) {
        int resume = pylibssh_pump_may_resume(p);

        if (!resume && !pylibssh_pump_out(p)) {
            if (p->parked == 1) {
                ssh_event_remove_fd(b->event, p->fd);
                p->parked = 2;
            }
            link = &p->next_parked;
            continue;
        }
        if (p->parked == 2 && !(p->flags & PYLIBSSH_PIPE_DEAD)) {
            if (pylibssh_pump_rejoin(b, p) != SSH_OK) {
                b->stop[0] = 1;  /* the batch's end tries again */
                link = &p->next_parked;
                continue;
            }
        }
        if (resume) {
            p->flags &= ~PYLIBSSH_PIPE_STALLED;
        } else {
            b->stop[0] = 1;  /* ended, paused or detached: Python's turn */
        }
        p->parked = 0;
        *link = p->next_parked;
        p->next_parked = NULL;
    }
}

/* Before a batch returns: every parked pump back in the event, still STALLED (Python's
 * service() takes it out or resumes it, as for a pump stalled outside a batch). */
static void pylibssh_batch_restore(struct pylibssh_batch *b)
{
    struct pylibssh_pump *p;

    while ((p = b->parked) != NULL) {
        b->parked = p->next_parked;
        p->next_parked = NULL;
        if (p->parked == 2 && !(p->flags & PYLIBSSH_PIPE_DEAD) &&
            pylibssh_pump_rejoin(b, p) != SSH_OK) {
            p->err = ENOMEM;
            p->flags |= PYLIBSSH_PIPE_ERROR;  /* not polled any more: end it */
        }
        p->parked = 0;
    }
}

/* The event's fd callback: read what the peer's window allows and write it to the channel.
 * Reads never exceed the window, so libssh takes every byte and none is held here for long. */
static int pylibssh_pump_ready(socket_t fd, int revents, void *userdata)
{
    struct pylibssh_pump *p = userdata;
    int round;

    (void)fd; (void)revents;
    if (p->busy) {
        return 0;  /* re-entered from our own write's flush: the outer call goes on */
    }
    for (round = 0; round < 4; round++) {
        uint32_t window;
        size_t want = 0;
        int n;

        if (pylibssh_pump_out(p) || (p->flags & PYLIBSSH_PIPE_STALLED)) {
            if (pylibssh_pump_park(p)) {
                return 0;
            }
            *p->stop = 1;  /* Python takes the fd out of the poll */
            return 0;
        }
        window = ssh_channel_window_size(p->channel);
        if (window == 0 || pylibssh_pump_congested(p)) {
            p->flags |= PYLIBSSH_PIPE_STALLED;
            continue;
        }
        if (p->buf == NULL && (p->buf = malloc(PYLIBSSH_PUMP_CHUNK)) == NULL) {
            p->err = ENOMEM;
            p->flags |= PYLIBSSH_PIPE_ERROR;
            continue;
        }
        if (p->len == 0) {
            ssize_t r;

            want = window < PYLIBSSH_PUMP_CHUNK ? window : PYLIBSSH_PUMP_CHUNK;
            r = read(p->fd, p->buf, want);
            if (r == 0) {
                p->flags |= PYLIBSSH_PIPE_EOF;
                continue;
            }
            if (r < 0) {
                if (errno == EINTR) {
                    continue;
                }
                if (errno == EAGAIN || errno == EWOULDBLOCK) {
                    return 0;
                }
                p->err = errno;
                p->flags |= PYLIBSSH_PIPE_ERROR;
                continue;
            }
            p->off = 0;
            p->len = (size_t)r;
        }
        /* The write flushes through a nested poll: callbacks may run, and one may detach us. */
        p->busy = 1;
        n = (p->is_stderr ? ssh_channel_write_stderr : ssh_channel_write)(
            p->channel, p->buf + p->off, (uint32_t)(p->len < window ? p->len : window));
        p->busy = 0;
        if (n < 0) {
            p->flags |= PYLIBSSH_PIPE_ERROR;
            p->len = 0;
            continue;
        }
        p->off += (size_t)n;
        p->len -= (size_t)n;
        p->bytes += (unsigned long long)n;
        *p->unflushed += n;
        p->stop[1] = 1;
        if (n == 0) {
            p->flags |= PYLIBSSH_PIPE_STALLED;
            continue;
        }
        if (p->len > 0 || (size_t)n < want) {
            return 0;  /* the fd had less than asked for: wait for the next POLLIN */
        }
    }
    return 0;
}

static void pylibssh_pump_release(struct pylibssh_pump *p)
{
    free(p->buf);
    p->buf = NULL;
    p->len = 0;
}

/* After a poll: clear STALLED once the window and the session's output have room again
 * (1: cleared, the fd can be polled again). */
static int pylibssh_pump_unstall(struct pylibssh_pump *p)
{
    if (!(p->flags & PYLIBSSH_PIPE_STALLED) || p->channel == NULL ||
        (p->flags & PYLIBSSH_PIPE_DEAD)) {
        return 0;
    }
    if (ssh_channel_window_size(p->channel) == 0 || pylibssh_pump_congested(p)) {
        return 0;
    }
    p->flags &= ~PYLIBSSH_PIPE_STALLED;
    return 1;
}
"""


def _pkg_config(*args: str) -> list[str]:
    out = subprocess.run(
        ["pkg-config", *args, "libssh"], check=True, capture_output=True, text=True
    ).stdout
    return out.split()


def _build_flags() -> dict[str, list[str]]:
    """Include/library flags for the selected libssh, or exit with an actionable message."""
    prefix = os.environ.get("PYLIBSSH_LIBSSH_PREFIX")
    if prefix:
        prefix = os.path.abspath(prefix)
        include = os.path.join(prefix, "include")
        libdir = os.path.join(prefix, "lib")
        if not os.path.exists(os.path.join(include, "libssh", "libssh.h")):
            sys.exit(
                f"pylibssh_server: PYLIBSSH_LIBSSH_PREFIX={prefix} has no include/libssh/libssh.h;"
                " build it first (make -C vendor) or unset the variable."
            )
        return {
            "include_dirs": [include],
            "library_dirs": [libdir],
            "libraries": ["ssh"],
            "extra_link_args": [f"-Wl,-rpath,{libdir}"],
        }
    flags: dict[str, list[str]] = {"include_dirs": [], "library_dirs": [], "libraries": ["ssh"]}
    if shutil.which("pkg-config"):
        try:
            for flag in _pkg_config("--cflags"):
                if flag.startswith("-I"):
                    flags["include_dirs"].append(flag[2:])
            for flag in _pkg_config("--libs"):
                if flag.startswith("-L"):
                    flags["library_dirs"].append(flag[2:])
        except subprocess.CalledProcessError:
            sys.exit(MISSING_HEADERS)
    candidates = [*flags["include_dirs"], "/usr/include", "/usr/local/include"]
    extra = sysconfig.get_config_var("INCLUDEDIR")
    if extra:
        candidates.append(extra)
    if not any(os.path.exists(os.path.join(d, "libssh", "libssh.h")) for d in candidates):
        sys.exit(MISSING_HEADERS)
    return flags


ffibuilder = FFI()
ffibuilder.cdef(CDEF_LIBSSH + CDEF_SHIMS + CDEF_TRAMPOLINES)
ffibuilder.set_source(
    "pylibssh_server._libssh",
    C_SOURCE,
    # The deprecated message getters (password, pubkey) are the only way to read those fields
    # in the message callback on every version.
    extra_compile_args=["-Wno-deprecated-declarations"],
    **_build_flags(),
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
