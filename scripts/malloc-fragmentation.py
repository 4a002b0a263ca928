"""RSS of torch alone running convolutions of random batch sizes, with and without malloc_trim.

Run with the project's venv: `python3 scripts/malloc-fragmentation.py` and
`TRIM=1 python3 scripts/malloc-fragmentation.py`. Prints the RSS (MB) every 500 steps.
It shows why skelseg's inference workers trim (src/stream/memory.rs): glibc keeps memory that
tensors of ever-changing sizes leave behind.
"""
import ctypes
import os
import random

import torch


def rss_mb():
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS"):
                return int(line.split()[1]) // 1024
    return -1


def main():
    torch.set_num_threads(1)
    random.seed(0)
    trim = ctypes.CDLL("libc.so.6").malloc_trim if os.environ.get("TRIM") else None
    w2 = torch.randn(64, 18, 1, 1)
    w1 = torch.randn(64, 64, 5)
    out = []
    with torch.no_grad():
        for i in range(3001):
            n = random.randint(1, 1024)
            torch.nn.functional.conv2d(torch.randn(n, 18, 1, 25), w2)
            b, t = random.randint(1, 32), random.choice([256, 128, 64, 32])
            torch.nn.functional.conv1d(torch.randn(b, 64, t), w1, padding=2)
            if i % 500 == 0:
                if trim:
                    trim(0)
                out.append(rss_mb())
    print("trim" if trim else "no trim", out)


if __name__ == "__main__":
    main()
