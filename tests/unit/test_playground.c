/* test_playground.c - the web playground route (GET / and HEAD /): the embedded page is served whole, as
 * UTF-8 HTML with its caching and Content-Security-Policy headers, without the API key even when one is set,
 * and loads nothing from elsewhere. The page's behaviour in a browser is tests/browser/playground_test.sh. */
#include <criterion/criterion.h>
#include <string.h>

#include "playground.h"
#include "routes.h"

static const char *header(const ds_api_response *r, const char *name) {
    for (int i = 0; i < r->n_headers; i++)
        if (!strcmp(r->headers[i].name, name)) return r->headers[i].value;
    return NULL;
}

/* These routes never reach the engine, so the API is created over none. */
static ds_api *keyed_api(void) {
    ds_api_opts o = {.api_key = "s3cret"};
    ds_api *a = ds_api_create(NULL, &o);
    cr_assert_not_null(a);
    return a;
}

Test(playground, page_is_embedded_whole) {
    size_t n = 0;
    const char *p = ds_playground_page(&n);
    cr_assert_gt(n, 10000, "page of %zu bytes", n);
    cr_assert_eq(strlen(p), n, "the page has a NUL inside or no terminator");
    cr_assert_eq(strncmp(p, "<!DOCTYPE html>", 15), 0);
    cr_assert_not_null(strstr(p, "</html>"));
    /* no external assets: no remote script, stylesheet, image or font, no CDN */
    const char *banned[] = {"src=\"http", "href=\"http", "src='http", "href='http", "<script src", "rel=\"stylesheet\"",
                            "@import", "url(http", "//cdn"};
    for (size_t i = 0; i < sizeof banned / sizeof banned[0]; i++)
        cr_assert_null(strstr(p, banned[i]), "the page references an external asset (%s)", banned[i]);
    /* it uses the API's real routes and field names */
    const char *used[] = {"'v1/models'", "'v1/generate'", "'/events'", "'v1/stats/'", "'Authorization'", "png_b64",
                          "residual_diffs", "cached_steps", "speedup_estimate", "residual_diff_threshold"};
    for (size_t i = 0; i < sizeof used / sizeof used[0]; i++)
        cr_assert_not_null(strstr(p, used[i]), "the page does not use %s", used[i]);
}

Test(playground, get_and_head_without_the_key) {
    ds_api *a = keyed_api();
    size_t n = 0;
    const char *page = ds_playground_page(&n);
    const char *methods[] = {"GET", "HEAD"};
    for (int m = 0; m < 2; m++) {
        ds_api_request q = {.method = methods[m], .path = "/"};
        ds_api_response r;
        ds_api_handle(a, &q, &r);
        cr_assert_eq(r.status, 200, "%s /: %d %s", methods[m], r.status, r.body ? r.body : "");
        cr_assert_str_eq(r.content_type, "text/html; charset=utf-8");
        cr_assert_str_eq(r.route, "/");
        cr_assert_eq(r.body_len, n);
        cr_assert_eq(memcmp(r.body, page, n), 0);
        cr_assert_str_eq(header(&r, "Cache-Control"), "no-cache");
        const char *csp = header(&r, "Content-Security-Policy");
        cr_assert_not_null(csp);
        cr_assert_not_null(strstr(csp, "default-src 'none'"));
        cr_assert_not_null(strstr(csp, "connect-src 'self'"));
        ds_api_response_free(&r);
    }
    ds_api_free(a);
}

Test(playground, other_methods_and_paths) {
    ds_api *a = keyed_api();
    const char *methods[] = {"POST", "PUT", "DELETE"};
    for (int m = 0; m < 3; m++) {
        ds_api_request q = {.method = methods[m], .path = "/"};
        ds_api_response r;
        ds_api_handle(a, &q, &r);
        cr_assert_eq(r.status, 405, "%s /: %d", methods[m], r.status);
        cr_assert_str_eq(header(&r, "Allow"), "GET");
        ds_api_response_free(&r);
    }
    /* only "/" is public: other paths still need the key */
    const char *paths[] = {"/index.html", "//", "/v1/", "/playground"};
    for (int i = 0; i < 4; i++) {
        ds_api_request q = {.method = "GET", .path = paths[i]};
        ds_api_response r;
        ds_api_handle(a, &q, &r);
        cr_assert_eq(r.status, 401, "GET %s: %d", paths[i], r.status);
        ds_api_response_free(&r);
    }
    ds_api_free(a);
}
