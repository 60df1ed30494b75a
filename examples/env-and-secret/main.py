import os

print(f"GREETING={os.environ.get('GREETING')} MODE={os.environ.get('MODE')}")
token = os.environ.get("API_TOKEN", "")
print(f"API_TOKEN is set: {bool(token)} ({len(token)} characters)")
print(f"printing it anyway, to show redaction: {token}")
