// The `net` shuffle service: producers and consumers in different processes or hosts.
//
// Each worker's environment runs one data server (one port). A consumer opens one connection
// per (producer worker, connection index) and multiplexes every channel it reads from that
// worker over it. The protocol (shuffle/net_messages.h) follows Flink's credit-based network
// stack: a PartitionRequest carries the channel's initial credit, the producer sends a data
// buffer only against a credit, and announces its backlog when it has data but no credit so the
// consumer can lend it floating buffers. A channel without credit never holds up the others on
// its connection, because nothing is ever sent that its receiver has no room for.
//
// Zero copy: the producer's segments go to the socket as they lie (a flush is a slice of the
// segment being written). On the consumer, a data frame is received straight into a segment of
// the gate's own buffer pool, which holds exactly the buffers that back its credits (exclusive
// per channel plus floating); small frames that share a receive segment are handed on as slices
// of it. Nothing is copied in user space on either side in the common case;
// TransportStats::bytes_copied counts what is.
//
// Options (`shuffle.net.*`, all optional):
//   shuffle.net.bind                   host:port of the data server      (127.0.0.1:0)
//   shuffle.net.transport              uring | epoll | auto               (auto)
//   shuffle.net.connections-per-worker connections to each producer worker (1)
//   shuffle.net.token                  shared secret checked at handshake ("" = none)
//   shuffle.net.zero-copy-threshold    payload bytes from which uring sends with SEND_ZC (0 =
//   never) shuffle.net.direct-send-limit      frames up to this size that find their connection
//   idle
//                                      are written by the flushing thread itself (64KiB; 0 =
//                                      always through the I/O thread)
//   shuffle.net.retry-initial-backoff  first wait before a partition request is repeated (5ms)
//   shuffle.net.retry-max-backoff      longest wait between repeats (500ms)
//   shuffle.net.heartbeat-interval     a consumer pings an idle connection this often (1s)
//   shuffle.net.connection-timeout     a connection silent this long has failed (10s)
// A consumer keeps asking for a partition that is not produced yet, and keeps connecting to a
// worker that does not listen yet, until shuffle.partition-request-timeout.
#pragma once

#include <string_view>

namespace sluice {

inline constexpr std::string_view kNetShuffleService = "net";

}  // namespace sluice
