/* playground.c - access to the embedded web playground (see playground.h). The bytes live in a
 * translation unit generated from api/playground.html by cmake/DsEmbed.cmake, so editing the page needs a
 * rebuild and nothing else: no build step of its own, no files read at run time. */
#include "playground.h"

const char *ds_playground_page(size_t *len) {
    *len = ds__playground_html_len;
    return (const char *)ds__playground_html;
}
