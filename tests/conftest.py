"""Shared test configuration. Its presence also puts tests/ on sys.path (pytest's prepend
import mode inserts each conftest's folder), so any test can ``import numerics``, the
rounding-error tolerances every parity test uses."""
