/* A C-speed MQTT 3.1.1 QoS 1 publisher that counts every PUBACK, for bench/ingest.py.
 *
 * A publisher's own count is not proof (mosquitto_pub -l at QoS 1 delivered 34,467 of 100,000
 * lines here), so this one reports only what the broker acknowledged, and checks that each
 * PUBACK is for a message in flight. It speaks MQTT over a plain socket and keeps up to WINDOW
 * messages in flight, written many to a send() and their PUBACKs read many to a recv(): the
 * machine's CPU then goes to the broker and to whatever consumes the messages, which is what
 * the benchmark measures. (libmosquitto, which it replaced, took about as much CPU per message
 * as the broker: one send() per PUBLISH and a few recv() per PUBACK, on two threads.)
 *
 * Messages come from a file of "topic<TAB>payload" lines, or are generated: N messages of SIZE
 * bytes to TOPIC.
 *
 * usage: qos1pub HOST PORT FILE|- [N TOPIC SIZE]
 * prints: "acked=<n> seconds=<s>"; exits 0 only if every message was acknowledged.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define WINDOW 1000                 /* messages in flight, as mosquitto's max_inflight_messages */
#define OUT_CAP (4 * 1024 * 1024)   /* bytes of packets waiting to be sent */
#define IN_CAP (64 * 1024)
#define STALL_SECONDS 60.0          /* no PUBACK for this long: give up and report */

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int dial(const char *host, const char *port) {
    struct addrinfo hints = {0}, *res;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    int rc = getaddrinfo(host, port, &hints, &res);
    if (rc != 0) { fprintf(stderr, "%s: %s\n", host, gai_strerror(rc)); return -1; }
    int fd = -1;
    for (struct addrinfo *a = res; a; a = a->ai_next) {
        fd = socket(a->ai_family, a->ai_socktype, a->ai_protocol);
        if (fd >= 0 && connect(fd, a->ai_addr, a->ai_addrlen) == 0) break;
        if (fd >= 0) close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0) { perror("connect"); return -1; }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

/* MQTT's variable byte integer; returns the bytes written */
static size_t put_length(unsigned char *p, size_t n) {
    size_t i = 0;
    do {
        unsigned char b = n % 128;
        n /= 128;
        p[i++] = n ? b | 0x80 : b;
    } while (n);
    return i;
}

static int write_all(int fd, const unsigned char *p, size_t n) {
    while (n) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) { perror("send"); return -1; }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static int mqtt_connect(int fd) {
    char id[32];
    snprintf(id, sizeof id, "qos1pub-%d", (int)getpid());
    size_t idlen = strlen(id);
    unsigned char pkt[64];
    size_t rem = 10 + 2 + idlen, i = 0;
    pkt[i++] = 0x10;
    i += put_length(pkt + i, rem);
    const unsigned char var[10] = {0, 4, 'M', 'Q', 'T', 'T', 4, 0x02 /* clean */, 0, 0 /* no keepalive */};
    memcpy(pkt + i, var, sizeof var);
    i += sizeof var;
    pkt[i++] = idlen >> 8;
    pkt[i++] = idlen & 0xFF;
    memcpy(pkt + i, id, idlen);
    i += idlen;
    if (write_all(fd, pkt, i)) return -1;
    unsigned char ack[4];
    size_t got = 0;
    while (got < 4) {
        ssize_t r = recv(fd, ack + got, 4 - got, 0);
        if (r <= 0) { fprintf(stderr, "no CONNACK\n"); return -1; }
        got += (size_t)r;
    }
    if (ack[0] != 0x20 || ack[3] != 0) { fprintf(stderr, "connection refused (code %d)\n", ack[3]); return -1; }
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 4) { fprintf(stderr, "usage: qos1pub HOST PORT FILE|- [N TOPIC SIZE]\n"); return 2; }
    const char *file = argv[3];
    long n = argc > 4 ? atol(argv[4]) : 0;
    const char *gen_topic = argc > 5 ? argv[5] : "bench/x";
    int size = argc > 6 ? atoi(argv[6]) : 200;

    FILE *in = strcmp(file, "-") == 0 ? NULL : fopen(file, "r");
    if (strcmp(file, "-") != 0 && !in) { perror(file); return 1; }
    int fd = dial(argv[1], argv[2]);
    if (fd < 0 || mqtt_connect(fd)) return 1;

    char *payload = malloc(size + 1);
    memset(payload, 'x', size);
    payload[size] = 0;
    char *line = NULL;
    size_t cap = 0;
    unsigned char *out = malloc(OUT_CAP), *inbuf = malloc(IN_CAP);
    size_t out_start = 0, out_end = 0, in_len = 0;
    static unsigned char in_flight[65536];
    long sent = 0, acked = 0;
    unsigned mid = 0;
    int done_reading = 0;
    double t0 = now(), last_ack = t0;

    while (!done_reading || acked < sent) {
        /* queue packets while the window and the buffer have room */
        while (!done_reading && sent - acked < WINDOW) {
            const char *topic = gen_topic, *body = payload;
            size_t len = (size_t)size;
            if (in) {
                ssize_t got = getline(&line, &cap, in);
                if (got <= 0) { done_reading = 1; break; }
                if (line[got - 1] == '\n') line[--got] = 0;
                char *tab = strchr(line, '\t');
                if (!tab) continue;
                *tab = 0;
                topic = line;
                body = tab + 1;
                len = (size_t)(got - (tab + 1 - line));
            } else if (sent >= n) { done_reading = 1; break; }
            size_t tlen = strlen(topic), rem = 2 + tlen + 2 + len;
            if (OUT_CAP - out_end < rem + 5) {
                if (out_start == 0) { fprintf(stderr, "message too large\n"); return 1; }
                memmove(out, out + out_start, out_end - out_start);
                out_end -= out_start;
                out_start = 0;
                if (OUT_CAP - out_end < rem + 5) { fprintf(stderr, "message too large\n"); return 1; }
            }
            do mid = mid % 65535 + 1; while (in_flight[mid]);
            in_flight[mid] = 1;
            unsigned char *p = out + out_end;
            *p++ = 0x32; /* PUBLISH, QoS 1 */
            p += put_length(p, rem);
            *p++ = tlen >> 8;
            *p++ = tlen & 0xFF;
            memcpy(p, topic, tlen);
            p += tlen;
            *p++ = mid >> 8;
            *p++ = mid & 0xFF;
            memcpy(p, body, len);
            p += len;
            out_end = (size_t)(p - out);
            sent++;
        }
        struct pollfd pfd = {fd, POLLIN | (out_end > out_start ? POLLOUT : 0), 0};
        if (poll(&pfd, 1, 1000) < 0 && errno != EINTR) { perror("poll"); break; }
        if (pfd.revents & POLLOUT) {
            ssize_t w = send(fd, out + out_start, out_end - out_start, MSG_NOSIGNAL | MSG_DONTWAIT);
            if (w > 0) out_start += (size_t)w;
            else if (w < 0 && errno != EAGAIN && errno != EINTR) { perror("send"); break; }
            if (out_start == out_end) out_start = out_end = 0;
        }
        if (pfd.revents & (POLLIN | POLLHUP | POLLERR)) {
            ssize_t r = recv(fd, inbuf + in_len, IN_CAP - in_len, MSG_DONTWAIT);
            if (r == 0) { fprintf(stderr, "broker closed the connection\n"); break; }
            if (r < 0 && errno != EAGAIN && errno != EINTR) { perror("recv"); break; }
            if (r > 0) in_len += (size_t)r;
            size_t pos = 0;
            while (in_len - pos >= 4) {
                if (inbuf[pos] != 0x40 || inbuf[pos + 1] != 2) {
                    fprintf(stderr, "unexpected packet 0x%02x from the broker\n", inbuf[pos]);
                    return 1;
                }
                unsigned m = (unsigned)inbuf[pos + 2] << 8 | inbuf[pos + 3];
                if (!in_flight[m]) { fprintf(stderr, "PUBACK for message %u not in flight\n", m); return 1; }
                in_flight[m] = 0;
                acked++;
                pos += 4;
            }
            memmove(inbuf, inbuf + pos, in_len - pos);
            in_len -= pos;
            if (pos) last_ack = now();
        }
        if (now() - last_ack > STALL_SECONDS) { fprintf(stderr, "no PUBACK for %.0f s\n", STALL_SECONDS); break; }
    }
    double t1 = now();
    printf("acked=%ld seconds=%.3f\n", acked, t1 - t0);
    const unsigned char disconnect[2] = {0xE0, 0};
    write_all(fd, disconnect, sizeof disconnect);
    close(fd);
    return acked == sent && done_reading ? 0 : 1;
}
