/* A stand-in for jupyterhub-singleuser, for the ledger half of tests/bench/admission.py: it
 * listens on the address of JUPYTERHUB_SERVICE_URL (what the local backend gives every server)
 * and answers every request with 200 and a tiny JSON body, so the hub's readiness check
 * (`GET {prefix}api`) passes. One process per server, a few hundred KiB each, so that 1,000
 * "running nodes" fit on a small machine. Arguments (e.g. --allow-root) are ignored; SIGTERM
 * ends it.
 *
 *   cc -O2 -o tiny_singleuser tests/bench/tiny_singleuser.c
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static const char RESPONSE[] =
    "HTTP/1.1 200 OK\r\n"
    "Content-Type: application/json\r\n"
    "Content-Length: 20\r\n"
    "Connection: close\r\n"
    "\r\n"
    "{\"version\": \"5.5.0\"}";

int main(void) {
    const char *url = getenv("JUPYTERHUB_SERVICE_URL");
    if (url == NULL) {
        fprintf(stderr, "tiny_singleuser: JUPYTERHUB_SERVICE_URL is not set\n");
        return 2;
    }
    /* http://HOST:PORT/prefix/ */
    const char *host = strstr(url, "://");
    host = host ? host + 3 : url;
    const char *colon = strchr(host, ':');
    if (colon == NULL) {
        fprintf(stderr, "tiny_singleuser: no port in %s\n", url);
        return 2;
    }
    char ip[64];
    size_t len = (size_t)(colon - host);
    if (len == 0 || len >= sizeof ip) {
        len = 0;
    }
    memcpy(ip, host, len);
    ip[len] = '\0';
    int port = atoi(colon + 1);

    struct sockaddr_in addr;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_port = htons((unsigned short)port);
    if (inet_pton(AF_INET, ip, &addr.sin_addr) != 1) {
        inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
    }
    int s = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (s < 0 || bind(s, (struct sockaddr *)&addr, sizeof addr) != 0 || listen(s, 16) != 0) {
        perror("tiny_singleuser: listen");
        return 1;
    }
    char buf[4096];
    for (;;) {
        int c = accept(s, NULL, NULL);
        if (c < 0) {
            continue;
        }
        /* One read holds a GET's head; the body of anything else is not needed. */
        if (read(c, buf, sizeof buf) > 0) {
            ssize_t w = write(c, RESPONSE, sizeof RESPONSE - 1);
            (void)w;
        }
        close(c);
    }
}
