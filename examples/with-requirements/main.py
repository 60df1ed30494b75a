import six

print(f"six {six.__version__} imported from the shared uv cache")
