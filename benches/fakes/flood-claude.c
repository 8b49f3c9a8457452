/*
 * A static stand-in for `claude -p --output-format stream-json` that floods:
 * the producer of benches/stream.rs. Written in C so that the benchmark
 * measures the reader, not the writer: a Python child would spend more CPU
 * starting and printing than ptt spends reading.
 *
 * The prompt (on stdin, as ptt sends it) is "FLOOD_MIB MARKER". It prints an
 * init line, FLOOD_MIB MiB of assistant text lines (the same lines as the
 * scriptable fake's `flood_mb`: 200 x's each), and a result carrying MARKER,
 * then exits 0. Every other argument is ignored.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void put(const char *buf, size_t len) {
    while (len > 0) {
        ssize_t n = write(1, buf, len);
        if (n < 0) {
            if (errno == EINTR) continue;
            exit(1);
        }
        buf += n;
        len -= (size_t)n;
    }
}

int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--version") == 0) {
            puts("9.9.9 (flood-claude)");
            return 0;
        }
    }
    char prompt[512];
    size_t got = 0;
    for (;;) {
        ssize_t n = read(0, prompt + got, sizeof prompt - 1 - got);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        got += (size_t)n;
        if (got == sizeof prompt - 1) break;
    }
    prompt[got] = 0;
    double mib = 0;
    char marker[256] = "none";
    if (sscanf(prompt, "%lf %255s", &mib, marker) < 1) mib = 0;

    static const char init[] =
        "{\"type\":\"system\",\"subtype\":\"init\",\"session_id\":\"flood\",\"model\":\"fake\",\"tools\":[]}\n";
    put(init, sizeof init - 1);

    char line[512];
    char x[201];
    memset(x, 'x', 200);
    x[200] = 0;
    int len = snprintf(line, sizeof line,
                       "{\"type\": \"assistant\", \"message\": {\"content\": [{\"type\": \"text\", \"text\": \"%s\"}]}}\n", x);
    long lines = (long)(mib * 1024 * 1024 / len) + 1;
    enum { BATCH = 64 };
    static char chunk[BATCH * 512];
    for (int i = 0; i < BATCH; i++) memcpy(chunk + i * len, line, (size_t)len);
    for (long i = 0; i < lines / BATCH; i++) put(chunk, (size_t)len * BATCH);
    put(chunk, (size_t)len * (size_t)(lines % BATCH));

    char result[1024];
    int rlen = snprintf(result, sizeof result,
                        "{\"type\":\"result\",\"subtype\":\"success\",\"is_error\":false,\"result\":\"Flooded. Marker %s.\","
                        "\"session_id\":\"flood\",\"total_cost_usd\":0.01,\"duration_ms\":5,\"num_turns\":1}\n",
                        marker);
    put(result, (size_t)rlen);
    return 0;
}
