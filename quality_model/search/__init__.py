"""The constrained search for a lot's machine setting, scored by the forward models.

`recommender` holds the search and its reference path; `kernels`, `forest` and `neighbours` are the
compiled (numba) request path that reproduces it in tens of microseconds.
"""
