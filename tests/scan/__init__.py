"""Tests of the static credential scanner (warden.scan)."""
