"""
Two processes of one program over a loopback TCP connection: the parent
listens (and keeps listening), a forked child connects.

`tcp-pingpong.py DIR ping`: every 50 ms the child sends a number and the
parent answers with the next one. Both log what they received, one line
each, to DIR/server and DIR/client. DIR/stop ends the exchange: the child
says "bye", both exit 0. The listener has no SO_REUSEADDR and sits on a
high descriptor (moved there with dup2, as some servers do): its accepted
connection comes before it in descriptor order.

`tcp-pingpong.py DIR stream`: the child sends numbered lines as fast as
the connection takes them, the parent reads them as fast as it can and
logs "read N" (lines so far) to DIR/server every 100000 lines. While
DIR/pause exists it reads nothing and logs "queued N" (bytes waiting in its
receive queue) every 20 ms, so both ends' queues fill up. DIR/stop ends it:
the child logs "sent N" to DIR/client and shuts its side down, the parent
reads to the end and logs "received N". The listener has SO_REUSEADDR, as
most servers set, and so has the accepted connection.

At the end the parent logs "end reuse=R": SO_REUSEADDR of its accepted
connection, which it has from the listener.

A line out of order ends the program with 3.
"""
import fcntl
import os
import socket
import struct
import sys
import termios
import time

d, mode = sys.argv[1], sys.argv[2]


def log(name, line):
    with open(os.path.join(d, name), "a") as f:
        f.write(line + "\n")


def stopped():
    return os.path.exists(os.path.join(d, "stop"))


def lines(sock):
    buf = b""
    while True:
        while b"\n" not in buf:
            chunk = sock.recv(4096)
            if not chunk:
                return
            buf += chunk
        line, buf = buf.split(b"\n", 1)
        yield line.decode()


def ping_client(c):
    want = 1
    c.sendall(b"0\n")
    for line in lines(c):
        n = int(line)
        log("client", str(n))
        if n != want:
            sys.exit(3)
        time.sleep(0.05)
        if stopped():
            c.sendall(b"bye\n")
            return
        c.sendall(b"%d\n" % (n + 1))
        want = n + 2


def ping_server(conn):
    want = 0
    for line in lines(conn):
        if line == "bye":
            break
        n = int(line)
        log("server", str(n))
        if n != want:
            sys.exit(3)
        conn.sendall(b"%d\n" % (n + 1))
        want = n + 2


def stream_client(c):
    n = 0
    while not stopped():
        c.sendall(b"".join(b"%d\n" % i for i in range(n, n + 10000)))
        n += 10000
    log("client", "sent %d" % n)
    c.shutdown(socket.SHUT_WR)
    c.recv(1)  # until the parent closes


def stream_server(conn):
    want = 0
    buf = b""
    pause = os.path.join(d, "pause")
    while True:
        if os.path.exists(pause):
            n = fcntl.ioctl(conn.fileno(), termios.FIONREAD, b"\0\0\0\0")
            log("server", "queued %d" % struct.unpack("i", n)[0])
            time.sleep(0.02)
            continue
        chunk = conn.recv(1 << 20)
        if not chunk:
            break
        buf += chunk
        *done, buf = buf.split(b"\n")
        for line in done:
            if int(line) != want:
                sys.exit(3)
            want += 1
            if want % 100000 == 0:
                log("server", "read %d" % want)
    log("server", "received %d" % want)


srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
if mode == "stream":
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", 0))
srv.listen(4)
port = srv.getsockname()[1]
if mode == "ping":
    os.dup2(srv.fileno(), 20)
    srv.close()
    srv = socket.socket(fileno=20)

child = os.fork()
if child == 0:
    srv.close()
    c = socket.create_connection(("127.0.0.1", port))
    (ping_client if mode == "ping" else stream_client)(c)
    sys.exit(0)

conn, _ = srv.accept()
(ping_server if mode == "ping" else stream_server)(conn)
log("server", "end reuse=%d" % conn.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR))
conn.close()
_, status = os.waitpid(child, 0)
sys.exit(os.waitstatus_to_exitcode(status))
