/* A C-speed MQTT QoS 1 publisher that waits for every PUBACK and reports what was acknowledged.
 *
 * A publisher's own count is not proof (mosquitto_pub -l at QoS 1 delivered 34,467 of 100,000
 * lines here), so this one counts PUBACKs. Messages come from a file of "topic<TAB>payload"
 * lines, or are generated: N messages of SIZE bytes to TOPIC. Optional RATE messages/s.
 *
 * usage: qos1pub HOST PORT FILE|- [N TOPIC SIZE] [RATE]
 * prints: "acked=<n> seconds=<s>"
 */
#include <mosquitto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static volatile long acked = 0;

static void on_publish(struct mosquitto *m, void *obj, int mid) { (void)m; (void)obj; (void)mid; acked++; }

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    if (argc < 4) { fprintf(stderr, "usage: qos1pub HOST PORT FILE|- [N TOPIC SIZE] [RATE]\n"); return 2; }
    const char *host = argv[1];
    int port = atoi(argv[2]);
    const char *file = argv[3];
    long n = argc > 4 ? atol(argv[4]) : 0;
    const char *gen_topic = argc > 5 ? argv[5] : "bench/x";
    int size = argc > 6 ? atoi(argv[6]) : 200;
    double rate = argc > 7 ? atof(argv[7]) : 0;

    mosquitto_lib_init();
    struct mosquitto *m = mosquitto_new(NULL, true, NULL);
    mosquitto_int_option(m, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V311);
    mosquitto_max_inflight_messages_set(m, 1000);
    mosquitto_publish_callback_set(m, on_publish);
    if (mosquitto_connect(m, host, port, 30) != MOSQ_ERR_SUCCESS) { fprintf(stderr, "connect failed\n"); return 1; }
    mosquitto_loop_start(m);

    FILE *in = strcmp(file, "-") == 0 ? NULL : fopen(file, "r");
    if (strcmp(file, "-") != 0 && !in) { perror(file); return 1; }
    char *line = NULL; size_t cap = 0;
    char *payload = malloc(size + 1); memset(payload, 'x', size); payload[size] = 0;
    long sent = 0;
    double t0 = now();
    for (;;) {
        const char *topic = gen_topic; const char *body = payload; int len = size;
        if (in) {
            ssize_t got = getline(&line, &cap, in);
            if (got <= 0) break;
            if (line[got - 1] == '\n') line[--got] = 0;
            char *tab = strchr(line, '\t');
            if (!tab) continue;
            *tab = 0; topic = line; body = tab + 1; len = (int)(got - (tab + 1 - line));
        } else if (sent >= n) break;
        /* keep at most 10,000 unacknowledged: bounded memory, steady flow */
        while (sent - acked >= 10000) { struct timespec d = {0, 100000}; nanosleep(&d, NULL); }
        if (rate > 0) {
            double due = t0 + sent / rate;
            while (now() < due) { struct timespec d = {0, 50000}; nanosleep(&d, NULL); }
        }
        int rc;
        while ((rc = mosquitto_publish(m, NULL, topic, len, body, 1, false)) != MOSQ_ERR_SUCCESS) {
            struct timespec d = {0, 1000000}; nanosleep(&d, NULL);
        }
        sent++;
    }
    while (acked < sent) { struct timespec d = {0, 1000000}; nanosleep(&d, NULL); }
    double t1 = now();
    printf("acked=%ld seconds=%.3f\n", acked, t1 - t0);
    mosquitto_disconnect(m);
    mosquitto_loop_stop(m, false);
    mosquitto_destroy(m);
    mosquitto_lib_cleanup();
    return acked == sent ? 0 : 1;
}
