"""pkgcache benchmarks: ``python -m benchmarks`` runs them all.

Each benchmark measures pkgcache beside the raw system call it is built on
and beside the libraries people use today, in the same run, and prints a
table. Benchmarks are not tests: nothing here asserts a time.
"""
