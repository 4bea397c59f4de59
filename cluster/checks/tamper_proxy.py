#!/usr/bin/env python3
"""A TCP proxy between ZeroMQ peers that can tamper with their messages (for the CURVE tamper test).

    tamper_proxy.py HOST:PORT [--tamper]

Listens on 127.0.0.1 (a free port, printed first as `port N`), forwards every connection to HOST:PORT.
With --tamper, every client-to-server chunk that carries a CURVE MESSAGE command (the encrypted payload
after the handshake; ZMTP names it "\\x07MESSAGE") gets its last byte flipped, and `tampered N` is
printed. The handshake itself (HELLO, INITIATE) is left alone, so what is tested is that an altered
message is refused, not that a broken handshake is. Standard library only.
"""
import socket
import sys
import threading

upstream_host, upstream_port = sys.argv[1].rsplit(":", 1)
tamper = "--tamper" in sys.argv[2:]
lock = threading.Lock()
count = 0


def pump(src, dst, client_side):
    global count
    try:
        while True:
            chunk = src.recv(65536)
            if not chunk:
                break
            if tamper and client_side and b"\x07MESSAGE" in chunk:
                chunk = chunk[:-1] + bytes([chunk[-1] ^ 0x01])
                with lock:
                    count += 1
                    print(f"tampered {count}", flush=True)
            dst.sendall(chunk)
    except OSError:
        pass
    finally:
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


listener = socket.socket()
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
listener.bind(("127.0.0.1", 0))
listener.listen(16)
print(f"port {listener.getsockname()[1]}", flush=True)
while True:
    client, _ = listener.accept()
    server = socket.create_connection((upstream_host, int(upstream_port)))
    threading.Thread(target=pump, args=(client, server, True), daemon=True).start()
    threading.Thread(target=pump, args=(server, client, False), daemon=True).start()
