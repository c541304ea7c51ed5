/* playground.h - the web playground served at GET /: one static HTML page (api/playground.html, with its
 * CSS and JavaScript inline and no external assets) compiled into the binary at build time by
 * cmake/DsEmbed.cmake. The page talks only to this server's own API (docs/api.md "Web playground"). */
#ifndef DS_API_PLAYGROUND_H
#define DS_API_PLAYGROUND_H

#include <stddef.h>

/* The generated translation unit (build tree: playground_html.c) defines these; use ds_playground_page. */
extern const unsigned char ds__playground_html[];
extern const size_t        ds__playground_html_len;

/* The page's bytes (UTF-8 HTML, static storage, never freed) and their count in *len (len non-NULL). The
 * array carries one extra NUL after the last byte, so the result is also a C string. */
const char *ds_playground_page(size_t *len);

#endif /* DS_API_PLAYGROUND_H */
