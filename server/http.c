/* http.c - libmicrohttpd glue for the API (see http.h). */
#include "http.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

struct ds_http {
    struct MHD_Daemon *d;
    ds_http_opts       o;
    int                port;
};

/* Per-connection request state (MHD's con_cls). */
typedef struct req_state {
    char  *body;
    size_t len, cap;
    bool   too_big;
    double t0;
} req_state;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The client closed its end: poll says hang-up, or a peek reads end-of-file. */
static bool client_gone(void *conn) {
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (!ci) return false;
    struct pollfd p = {.fd = ci->connect_fd, .events = POLLIN | POLLRDHUP};
    if (poll(&p, 1, 0) <= 0) return false;
    if (p.revents & (POLLRDHUP | POLLHUP | POLLERR)) return true;
    if (p.revents & POLLIN) {
        char c;
        ssize_t n = recv(ci->connect_fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
        return n == 0;
    }
    return false;
}

static ssize_t sse_reader(void *cls, uint64_t pos, char *buf, size_t max) {
    (void)pos;
    ssize_t n = ds_sse_read(cls, buf, max, 10000);
    return n < 0 ? MHD_CONTENT_READER_END_OF_STREAM : n;
}

static void sse_free(void *cls) { ds_sse_close(cls); }

static enum MHD_Result send_resp(struct MHD_Connection *c, ds_api_response *r) {
    struct MHD_Response *mr;
    if (r->sse) {
        mr = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16 * 1024, sse_reader, r->sse, sse_free);
        if (mr) r->sse = NULL; /* owned by the response now */
    } else {
        mr = MHD_create_response_from_buffer(r->body_len, r->body ? r->body : (char *)"", r->body ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
        if (mr) r->body = NULL;
    }
    if (!mr) return MHD_NO;
    if (r->content_type) MHD_add_response_header(mr, MHD_HTTP_HEADER_CONTENT_TYPE, r->content_type);
    for (int i = 0; i < r->n_headers; i++) MHD_add_response_header(mr, r->headers[i].name, r->headers[i].value);
    MHD_add_response_header(mr, "X-Content-Type-Options", "nosniff");
    enum MHD_Result ret = MHD_queue_response(c, (unsigned)r->status, mr);
    MHD_destroy_response(mr);
    return ret;
}

static enum MHD_Result simple_error(ds_http *h, struct MHD_Connection *c, int status, const char *route, const char *code,
                                    const char *msg) {
    ds_api_response r;
    memset(&r, 0, sizeof r);
    ds_api_set_error(&r, status, "invalid_request_error", code, NULL, msg);
    ds_metrics_count(h->o.metrics, route, status, 0);
    enum MHD_Result ret = send_resp(c, &r);
    ds_api_response_free(&r);
    return ret;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                  const char *version, const char *upload_data, size_t *upload_size, void **con_cls) {
    (void)version;
    ds_http *h = cls;
    req_state *st = *con_cls;
    if (!st) {
        st = calloc(1, sizeof *st);
        if (!st) return MHD_NO;
        st->t0 = now_s();
        *con_cls = st;
        const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (cl && strtoull(cl, NULL, 10) > h->o.max_body) {
            char msg[128];
            snprintf(msg, sizeof msg, "the request body is larger than the limit of %zu bytes (--max-body-mb)", h->o.max_body);
            st->too_big = true;
            return simple_error(h, c, 413, "too_large", "body_too_large", msg);
        }
        return MHD_YES;
    }
    if (*upload_size) {
        if (!st->too_big) {
            if (st->len + *upload_size > h->o.max_body) {
                st->too_big = true;
                free(st->body);
                st->body = NULL;
                st->len = st->cap = 0;
            } else {
                if (st->len + *upload_size + 1 > st->cap) {
                    size_t cap = (st->len + *upload_size + 1) * 2;
                    if (cap > h->o.max_body + 1) cap = h->o.max_body + 1;
                    char *p = realloc(st->body, cap);
                    if (!p) return MHD_NO;
                    st->body = p;
                    st->cap = cap;
                }
                memcpy(st->body + st->len, upload_data, *upload_size);
                st->len += *upload_size;
                st->body[st->len] = 0;
            }
        }
        *upload_size = 0;
        return MHD_YES;
    }
    if (st->too_big) {
        char msg[128];
        snprintf(msg, sizeof msg, "the request body is larger than the limit of %zu bytes (--max-body-mb)", h->o.max_body);
        return simple_error(h, c, 413, "too_large", "body_too_large", msg);
    }
    ds_api_response r;
    memset(&r, 0, sizeof r);
    const char *auth = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    if (!strcmp(url, "/metrics")) {
        r.route = "/metrics";
        if (!ds_api_authorized(h->o.api, auth)) {
            ds_api_set_error(&r, 401, "authentication_error", "invalid_api_key", NULL,
                             "missing or wrong API key: send Authorization: Bearer <key>");
        } else if (strcmp(method, "GET") && strcmp(method, "HEAD")) {
            ds_api_set_error(&r, 405, "invalid_request_error", "method_not_allowed", NULL, "GET only");
            ds_api_add_header(&r, "Allow", "GET");
        } else {
            r.status = 200;
            r.content_type = "text/plain; version=0.0.4";
            r.body = ds_metrics_render(h->o.metrics, h->o.engine);
            r.body_len = r.body ? strlen(r.body) : 0;
            if (!r.body) ds_api_set_error(&r, 507, "server_error", "out_of_memory", NULL, "out of memory");
        }
    } else {
        ds_api_request q = {
            .method = method,
            .path = url,
            .body = st->body,
            .body_len = st->len,
            .authorization = auth,
            .origin = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Origin"),
            .host = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_HOST),
            .client_gone = client_gone,
            .conn = c,
        };
        ds_api_handle(h->o.api, &q, &r);
    }
    double dt = now_s() - st->t0;
    ds_metrics_count(h->o.metrics, r.route ? r.route : "unknown", r.status, dt);
    const char *job = NULL;
    for (int i = 0; i < r.n_headers; i++)
        if (!strcmp(r.headers[i].name, "X-Job-Id") || !strcmp(r.headers[i].name, "Location")) job = r.headers[i].value;
    if (strcmp(method, "GET") || r.status >= 400)
        DS_LOGI("http", "%s %.200s -> %d (%.1f ms)%s%s", method, url, r.status, dt * 1e3, job ? " job=" : "", job ? job : "");
    else
        DS_LOGD("http", "%s %.200s -> %d (%.1f ms)", method, url, r.status, dt * 1e3);
    enum MHD_Result ret = send_resp(c, &r);
    ds_api_response_free(&r);
    return ret;
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe) {
    (void)cls;
    (void)c;
    (void)toe;
    req_state *st = *con_cls;
    if (!st) return;
    free(st->body);
    free(st);
    *con_cls = NULL;
}

