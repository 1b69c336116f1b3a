#!/usr/bin/env python3
"""Who spends a relaying process's CPU: each sample of a `perf script` dump goes to one owner.

Usage: perf_owners.py PERF_SCRIPT_OUTPUT

Record with call graphs (`perf record -F 499 --call-graph dwarf,16384 -p PID -- sleep 10`), dump
with `perf script -i FILE > OUT`, then run this on OUT. A sample's stack is read from its leaf
upward and the sample goes to the first frame of a known owner; generic frames (libc's memcpy,
the allocator, core/alloc/std, bytes, futures, hashbrown, the kernel) pass it on to their caller,
so a `sendmsg` issued by webrtc's driver counts as the driver's. "in kernel" is the part of an
owner's share whose leaf frame was in the kernel (its system calls). Self cost, not inclusive:
the shares add up to 100 %, which `perf report --children` does not give.
"""

import collections
import re
import sys

# Order matters: the first owner that matches a frame wins, so the more specific come first
# (chunk verification inside our code; webrtc's driver before the `rtc` crate it drives).
OWNERS = [
    ("ownstream: chunk verification (SHA-256, Ed25519)",
     r"sha2::|ed25519|curve25519|Chunk::verify|Chunk::digest"),
    ("ownstream: everything else", r"ownstream_"),
    ("webrtc-rs: DTLS (AES-GCM included)", r"rtc_dtls|ring_core|DtlsHandler"),
    ("webrtc-rs: SCTP", r"rtc_sctp|SctpHandler"),
    ("webrtc-rs: ICE, STUN", r"rtc_ice|rtc_stun|IceHandler"),
    ("webrtc-rs: data channels, handler chain, stats",
     r"rtc_datachannel|(?<![a-z])rtc::|rtc_shared|sansio"),
    ("webrtc-rs: driver (its async shell, sockets)", r"webrtc::"),
    ("tokio (scheduler, timers, I/O driver, and channels whoever calls them)", r"tokio::"),
]


def samples(text):
    """Each sample's frames, leaf first."""
    for block in text.split("\n\n"):
        frames = [line.strip() for line in block.strip().split("\n")[1:] if line.strip()]
        if frames:
            yield frames


def owner_of(frames, owners):
    for frame in frames:
        for name, pattern in owners:
            if pattern.search(frame):
                return name
    return "unattributed"


def main(path):
    owners = [(name, re.compile(p)) for name, p in OWNERS]
    shares, in_kernel, total = collections.Counter(), collections.Counter(), 0
    with open(path, encoding="utf-8", errors="replace") as f:
        text = f.read()
    for frames in samples(text):
        total += 1
        name = owner_of(frames, owners)
        shares[name] += 1
        if "kernel" in frames[0]:
            in_kernel[name] += 1
    if total == 0:
        sys.exit(f"{path}: no samples (is it `perf script` output with call graphs?)")
    print("| owner | share of samples | of it in the kernel |\n|---|---:|---:|")
    for name, n in shares.most_common():
        print(f"| {name} | {100 * n / total:.1f} % | {100 * in_kernel[name] / total:.1f} % |")
    print(f"\n{total} samples")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
