/* An HTTPS client the way Ruby's Net::HTTP and Perl's IO::Socket::SSL make
 * one: a generic TLS_method() context (SSL_is_server() says 1 until the
 * role is set), the server name (SNI) set before SSL_connect.
 *
 * argv: PORT PATH [MODE]
 *   MODE "connect" (default): SSL_connect
 *   MODE "state": SSL_set_connect_state, then SSL_do_handshake
 *   MODE "implicit": SSL_set_connect_state, the handshake inside SSL_write
 *   MODE "partial": SSL_connect with SSL_MODE_ENABLE_PARTIAL_WRITE (as Ruby
 *     and Net::SSLeay set it); POSTs a 40,000-byte body to PATH in one
 *     buffer, looping over partial writes, and checks the echo
 *   MODE "fragment": partial writes and 512-byte records, with a request
 *     head of 500 bytes: a line inserted before its end is cut by the
 *     first record, and the rest must go first in the next write
 * Prints the response's status line (and, for "partial", the number of
 * SSL_write calls and whether the echo matched). */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc < 3) return 2;
    const char *mode = argc > 3 ? argv[3] : "connect";
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_port = htons((unsigned short)atoi(argv[1]));
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) { perror("connect"); return 1; }

    SSL_CTX *ctx = SSL_CTX_new(TLS_method());
    int partial = strcmp(mode, "partial") == 0;
    int fragment = strcmp(mode, "fragment") == 0;
    if (partial || fragment) SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE);
    if (fragment) SSL_CTX_set_max_send_fragment(ctx, 512);
    SSL *ssl = SSL_new(ctx);
    SSL_set_fd(ssl, fd);
    SSL_set_tlsext_host_name(ssl, "localhost");
    int ok;
    if (strcmp(mode, "state") == 0) {
        SSL_set_connect_state(ssl);
        ok = SSL_do_handshake(ssl) == 1;
    } else if (strcmp(mode, "implicit") == 0) {
        SSL_set_connect_state(ssl);
        ok = 1;
    } else {
        ok = SSL_connect(ssl) == 1;
    }
    if (!ok) { fprintf(stderr, "handshake failed\n"); return 1; }

    enum { BODY = 40000 };
    static char req[BODY + 512];
    int n = snprintf(req, 512, "%s %s HTTP/1.1\r\nHost: localhost:%s\r\nConnection: close\r\n",
                     partial ? "POST" : "GET", argv[2], argv[1]);
    if (fragment) {
        int pad = 500 - n - (int)strlen("X-Pad: \r\n\r\n");
        n += snprintf(req + n, 512, "X-Pad: %.*s\r\n\r\n", pad,
                      "ppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppp"
                      "ppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppp"
                      "ppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppp"
                      "ppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppp"
                      "ppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppp"
                      "ppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppp");
    } else if (partial) {
        n += snprintf(req + n, 512, "Content-Length: %d\r\n\r\n", BODY);
        for (int i = 0; i < BODY; i++) req[n + i] = (char)('a' + i % 26);
        n += BODY;
    } else {
        n += snprintf(req + n, 512, "\r\n");
    }
    int calls = 0;
    for (int done = 0; done < n;) {
        int w = SSL_write(ssl, req + done, n - done);
        calls++;
        if (w <= 0 || w > n - done) { fprintf(stderr, "write failed: %d\n", w); return 1; }
        done += w;
    }
    static char buf[BODY + 4096];
    size_t got = 0;
    int r;
    while (got < sizeof buf - 1 && (r = SSL_read(ssl, buf + got, (int)(sizeof buf - 1 - got))) > 0)
        got += (size_t)r;
    buf[got] = 0;
    char *body = strstr(buf, "\r\n\r\n");
    char *eol = strstr(buf, "\r\n");
    if (eol) *eol = 0;
    printf("%s\n", buf);
    if (fragment) printf("head=%d writes=%d\n", n, calls);
    if (partial) {
        int same = body && got - (size_t)(body + 4 - buf) == BODY &&
                   memcmp(body + 4, req + n - BODY, BODY) == 0;
        printf("writes=%d echo=%s\n", calls, same ? "same" : "different");
    }
    SSL_shutdown(ssl);
    SSL_free(ssl);
    SSL_CTX_free(ctx);
    close(fd);
    return 0;
}
