"""Helpers shared by the test folders (and the benchmarks): servers, fixtures' building blocks, rigs.

No test module imports another test module; what two of them share lives here."""
