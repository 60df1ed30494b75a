import platform

print(f"hello from flotilla on Python {platform.python_version()}")
