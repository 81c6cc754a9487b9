"""The Darwin child's `trust_remote_code` files (configuration_darwin.py, modeling_darwin.py).

Both files are copied into every child repository; this package file is not.
"""
