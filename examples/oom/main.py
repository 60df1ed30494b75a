print("allocating 512 MiB with a 64 MiB limit", flush=True)
blocks = []
for _ in range(64):
    blocks.append(bytearray(8 * 1024 * 1024))
print("unreachable: the kernel should have killed us")
