/* The fake Claude child of the side-by-side benchmark (benches/side_by_side.rs).
 *
 * Built static (`cc -O2 -static`) so that the dynamic loader's work is not part of either supervisor's figure.
 * Its first instruction stamps CLOCK_REALTIME; it then reads its prompt from stdin to end of file (the prompt is
 * the path of its stamp file), prints an init and a result line of stream-json, and, as its last act before
 * _exit(0), writes "<first-instruction ns> <exit ns>" to the stamp file. The benchmark compares those stamps with
 * the wall-clock times at which it sent the start request and read the task-ended event. */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static long long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static int write_all(int fd, const char *p, size_t n) {
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w <= 0) return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

int main(void) {
    long long first = now_ns();
    char path[4096];
    size_t len = 0;
    for (;;) {
        ssize_t r = read(0, path + len, sizeof path - 1 - len);
        if (r <= 0) break;
        len += (size_t)r;
        if (len == sizeof path - 1) break;
    }
    while (len > 0 && (path[len - 1] == '\n' || path[len - 1] == ' ')) len--;
    path[len] = 0;
    static const char lines[] =
        "{\"type\":\"system\",\"subtype\":\"init\",\"session_id\":\"bench\",\"model\":\"fake\"}\n"
        "{\"type\":\"result\",\"subtype\":\"success\",\"is_error\":false,\"result\":\"Done.\","
        "\"total_cost_usd\":0,\"num_turns\":1}\n";
    if (write_all(1, lines, sizeof lines - 1) != 0) _exit(3);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) _exit(2);
    char stamp[64];
    int n = snprintf(stamp, sizeof stamp, "%lld %lld\n", first, now_ns());
    if (write_all(fd, stamp, (size_t)n) != 0) _exit(4);
    _exit(0);
}
