"""Backends lower a graphc Plan. Each registers itself with graphc.backend when imported."""