ds_status ds_http_start(const ds_http_opts *o, ds_http **out, ds_err *err) {
    *out = NULL;
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    const char *host = !strcmp(o->host, "localhost") ? "127.0.0.1" : o->host;
    bool v6 = strchr(host, ':') != NULL;
    if (v6) {
        struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&ss;
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t)o->port);
        if (inet_pton(AF_INET6, host, &a6->sin6_addr) != 1)
            return DS_FAIL(err, DS_ERR_INVALID_ARG, "--host %s: not an IPv6 address", o->host);
    } else {
        struct sockaddr_in *a4 = (struct sockaddr_in *)&ss;
        a4->sin_family = AF_INET;
        a4->sin_port = htons((uint16_t)o->port);
        if (inet_pton(AF_INET, host, &a4->sin_addr) != 1)
            return DS_FAIL(err, DS_ERR_INVALID_ARG, "--host %s: not an IPv4 address (or localhost)", o->host);
    }
    ds_http *h = calloc(1, sizeof *h);
    if (!h) return DS_FAIL(err, DS_ERR_OOM, "out of memory");
    h->o = *o;
    unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG | MHD_USE_ITC |
                     (v6 ? MHD_USE_IPv6 : 0);
    h->d = MHD_start_daemon(flags, (uint16_t)o->port, NULL, NULL, on_request, h, MHD_OPTION_SOCK_ADDR,
                            (struct sockaddr *)&ss, MHD_OPTION_NOTIFY_COMPLETED, on_completed, h,
                            MHD_OPTION_CONNECTION_LIMIT, (unsigned)(o->max_connections > 0 ? o->max_connections : 256),
                            MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)120, MHD_OPTION_LISTENING_ADDRESS_REUSE,
                            (unsigned)1, MHD_OPTION_END);
    if (!h->d) {
        free(h);
        return DS_FAIL(err, DS_ERR_IO, "cannot listen on %s:%d (address in use or not permitted)", o->host, o->port);
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(h->d, MHD_DAEMON_INFO_BIND_PORT);
    h->port = di ? di->port : o->port;
    *out = h;
    return DS_OK;
}

int ds_http_port(const ds_http *h) { return h->port; }

void ds_http_quiesce(ds_http *h) {
    if (!h || !h->d) return;
    MHD_socket s = MHD_quiesce_daemon(h->d);
    if (s != MHD_INVALID_SOCKET) close(s);
}

void ds_http_stop(ds_http *h) {
    if (!h) return;
    if (h->d) MHD_stop_daemon(h->d);
    free(h);
}
