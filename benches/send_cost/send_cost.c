// CPU cost of sending one RTP-sized UDP datagram on loopback, two ways:
//   sendto      one system call per datagram (what the gateway's reactors do);
//   io_uring    every datagram of a round (one per socket) in one submission, with
//               registered files, so system-call entry and file lookup are paid once.
// N sockets each send to their own bound, never-read socket, as in the media bench (SIPp
// never reads the RTP it receives). Prints CPU microseconds per datagram (user + system,
// all threads of the process, io_uring workers included).
#include <liburing.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>

#define SOCKETS 800
#define ROUNDS 3000
#define RTP_LEN 172 /* 12-byte header + 20 ms of G.711 */

static double cpu_seconds(void) {
  struct rusage r;
  getrusage(RUSAGE_SELF, &r);
  return r.ru_utime.tv_sec + r.ru_utime.tv_usec / 1e6 + r.ru_stime.tv_sec +
         r.ru_stime.tv_usec / 1e6;
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: %s sendto|io_uring\n", argv[0]);
    return 2;
  }
  int use_uring = strcmp(argv[1], "io_uring") == 0;
  static int senders[SOCKETS];
  static struct sockaddr_in sinks[SOCKETS];
  static struct msghdr msgs[SOCKETS];
  char payload[RTP_LEN] = {(char)0x80};
  struct iovec iov = {payload, RTP_LEN};
  for (int i = 0; i < SOCKETS; i++) {
    senders[i] = socket(AF_INET, SOCK_DGRAM, 0);
    int sink = socket(AF_INET, SOCK_DGRAM, 0);
    socklen_t len = sizeof sinks[i];
    sinks[i].sin_family = AF_INET;
    sinks[i].sin_addr.s_addr = htonl(0x7f000001);
    // Port 0: the kernel picks a free one, read back with getsockname.
    if (senders[i] < 0 || sink < 0 || bind(sink, (void *)&sinks[i], sizeof sinks[i]) ||
        getsockname(sink, (void *)&sinks[i], &len)) {
      perror("socket/bind");
      return 1;
    }
    msgs[i].msg_name = &sinks[i];
    msgs[i].msg_namelen = sizeof sinks[i];
    msgs[i].msg_iov = &iov;
    msgs[i].msg_iovlen = 1;
  }
  struct io_uring ring;
  if (use_uring && (io_uring_queue_init(2 * SOCKETS, &ring, 0) ||
                    io_uring_register_files(&ring, senders, SOCKETS))) {
    perror("io_uring");
    return 1;
  }
  double start = cpu_seconds();
  for (int round = 0; round < ROUNDS; round++) {
    if (!use_uring) {
      for (int i = 0; i < SOCKETS; i++)
        sendto(senders[i], payload, RTP_LEN, 0, (void *)&sinks[i], sizeof sinks[i]);
      continue;
    }
    for (int i = 0; i < SOCKETS; i++) {
      struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
      io_uring_prep_sendmsg(sqe, i, &msgs[i], 0);
      sqe->flags |= IOSQE_FIXED_FILE;
    }
    io_uring_submit_and_wait(&ring, SOCKETS);
    struct io_uring_cqe *cqe;
    unsigned head, seen = 0;
    io_uring_for_each_cqe(&ring, head, cqe) seen++;
    io_uring_cq_advance(&ring, seen);
  }
  double per_datagram = (cpu_seconds() - start) / ((double)ROUNDS * SOCKETS);
  printf("%s %.2f\n", argv[1], per_datagram * 1e6);
  return 0;
}
