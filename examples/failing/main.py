import sys

print("about to fail with exit code 3", file=sys.stderr)
sys.exit(3)
