import time

for second in range(30):
    print(f"tick {second + 1}/30", flush=True)
    time.sleep(1)
