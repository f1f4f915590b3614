"""The reliability tier's configuration.

pkgcache closes a root's descriptors once no Cache object on it is left, so
a tier that opens hundreds of roots needs no clean-up of its own.
"""
