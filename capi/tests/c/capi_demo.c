/* A C program using phiq through capi/include/phiq.h: load, tokenize, generate greedily
 * with a callback, stop early from the callback, and the error codes for bad input.
 * capi/tests/capi.rs compiles it with cc against the built library and checks every line
 * against the Rust library.  Usage: capi_demo MODEL.gguf PROMPT MAX_TOKENS */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "phiq.h"

struct collected {
    char text[65536];
    size_t len;
    int pieces;
    int stop_after; /* return nonzero after this many pieces (0: never) */
};

static int on_piece(const char *text, size_t len, uint32_t token, void *user_data) {
    struct collected *c = user_data;
    (void)token;
    if (strlen(text) != len) return 1; /* the documented NUL-terminated string */
    if (c->len + len < sizeof c->text) {
        memcpy(c->text + c->len, text, len);
        c->len += len;
        c->text[c->len] = 0;
    }
    c->pieces++;
    return c->stop_after && c->pieces >= c->stop_after;
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: %s MODEL PROMPT MAX_TOKENS\n", argv[0]);
        return 2;
    }
    printf("version: %s\n", phiq_version());

    phiq_model *model = NULL;
    if (phiq_model_load(argv[1], 0, &model) != PHIQ_OK) {
        fprintf(stderr, "load failed: %s\n", phiq_last_error());
        return 1;
    }

    /* Ask the size, then tokenize. */
    size_t n = 0;
    phiq_status st = phiq_tokenize(model, argv[2], 1, NULL, 0, &n);
    printf("size_query: %d %zu\n", (int)st, n);
    uint32_t *ids = malloc(n * sizeof *ids);
    st = phiq_tokenize(model, argv[2], 1, ids, n, &n);
    printf("tokens: %d", (int)st);
    for (size_t i = 0; i < n; i++) printf(" %u", ids[i]);
    printf("\n");
    free(ids);

    phiq_generate_params params = phiq_generate_default_params();
    params.max_tokens = (uint32_t)atoi(argv[3]);
    params.temperature = 0.0f; /* greedy: the test compares with the Rust library */

    static struct collected all, early;
    phiq_stop_reason reason = PHIQ_STOP_EOS;
    st = phiq_generate(model, argv[2], &params, on_piece, &all, &reason);
    printf("generate: %d %d %d\n", (int)st, (int)reason, all.pieces);
    printf("text: %s\n", all.text);

    early.stop_after = 3;
    st = phiq_generate(model, argv[2], &params, on_piece, &early, &reason);
    printf("early: %d %d %d\n", (int)st, (int)reason, early.pieces);
    printf("early_text: %s\n", early.text);

    /* Bad input gives codes and messages, never a crash. */
    phiq_model *none = NULL;
    st = phiq_model_load(NULL, 0, &none);
    printf("err_null: %d %s\n", (int)st, phiq_last_error());
    st = phiq_model_load("/nonexistent/model.gguf", 0, &none);
    printf("err_load: %d %s\n", (int)st, phiq_last_error());
    st = phiq_generate(model, "bad \xff\xfe utf-8", &params, on_piece, &all, NULL);
    printf("err_utf8: %d %s\n", (int)st, phiq_last_error());
    st = phiq_generate(model, argv[2], &params, NULL, NULL, NULL);
    printf("err_callback: %d %s\n", (int)st, phiq_last_error());
    uint32_t one[1];
    st = phiq_tokenize(model, argv[2], 1, one, 1, &n);
    printf("err_small: %d %zu\n", (int)st, n);
    st = phiq_tokenize(NULL, argv[2], 1, one, 1, &n);
    printf("err_model: %d %s\n", (int)st, phiq_last_error());

    phiq_model_free(model);
    phiq_model_free(NULL);
    return 0;
}
