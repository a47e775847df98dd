/* Flood generator for benches/flood.sh: hostile non-call SIP traffic over UDP from several
 * loopback source addresses, as fast as one process can send (or at a given rate).
 *
 *   flood_gen DST_IP DST_PORT FIRST_SRC_IP SOURCES KINDS SECONDS MAX_COUNT RATE
 *
 * KINDS is a comma list of garbage, options, invite. The sources are FIRST_SRC_IP and the
 * addresses after it (127.0.0.11 .. 127.0.0.30 for 20); each has its own socket and the
 * messages go round-robin over sources and kinds. garbage: pseudo-random bytes, 64–575 long;
 * options: a valid OPTIONS; invite: a valid INVITE to a number no dialplan has, without SDP.
 * Every OPTIONS and INVITE has its own Call-ID, branch and tag, and nothing is ever ACKed, so
 * the gateway's 404s are retransmitted as they would be for a real attacker.
 * Responses are drained (and counted) every few hundred sends so the sockets stay readable.
 * Bounded: stops after SECONDS or MAX_COUNT datagrams, whichever comes first; only 127/8.
 * Prints one JSON line with what was sent when it stops.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_SOURCES 64
#define GARBAGE_BUFS 64
enum { GARBAGE, OPTIONS, INVITE, KINDS };
static const char *kind_name[KINDS] = {"garbage", "options", "invite"};

static volatile sig_atomic_t stop;
static void on_signal(int sig) { (void)sig; stop = 1; }

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static uint64_t next_rand(void) {
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return rng;
}

static int in_loopback(struct in_addr a) { return (ntohl(a.s_addr) >> 24) == 127; }

int main(int argc, char **argv) {
  if (argc != 9) {
    fprintf(stderr, "usage: %s DST_IP DST_PORT FIRST_SRC_IP SOURCES KINDS SECONDS MAX_COUNT RATE\n",
            argv[0]);
    return 2;
  }
  const char *dst_ip = argv[1];
  int dst_port = atoi(argv[2]);
  int sources = atoi(argv[4]);
  double seconds = atof(argv[6]);
  long long max_count = atoll(argv[7]);
  double rate = atof(argv[8]);
  struct sockaddr_in dst = {.sin_family = AF_INET, .sin_port = htons(dst_port)};
  struct in_addr first;
  if (inet_pton(AF_INET, dst_ip, &dst.sin_addr) != 1 || inet_pton(AF_INET, argv[3], &first) != 1 ||
      !in_loopback(dst.sin_addr) || !in_loopback(first)) {
    fprintf(stderr, "flood_gen: addresses must be IPv4 in 127.0.0.0/8\n");
    return 2;
  }
  if (sources < 1 || sources > MAX_SOURCES || seconds <= 0 || seconds > 3600 || max_count < 1) {
    fprintf(stderr, "flood_gen: need 1..%d sources, 0 < SECONDS <= 3600, MAX_COUNT >= 1\n",
            MAX_SOURCES);
    return 2;
  }
  int kinds[KINDS], nkinds = 0;
  for (int k = 0; k < KINDS; k++)
    if (strstr(argv[5], kind_name[k])) kinds[nkinds++] = k;
  if (!nkinds) {
    fprintf(stderr, "flood_gen: KINDS must name garbage, options and/or invite\n");
    return 2;
  }

  int fd[MAX_SOURCES];
  char src_ip[MAX_SOURCES][INET_ADDRSTRLEN];
  int src_port[MAX_SOURCES];
  for (int s = 0; s < sources; s++) {
    struct sockaddr_in src = {.sin_family = AF_INET};
    src.sin_addr.s_addr = htonl(ntohl(first.s_addr) + s);
    if (!in_loopback(src.sin_addr)) {
      fprintf(stderr, "flood_gen: source %d leaves 127/8\n", s);
      return 2;
    }
    fd[s] = socket(AF_INET, SOCK_DGRAM, 0);
    int big = 4 << 20;
    setsockopt(fd[s], SOL_SOCKET, SO_RCVBUF, &big, sizeof big);
    if (fd[s] < 0 || bind(fd[s], (struct sockaddr *)&src, sizeof src) < 0) {
      perror("flood_gen: bind");
      return 1;
    }
    socklen_t len = sizeof src;
    getsockname(fd[s], (struct sockaddr *)&src, &len);
    inet_ntop(AF_INET, &src.sin_addr, src_ip[s], sizeof src_ip[s]);
    src_port[s] = ntohs(src.sin_port);
    fcntl(fd[s], F_SETFL, O_NONBLOCK);
  }

  static char garbage[GARBAGE_BUFS][576];
  static int garbage_len[GARBAGE_BUFS];
  for (int i = 0; i < GARBAGE_BUFS; i++) {
    garbage_len[i] = 64 + (int)(next_rand() % 512);
    for (int j = 0; j < garbage_len[i]; j++) garbage[i][j] = (char)next_rand();
  }

  signal(SIGTERM, on_signal);
  signal(SIGINT, on_signal);
  long long sent[KINDS] = {0}, errors = 0, responses = 0;
  long long n = 0;
  char msg[2048], rbuf[65536];
  unsigned pid = (unsigned)getpid();
  double t0 = now_s(), deadline = t0 + seconds, t = t0;
  while (!stop && n < max_count) {
    if ((n & 255) == 0) {
      t = now_s();
      if (t >= deadline) break;
      for (int s = 0; s < sources; s++)
        while (recv(fd[s], rbuf, sizeof rbuf, MSG_DONTWAIT) > 0) responses++;
    }
    if (rate > 0) {
      /* Pace: never ahead of t0 + n/rate (sleep in short steps, still bounded by deadline). */
      double due = t0 + n / rate;
      while ((t = now_s()) < due && t < deadline) {
        struct timespec ts = {0, (long)((due - t) > 0.001 ? 1e6 : (due - t) * 1e9)};
        nanosleep(&ts, NULL);
      }
    }
    int s = (int)(n % sources);
    int k = kinds[(n / sources) % nkinds];
    const char *buf = msg;
    int len = 0;
    if (k == GARBAGE) {
      int i = (int)(n % GARBAGE_BUFS);
      buf = garbage[i];
      len = garbage_len[i];
    } else {
      /* OPTIONS to the gateway itself; INVITE to a number no dialplan has. */
      const char *method = k == OPTIONS ? "OPTIONS" : "INVITE";
      const char *user = k == OPTIONS ? "" : "0215550100@";
      len = snprintf(msg, sizeof msg,
                     "%s sip:%s%s:%d SIP/2.0\r\n"
                     "Via: SIP/2.0/UDP %s:%d;branch=z9hG4bK-f%u-%lld\r\n"
                     "Max-Forwards: 70\r\n"
                     "From: \"flood\" <sip:1000@%s>;tag=f%lld\r\n"
                     "To: <sip:%s%s:%d>\r\n"
                     "Call-ID: f%u-%lld@%s\r\n"
                     "CSeq: 1 %s\r\n"
                     "Contact: <sip:1000@%s:%d>\r\n"
                     "User-Agent: flood-gen\r\n"
                     "Content-Length: 0\r\n\r\n",
                     method, user, dst_ip, dst_port, src_ip[s], src_port[s], pid, n, src_ip[s], n,
                     user, dst_ip, dst_port, pid, n, src_ip[s], method, src_ip[s], src_port[s]);
    }
    if (sendto(fd[s], buf, (size_t)len, 0, (struct sockaddr *)&dst, sizeof dst) < 0) {
      errors++;
      if (errno != EAGAIN && errno != ENOBUFS && errno != ECONNREFUSED) {
        perror("flood_gen: sendto");
        break;
      }
    } else {
      sent[k]++;
    }
    n++;
  }
  double elapsed = now_s() - t0;
  long long total = sent[GARBAGE] + sent[OPTIONS] + sent[INVITE];
  printf("{\"sources\": %d, \"elapsed_s\": %.3f, \"sent\": %lld, \"rate_per_s\": %.0f, "
         "\"garbage\": %lld, \"options\": %lld, \"invite\": %lld, \"send_errors\": %lld, "
         "\"responses_read\": %lld}\n",
         sources, elapsed, total, total / (elapsed > 0 ? elapsed : 1), sent[GARBAGE],
         sent[OPTIONS], sent[INVITE], errors, responses);
  return 0;
}
