"""Warden's benchmarks. Run them all with `make bench`; see bench/__main__.py."""
