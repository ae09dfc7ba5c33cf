"""The lecture's first autograd examples, as static graphs.

1. f = (x + y) * z at x=-2, y=5, z=-4: f = -12 and df/dx = -4, df/dy = -4, df/dz = 3.
2. z = 2x^2 + 5x at x = 2 with a seed of ones (z is not a scalar): dz/dx = 4x + 5 = 13.
"""

from __future__ import annotations

import numpy as np

import graphc as gc


def sum_times() -> dict[str, float]:
    with gc.Graph("sum_times") as g:
        x, y, z = gc.input("x", ()), gc.input("y", ()), gc.input("z", ())
        f = (x + y) * z
    dx, dy, dz = gc.grad(f, [x, y, z])
    print(g)
    values = gc.compile([f, dx, dy, dz])(x=-2.0, y=5.0, z=-4.0)
    return dict(zip(["f", "dx", "dy", "dz"], map(float, values)))


def quadratic() -> np.ndarray:
    with gc.Graph("quadratic") as g:
        x = gc.input("x", (2, 2))
        z = 2 * x**2 + 5 * x
    dz = gc.grad(z, x, seed=np.ones((2, 2)))  # a non-scalar output needs a seed
    print(g)
    print(gc.compile(dz).formulas())
    return np.asarray(gc.compile(dz)(x=np.full((2, 2), 2.0)))


def main() -> None:
    print(sum_times())
    print(quadratic())


if __name__ == "__main__":
    main()
